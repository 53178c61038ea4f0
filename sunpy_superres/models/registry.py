"""
The model zoo behind one name space.

``load_model("bicubic")`` returns a ready `~sunpy_superres.models.base.SuperResolutionModel`;
an unknown name raises a `ValueError` that lists what is available. ``"default"`` is an alias for
the embedded default model.
"""

from .base import SuperResolutionModel
from .interpolation import BicubicModel, NearestModel

__all__ = ["register_model", "available_models", "load_model", "DEFAULT_MODEL"]

#: The model used when none is named. Bicubic until a trained diffusion default ships.
DEFAULT_MODEL = "bicubic"

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
    model : str or `~sunpy_superres.models.base.SuperResolutionModel`
        A registry name (see `available_models`) or a model instance, returned as it is.
    device : str, optional
        Torch device for the model; ``"auto"`` picks a GPU when there is one.

    Raises
    ------
    ValueError
        If the name is not registered (the message lists the registered names).
    """
    if isinstance(model, SuperResolutionModel):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name or a SuperResolutionModel, got {type(model).__name__}")
    name = DEFAULT_MODEL if model == "default" else model
    if name not in _REGISTRY:
        names = ", ".join(repr(n) for n in available_models())
        raise ValueError(f"unknown model {model!r}; available models are {names}.")
    loader, _ = _REGISTRY[name]
    return loader(device=device)


register_model("nearest", NearestModel, "nearest-neighbour replication (flux-conserving at the input scale)")
register_model("bicubic", BicubicModel, "bicubic interpolation (Keys, a=-0.75)")
