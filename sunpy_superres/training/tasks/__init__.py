"""
Training tasks: what `~sunpy_superres.training.train` needs to know about each model kind.

A task (`~sunpy_superres.training.tasks.base.Task`) builds its network, draws a step's batch, computes
the loss and exports the trained model, so the loop never asks what it trains (as in nanoGPT, where
the model owns its loss). Each kind is one module that defines its task and its config table
(``[model.<kind>]``) and registers the task with `register`; adding a kind is that module and one
import line below.
"""

from .registry import TASKS, get_task, register

__all__ = ["TASKS", "register", "get_task"]

# Importing a kind's module registers its task: one line per kind.
from . import (
    autoencoder,  # noqa: F401
    consistency,  # noqa: F401
    decoder,  # noqa: F401
    diffusion,  # noqa: F401
    enhance,  # noqa: F401
    progressive,  # noqa: F401
    trajectory,  # noqa: F401
)
