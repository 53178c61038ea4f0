"""
The model zoo behind one name space.

``load_model("bicubic")`` returns a ready `~sunpy_superres.models.base.SuperResolutionModel`;
an unknown name raises a `ValueError` that lists what is available. ``"default"`` is an alias for
the embedded default model.
"""

import os

from . import hub
from .base import SuperResolutionModel
from .interpolation import BicubicModel, NearestModel

__all__ = ["register_model", "available_models", "load_model", "DEFAULT_MODEL", "EMBEDDED_MODELS"]


def _embedded_models():
    """``{name: directory}`` of the trained models shipped inside the package (`sunpy_superres.data`)."""
    from ..data import MODELS_DIR

    if not MODELS_DIR.is_dir():
        return {}
    return {d.name: d for d in sorted(MODELS_DIR.iterdir()) if (d / hub.MANIFEST).is_file()}


EMBEDDED_MODELS = _embedded_models()

#: The model used when none is named: the embedded latent diffusion model with residuals (issue 5),
#: or bicubic interpolation in an installation without it.
DEFAULT_MODEL = "ldm-res" if "ldm-res" in EMBEDDED_MODELS else "bicubic"

_REGISTRY = {}


def register_model(name, loader, description):
    """
    Register ``loader(device=...)`` under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is taken.
    """
    if name in _REGISTRY or name == "default":
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = (loader, description)


def available_models():
    """
    Registered model names with a one-line description each.

    Returns
    -------
    dict
        ``{name: description}``, including the ``"default"`` alias.
    """
    models = {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}
    models["default"] = f"alias of {DEFAULT_MODEL!r}"
    return models


def load_model(model="default", *, device="auto"):
    """
    Resolve ``model`` to a ready-to-use model.

    Parameters
    ----------
    model : str, path-like, `~sunpy_superres.models.hub.HubModel` or `~sunpy_superres.models.base.SuperResolutionModel`
        A registry name (see `available_models`); a local model directory (with a ``superres.json``
        manifest); a pinned Hub reference ``"hf://owner/repo@<40-hex commit>"`` or `HubModel`; or a
        model instance, returned as it is.
    device : str, optional
        Torch device for the model; ``"auto"`` picks a GPU when there is one.

    Raises
    ------
    ValueError
        If the name is not registered (the message lists the registered names), or names a diffusion
        variant without shipped weights (the message says how to pass a directory instead).
    ~sunpy_superres.models.hub.WeightsNotFoundError
        If Hub weights are neither cached nor downloadable (e.g. ``HF_HUB_OFFLINE=1``, empty cache).
    ~sunpy_superres.models.hub.ChecksumError
        If a weights file does not match its recorded sha256.
    """
    if isinstance(model, SuperResolutionModel):
        return model
    if isinstance(model, hub.HubModel) or (isinstance(model, str) and model.startswith("hf://")):
        return hub.load_hub_model(model, device=device)
    if isinstance(model, os.PathLike) or (
        isinstance(model, str)
        and model not in _REGISTRY
        and (os.sep in model or "/" in model or os.path.isdir(model))
    ):
        if not os.path.isdir(model):
            raise ValueError(
                f"model {os.fspath(model)!r} is neither a registered name nor a model directory."
            )
        return hub.load_directory(model, device=device)
    if not isinstance(model, str):
        raise TypeError(
            f"model must be a registry name, a model directory, a Hub reference or a "
            f"SuperResolutionModel, got {type(model).__name__}"
        )
    name = DEFAULT_MODEL if model == "default" else model
    if name not in _REGISTRY and name in hub.TRAINED_MODELS:
        raise ValueError(hub.no_weights_message(name))
    if name not in _REGISTRY:
        names = ", ".join(repr(n) for n in available_models())
        raise ValueError(f"unknown model {model!r}; available models are {names}.")
    loader, _ = _REGISTRY[name]
    return loader(device=device)


register_model("nearest", NearestModel, "nearest-neighbour replication (flux-conserving at the input scale)")
register_model("bicubic", BicubicModel, "bicubic interpolation (Keys, a=-0.75)")


# Trained models register only when they have weights: embedded in the package (sunpy_superres/data/models)
# or pinned on the Hub (hub.PINNED_WEIGHTS); embedded weights win, so the package works offline. Listing
# a name whose loading fails would break `available_models()` users; an unregistered variant name still
# gives a clear "no trained weights ship yet" error from load_model.
def _embedded_loader(path):
    def load(device="auto"):
        return hub.load_directory(path, device=device)

    return load


def _pinned_loader(spec):
    def load(device="auto"):
        return hub.load_hub_model(spec, device=device)

    return load


for _name, _path in EMBEDDED_MODELS.items():
    _description = hub.TRAINED_MODELS.get(_name, _name) + " [embedded weights]"
    register_model(_name, _embedded_loader(_path), _description)
for _name, _spec in hub.PINNED_WEIGHTS.items():
    if _name not in _REGISTRY:
        register_model(_name, _pinned_loader(_spec), hub.TRAINED_MODELS.get(_name, str(_spec)))
