"""
The model zoo: diffusion models, CNN baselines and interpolation, behind one registry.

Importing it imports no model and no torch; `SuperResolutionModel` and `resolve_device` (which
need torch) are imported on first use.
"""

from .registry import available_models, load_model, register_model

__all__ = [  # noqa: F822 - the first three come from __getattr__
    "SuperResolutionModel",
    "resolve_device",
    "DEFAULT_MODEL",
    "available_models",
    "load_model",
    "register_model",
]


def __getattr__(name):
    # PEP 562: torch is imported when a name that needs it is first used, not with the package.
    if name in ("SuperResolutionModel", "resolve_device"):
        from . import base

        return getattr(base, name)
    if name in ("DEFAULT_MODEL", "EMBEDDED_MODELS"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
