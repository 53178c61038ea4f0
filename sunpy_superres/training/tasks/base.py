"""
The training task of a model kind (`Task`), its batches (`Batch`), and config tables made from a
network's constructor (`signature_config`).
"""

import dataclasses
import functools
import inspect
import sys
from pathlib import Path

import torch

from ..common import FACTOR, crop_dataset, data_files, export_ema, load_reference
from ..data import PairCrops, degrade
from ..finetune import Weights, finetune_pairs
from .registry import TASKS

__all__ = ["Task", "Batch", "signature_config", "config_kwargs"]


def signature_config(name, *functions, exclude=(), defaults=None, extra=(), doc=None):
    """
    A config table (a dataclass) whose fields are the keyword parameters of ``functions``.

    Each field has the parameter's default, so the network's constructor is the one place a
    hyper-parameter's default is written (as diffusers' ``register_to_config`` makes the same
    signature the network's saved config). Tuples become lists, since TOML and JSON have none;
    `config_kwargs` turns them back.

    Parameters
    ----------
    name : str
        Class name.
    *functions : callable
        Constructors or functions (e.g. a loss) whose parameters with defaults become fields, in order.
    exclude : iterable of str, optional
        Parameters that are not hyper-parameters (set by the task, e.g. the factor).
    defaults : dict, optional
        Fields whose default in a training config differs from the function's, with their meaning
        (e.g. 0: measured on the training data).
    extra : iterable of tuple, optional
        ``(name, default)`` of further fields the task reads.
    doc : str, optional
        Class docstring.

    Returns
    -------
    type
        The dataclass, defined in the caller's module.
    """
    fields, defaults = {}, dict(defaults or {})
    for function in functions:
        for p in inspect.signature(function).parameters.values():
            if p.default is not p.empty and p.name not in exclude and p.name not in fields:
                fields[p.name] = defaults.pop(p.name, p.default)
    if defaults:
        raise TypeError(f"{name}: no parameter {sorted(defaults)} to give a default to")
    fields.update(extra)
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    return dataclasses.make_dataclass(
        name, [_field(k, v) for k, v in fields.items()], namespace={"__doc__": doc, "__module__": module}
    )


def _field(name, default):
    if isinstance(default, (list, tuple)):
        return name, list, dataclasses.field(default_factory=functools.partial(list, default))
    return name, type(default), dataclasses.field(default=default)


def config_kwargs(table, function):
    """
    The fields of a config table that ``function`` takes, as keyword arguments.

    A list becomes a tuple where the parameter's default is a tuple, as the constructor was always
    called (its saved config stays the same).
    """
    params = inspect.signature(function).parameters
    kwargs = {}
    for f in dataclasses.fields(table):
        if f.name in params:
            value = getattr(table, f.name)
            kwargs[f.name] = tuple(value) if isinstance(params[f.name].default, tuple) else value
    return kwargs


class Batch:
    """
    One training step's data on the training device.

    Parameters
    ----------
    hr : `torch.Tensor`
        ``(B, 1, H, W)`` targets, network units.
    lr : `torch.Tensor`, optional
        ``(B, 1, H / 4, W / 4)`` inputs when the data have their own (MDI/HMI pairs); by default made
        from ``hr`` by the paper's degradation.
    noise_level : `torch.Tensor`, optional
        ``(B,)`` noise levels of the targets in G, for a noise-conditioned denoiser.
    """

    def __init__(self, hr, lr=None, noise_level=None):
        self.hr, self._lr, self.noise_level = hr, lr, noise_level

    @functools.cached_property
    def lr_up(self):
        """The input on the target's grid: its pixels replicated 4x4 (the paper's input, section 4)."""
        if self._lr is None:
            return degrade(self.hr)
        return self._lr.repeat_interleave(FACTOR, dim=-2).repeat_interleave(FACTOR, dim=-1)

    @property
    def lr(self):
        """The input on its own grid."""
        return self.lr_up[..., ::FACTOR, ::FACTOR] if self._lr is None else self._lr


class Task:
    """
    What `~sunpy_superres.training.train` needs to know about one model kind.

    A subclass, registered with `sunpy_superres.training.tasks.register`, builds the network
    (`build_network`), draws a step's data (`batch`), computes the loss (`loss`) and exports the model
    (`write_model`); the loop never asks what it trains. How the weights start, are checkpointed and
    exported is ``self.weights`` (`~sunpy_superres.training.finetune.Weights`), the task's
    `finetune_method` when the config fine-tunes.

    Parameters
    ----------
    cfg : `~sunpy_superres.training.config.TrainConfig`
        The run.
    accelerator : `accelerate.Accelerator`
        Its processes and device.
    progress : bool, optional
        Show progress bars (of a stage a task trains first).

    Raises
    ------
    ValueError
        If the config fine-tunes a kind that cannot be fine-tuned, or a base model of another kind.
    FileNotFoundError
        If the config's data directory has no matching files, or a fine-tune finds no pairs.
    """

    #: The ``[model]`` kind, set by `~sunpy_superres.training.tasks.register`.
    kind = None
    #: The kind's config table, ``[model.<kind>]`` (a dataclass), or `None`.
    config_class = None
    #: Old flat ``[model]`` keys of this kind and their names in its table (configs saved before the
    #: tables existed still load).
    legacy_keys = {}
    #: The network class a checkpoint's ``model`` directory holds.
    network_class = None
    #: The super-resolution model class it exports (what a fine-tuning base must be).
    model_class = None
    #: `~sunpy_superres.training.finetune.Weights` subclass used with ``[finetune]``; `None`: refused.
    finetune_method = None
    #: ``{name: tensor}`` EMA weights of the network's trainable parameters, set by the loop before
    #: the first step and updated in place after each (what the run exports).
    ema = None

    def __init__(self, cfg, accelerator, *, progress=True):
        self.cfg, self.accelerator = cfg, accelerator
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        if cfg.finetune.enabled:
            self._start_finetune()
        else:
            self.weights = Weights(self)
            self.train_files, _ = data_files(cfg)
            dataset = crop_dataset(cfg, self.train_files, cfg.seed, noise_labels=self.noise_labels)
            self.data = _CropBatches(self, dataset)
        self.setup(progress)

    def _start_finetune(self):
        cfg = self.cfg
        if self.finetune_method is None:
            raise ValueError(
                f"[finetune] applies to super-resolution models, not to [model] kind = {self.kind!r}"
            )
        ref, base = load_reference(cfg.finetune.base_model)
        if not isinstance(base, self.model_class):
            raise ValueError(
                f"[finetune] base_model {ref!r} is a {_kind_of(base)!r} model, but [model] kind is {self.kind!r}"
            )
        self.weights = self.finetune_method(self, ref, base)
        crops = PairCrops(
            finetune_pairs(cfg),
            crop_size=cfg.data.crop_size,
            augment=cfg.data.augment,
            min_valid_fraction=cfg.finetune.min_valid_fraction,
            seed=cfg.seed,
        )
        # A pair's HR crop is too small to measure a noise level: a noise-conditioned base keeps its own.
        self.data = _PairBatches(self, crops, getattr(base, "noise_level", None))

    @classmethod
    def config_tables(cls):
        """The ``[model]`` tables this kind reads (others are left out when a checkpoint is compared)."""
        return (cls.kind,) if cls.config_class is not None else ()

    @classmethod
    def check_config(cls, model_config):
        """Refuse a ``[model]`` config this kind cannot train (`ValueError`); the default accepts all."""

    @classmethod
    def is_standalone(cls, cfg):
        """Whether a checkpoint's network is the whole model (`~sunpy_superres.training.export_checkpoint`)."""
        return False

    @classmethod
    def standalone_model(cls, cfg, network, revision):
        """The model that ``network`` makes by itself, when `is_standalone`."""
        raise NotImplementedError

    @classmethod
    def stages(cls, cfg):
        """
        The runs to train before this one, whose models it needs (e.g. an autoencoder).

        Returns
        -------
        list of `~sunpy_superres.training.config.TrainConfig`
            Those whose model is not there yet; by default none.
        """
        return []

    @property
    def noise_labels(self):
        """Whether the crops carry noise labels (and ``[data]``'s noise augmentation)."""
        return False

    def setup(self, progress):
        """Load or train what the task needs besides its network (after the data, before the network)."""

    def build_network(self):
        """The new network of a run that does not fine-tune."""
        raise NotImplementedError

    def load_network(self, path):
        """The network of a checkpoint's ``model`` directory."""
        return self.network_class.from_pretrained(path, use_safetensors=True)

    def training_module(self, net):
        """The module whose forward pass `loss` calls (distributed wrappers synchronise its gradients)."""
        return net

    def batch(self, step):
        """The data of training step ``step`` on this process (a `Batch`)."""
        return self.data(step)

    def loss(self, module, batch, generator):
        """
        The training loss of one batch.

        Parameters
        ----------
        module : `torch.nn.Module`
            `training_module`, prepared by `accelerate`.
        batch : `Batch`
        generator : `torch.Generator`
            The step's seeded generator (timesteps, noise).
        """
        raise NotImplementedError

    def write_model(self, model, final, step):
        """Write ``model`` (the network with its EMA weights, on the CPU) as the model directory ``final``."""
        raise NotImplementedError

    def provenance(self):
        """What the exported model's ``training_config.json`` records beyond the config: the revisions
        of the models a run started from or learnt from, since a registry name may mean other weights
        later. Stored in each checkpoint too, so that `~sunpy_superres.training.loop.export_checkpoint`
        records what the run used, not what the name means when it exports."""
        return {}

    def export(self, net, ema, step):
        """Write the EMA weights as the run's model (``output_dir/model``); returns its path."""
        final = Path(self.cfg.output_dir) / "model"
        return export_ema(
            self.accelerator, net, ema, final, lambda model: self.write_model(model, final, step)
        )

    def revision(self, step):
        """The revision of the model exported at ``step``."""
        return f"{self.cfg.name}-step{step}"


def _kind_of(model):
    kinds = [k for k, t in TASKS.items() if t.finetune_method and isinstance(model, t.model_class)]
    return kinds[0] if kinds else type(model).__name__


class _CropBatches:
    """Batches of HR crops of full-disk files (`~sunpy_superres.training.data.CropDataset`)."""

    def __init__(self, task, dataset):
        self.task, self.dataset = task, dataset

    def __call__(self, step, *, with_noise=False):
        t = self.task
        drawn = self.dataset.batch(
            step, t.cfg.batch_size, rank=t.rank, world_size=t.world, with_noise=with_noise
        )
        if not with_noise:
            return Batch(torch.from_numpy(drawn)[:, None].to(t.device))
        hr, noise_level = (torch.from_numpy(a) for a in drawn)
        return Batch(hr[:, None].to(t.device), noise_level=noise_level.to(t.device))


class _PairBatches:
    """Batches of aligned crops of MDI/HMI pairs (`~sunpy_superres.training.data.PairCrops`)."""

    def __init__(self, task, crops, noise_level):
        self.task, self.crops, self.noise_level = task, crops, noise_level

    def __call__(self, step, *, with_noise=False):
        t = self.task
        lr, hr = (
            torch.from_numpy(a)[:, None].to(t.device)
            for a in self.crops.batch(step, t.cfg.batch_size, rank=t.rank, world_size=t.world)
        )
        return Batch(hr, lr=lr, noise_level=self.noise_level)
