"""The model zoo: diffusion models, CNN baselines and interpolation, behind one registry."""

from .base import SuperResolutionModel, resolve_device
from .registry import DEFAULT_MODEL, available_models, load_model, register_model

__all__ = [
    "SuperResolutionModel",
    "resolve_device",
    "DEFAULT_MODEL",
    "available_models",
    "load_model",
    "register_model",
]
