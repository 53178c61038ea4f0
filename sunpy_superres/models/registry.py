"""
The model zoo behind one name space.

``load_model("bicubic")`` returns a ready `~sunpy_superres.models.base.SuperResolutionModel`;
an unknown name raises a `ValueError` that lists what is available. ``"default"`` is an alias for
the embedded default model.

Importing this module costs nothing: it imports no model (so no torch) and reads no disk. The
built-in models register loaders that import their module when called; the trained models (embedded
in the package or pinned on the Hub) register on the first call that needs the registry.
"""

import functools
import importlib
import os
import sys
import threading

__all__ = ["register_model", "available_models", "load_model", "DEFAULT_MODEL", "EMBEDDED_MODELS"]  # noqa: F822

_REGISTRY = {}
_TRAINED_REGISTERED = False
_TRAINED_LOCK = threading.RLock()


@functools.cache
def _embedded_models():
    """``{name: directory}`` of the trained models shipped inside the package (`sunpy_superres.data`)."""
    from ..data import MODELS_DIR
    from .manifest import MANIFEST

    if not MODELS_DIR.is_dir():
        return {}
    return {d.name: d for d in sorted(MODELS_DIR.iterdir()) if (d / MANIFEST).is_file()}


def _default_model():
    return "ldm-res" if "ldm-res" in _embedded_models() else "bicubic"


def __getattr__(name):
    # Module constants computed on first use (PEP 562), so that the import reads no disk.
    if name == "EMBEDDED_MODELS":
        #: ``{name: directory}`` of the embedded trained models.
        return _embedded_models()
    if name == "DEFAULT_MODEL":
        #: The model used when none is named: the embedded latent diffusion model with residuals,
        #: or bicubic interpolation in an installation without it.
        return _default_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_model(name, loader, description):
    """
    Register ``loader(device=...)`` under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is taken.
    """
    _register_trained()
    _register(name, loader, description)


def _register(name, loader, description):
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
    _register_trained()
    models = {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}
    models["default"] = f"alias of {_default_model()!r}"
    return models


def _loaded(module, cls_name):
    """``sys.modules[module].<cls_name>`` if that module was imported, else `None`: a cheap isinstance."""
    module = sys.modules.get(f"{__package__}.{module}")
    return None if module is None else getattr(module, cls_name)


def load_model(model="default", *, device="auto", stored=False):
    """
    Resolve ``model`` to a ready-to-use model.

    A model directory whose manifest names a ``default_sampler`` (the embedded ``ldm-res`` names
    its 4-step distilled student) is served with that sampler: the student, through which every
    other sampler (``configure_sampler(sampler=...)``) still reaches the network it was distilled
    from.

    Parameters
    ----------
    model : str, path-like, `~sunpy_superres.models.hub.HubModel` or `~sunpy_superres.models.base.SuperResolutionModel`
        A registry name (see `available_models`); a local model directory (with a ``superres.json``
        manifest); a pinned Hub reference ``"hf://owner/repo@<40-hex commit>"`` or `HubModel`; or a
        model instance, returned as it is (with ``stored``, its teacher when it is a student
        reached through one).
    device : str, optional
        Torch device for the model; ``"auto"`` picks a GPU when there is one.
    stored : bool, optional
        The model as its directory stores it, with the sampler of its own network rather than its
        ``default_sampler``'s student (for a student reached through its teacher, the teacher):
        what fine-tuning, distillation and the tools that rewrite a model directory start from.

    Raises
    ------
    ValueError
        If the name is not registered (the message lists the registered names), or names a diffusion
        variant without shipped weights (the message says how to pass a directory instead).
    ~sunpy_superres.models.manifest.WeightsNotFoundError
        If Hub weights are neither cached nor downloadable (e.g. ``HF_HUB_OFFLINE=1``, empty cache).
    ~sunpy_superres.models.manifest.ChecksumError
        If a weights file does not match its recorded sha256.
    """
    # A model or HubModel instance can exist only once its module was imported.
    base = _loaded("base", "SuperResolutionModel")
    if base is not None and isinstance(model, base):
        return (getattr(model, "teacher", None) or model) if stored else model
    loaded = _load(model, device)
    if stored:
        return loaded
    default = getattr(loaded, "default_sampler", None)
    return loaded if default is None else loaded.configure_sampler(sampler=default)


def _load(model, device):
    """`load_model` of a name, directory or Hub reference, as the directory stores it."""
    hub_model = _loaded("hub", "HubModel")
    if (hub_model is not None and isinstance(model, hub_model)) or (
        isinstance(model, str) and model.startswith("hf://")
    ):
        from .hub import load_hub_model

        return load_hub_model(model, device=device)
    _register_trained()
    if isinstance(model, os.PathLike) or (
        isinstance(model, str)
        and model not in _REGISTRY
        and (os.sep in model or "/" in model or os.path.isdir(model))
    ):
        if not os.path.isdir(model):
            raise ValueError(
                f"model {os.fspath(model)!r} is neither a registered name nor a model directory."
            )
        from .manifest import load_directory

        return load_directory(model, device=device)
    if not isinstance(model, str):
        raise TypeError(
            f"model must be a registry name, a model directory, a Hub reference or a "
            f"SuperResolutionModel, got {type(model).__name__}"
        )
    name = _default_model() if model == "default" else model
    if name not in _REGISTRY:
        from .hub import TRAINED_MODELS, no_weights_message

        if name in TRAINED_MODELS:
            raise ValueError(no_weights_message(name))
        names = ", ".join(repr(n) for n in available_models())
        raise ValueError(f"unknown model {model!r}; available models are {names}.")
    loader, _ = _REGISTRY[name]
    return loader(device=device)


def _class_loader(module, cls_name):
    """A loader that imports ``module`` (of this package) when first called."""

    def load(device="auto"):
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls_name)(device=device)

    return load


_register(
    "nearest",
    _class_loader("interpolation", "NearestModel"),
    "nearest-neighbour replication (flux-conserving at the input scale)",
)
_register("bicubic", _class_loader("interpolation", "BicubicModel"), "bicubic interpolation (Keys, a=-0.75)")


# Trained models register only when they have weights: embedded in the package (sunpy_superres/data/models)
# or pinned on the Hub (hub.PINNED_WEIGHTS); embedded weights win, so the package works offline. Listing
# a name whose loading fails would break `available_models()` users; an unregistered variant name still
# gives a clear "no trained weights ship yet" error from load_model.
def _register_trained():
    global _TRAINED_REGISTERED
    if _TRAINED_REGISTERED:
        return
    with _TRAINED_LOCK:  # two threads loading their first model register the trained models once
        if _TRAINED_REGISTERED:
            return
        from . import hub

        for name, path in _embedded_models().items():
            if name not in _REGISTRY:
                description = hub.TRAINED_MODELS.get(name, name) + " [embedded weights]"
                _register(name, _directory_loader(path), description)
        for name, spec in hub.PINNED_WEIGHTS.items():
            if name not in _REGISTRY:
                _register(name, _pinned_loader(spec), hub.TRAINED_MODELS.get(name, str(spec)))
        _TRAINED_REGISTERED = True  # only once all are in: a failure here is retried, not hidden


def _directory_loader(path):
    def load(device="auto"):
        from .manifest import load_directory

        return load_directory(path, device=device)

    return load


def _pinned_loader(spec):
    def load(device="auto"):
        from .hub import load_hub_model

        return load_hub_model(spec, device=device)

    return load
