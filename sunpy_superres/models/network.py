"""
The networks' common base: settings recorded from ``__init__``, saved and loaded as a directory.

Every network of the package (`~sunpy_superres.models.diffusion.ConditionalDenoiser`,
`~sunpy_superres.models.enhance.EnhanceNet`, `~sunpy_superres.models.progressive.ProgressiveNet`,
`~sunpy_superres.models.spacetodepth.SpaceToDepth`) derives from `Network`. A directory holds the
network's ``config.json`` (its ``__init__`` arguments and ``_class_name``) and its weights as
``diffusion_pytorch_model.safetensors``: the layout of diffusers' ``ModelMixin``, which wrote the
directories of earlier versions, so those load unchanged.

Written here rather than taken from diffusers' ``ModelMixin``/``ConfigMixin``: importing any part
of diffusers imports ``torch._dynamo`` (``diffusers.utils.torch_utils``), about one second on this
package's 2-core reference machine, which a model load that needs none of it should not pay
(issue 18: a cold start within 1.5x of ``import sunpy.map``). What is kept is the subset this
package uses: ``config`` (a read-only mapping whose keys are also attributes),
``register_to_config``, ``from_config``, ``load_config``, ``save_config``, ``save_pretrained`` and
``from_pretrained`` (safetensors only), ``device`` and ``dtype``.
"""

import functools
import inspect
import itertools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_output

__all__ = ["Config", "Network", "register_to_config"]

#: The weights file of a network directory (diffusers' name, so that its directories load here).
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


class Config(dict):
    """A network's settings: a read-only `dict` whose keys are also attributes (``config.factor``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this config has no {name!r}") from None

    def _read_only(self, *args, **kwargs):
        raise TypeError("a network's config is read-only; change it with the network's register_to_config()")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = _read_only

    def __reduce__(self):
        # copy, deepcopy and pickle rebuild the dict whole instead of item by item.
        return type(self), (dict(self),)


def register_to_config(init):
    """
    Record a `Network` ``__init__``'s arguments, defaults included, as the network's ``config``.

    The decorator of diffusers' ``ConfigMixin`` under the same name, for `Network` subclasses.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        settings = {k: v for k, v in bound.arguments.items() if k != "self"}
        init(self, *args, **kwargs)
        self.register_to_config(**settings)

    return wrapper


class Network(torch.nn.Module):
    """
    A `torch.nn.Module` with recorded settings, saved as ``config.json`` and safetensors.

    Subclasses decorate their ``__init__`` with `register_to_config`.
    """

    config_name = "config.json"
    #: Whether the network has weights to save (`~sunpy_superres.models.spacetodepth.SpaceToDepth` has none).
    has_weights = True

    @property
    def config(self):
        """The network's settings (`Config`): its ``__init__`` arguments, as changed by `register_to_config`."""
        return self.__dict__.get("_config", Config())

    def register_to_config(self, **settings):
        """Set entries of ``config`` (after a change of the network that its settings must record)."""
        self.__dict__["_config"] = Config({**self.config, **settings})

    @property
    def device(self):
        """Device of the first parameter or buffer (CPU for a network without either)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    @property
    def dtype(self):
        """Data type of the first floating-point parameter or buffer (float32 for a network without)."""
        tensors = itertools.chain(self.parameters(), self.buffers())
        return next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)

    @classmethod
    def from_config(cls, config=None, **settings):
        """
        A new network with the settings of ``config`` (a mapping), updated by ``settings``.

        Keys its ``__init__`` does not take are left out, as diffusers does: the private ones
        (``_class_name``, ``_diffusers_version``) and those of settings an older version had.
        """
        params = inspect.signature(cls.__init__).parameters
        given = {**dict(config or {}), **settings}
        return cls(**{k: v for k, v in given.items() if k in params and k != "self"})

    @classmethod
    def load_config(cls, path):
        """The settings saved in directory ``path`` (``config.json``), as a `dict`."""
        return json.loads((Path(path) / cls.config_name).read_text())

    def save_config(self, directory):
        """Write ``config.json``, with ``_class_name``, to ``directory`` (made if missing)."""
        directory = Path(directory)
        text = (
            json.dumps({"_class_name": type(self).__name__, **self.config}, indent=2, sort_keys=True) + "\n"
        )
        with atomic_output(directory / self.config_name, overwrite=True) as tmp:
            tmp.write_text(text)

    def save_pretrained(self, save_directory, safe_serialization=True):
        """
        Write ``config.json`` and the weights (safetensors) to ``save_directory``.

        Raises
        ------
        ValueError
            If ``safe_serialization`` is false: weights are written as safetensors only, never pickled.
        """
        if not safe_serialization:
            raise ValueError(
                "networks are saved as safetensors only (safe_serialization=True), never as pickles"
            )
        self.save_config(save_directory)
        if self.has_weights:
            state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
            with atomic_output(Path(save_directory) / WEIGHTS_NAME, overwrite=True) as tmp:
                save_file(state, tmp, metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path, use_safetensors=True):
        """
        The network saved in directory ``path``, in evaluation mode, with float32 parameters.

        Parameters
        ----------
        path : path-like
            A directory written by `save_pretrained` (or by diffusers' ``ModelMixin`` for the same class).
        use_safetensors : bool, optional
            Must be true: weights are read from safetensors only.

        Raises
        ------
        ValueError
            If ``use_safetensors`` is false.
        FileNotFoundError
            If the directory lacks ``config.json`` or the weights.
        RuntimeError
            If the weights' names or shapes do not fit the network the config describes.
        """
        if not use_safetensors:
            raise ValueError("networks are read from safetensors only (use_safetensors=True)")
        path = Path(path)
        network = cls.from_config(cls.load_config(path))
        if cls.has_weights:
            # load_state_dict copies into the network's float32 parameters: fp16 files come back as float32.
            network.load_state_dict(load_file(path / WEIGHTS_NAME))
        return network.eval()
