"""
Enhance (Diaz Baso & Asensio Ramos 2018; `sunpy_superres.models.enhance`), trained with pixel MSE.

``[model.enhance]`` holds the parameters of `~sunpy_superres.models.enhance.EnhanceNet` but the
factor (4), with its defaults.
"""

import torch.nn.functional as F

from ...models.enhance import EnhanceNet, EnhanceSuperResolution
from .base import signature_config
from .cnn import CNNTask
from .registry import register

__all__ = ["EnhanceConfig", "EnhanceTask"]

EnhanceConfig = signature_config(
    "EnhanceConfig",
    EnhanceNet,
    exclude=("factor",),
    doc="``[model.enhance]``: the parameters of `~sunpy_superres.models.enhance.EnhanceNet` but ``factor``.",
)


@register("enhance")
class EnhanceTask(CNNTask):
    """Enhance: the CNN's output against the HR crop, pixel MSE."""

    config_class = EnhanceConfig
    network_class = EnhanceNet
    model_class = EnhanceSuperResolution
    legacy_keys = {
        "cnn_channels": "channels",
        "cnn_skip": "skip",
        "enhance_residual_blocks": "num_residual_blocks",
        "enhance_upsample_channels": "upsample_channels",
        "enhance_batch_norm": "batch_norm",
    }

    def loss(self, module, batch, generator):
        """Pixel MSE of the output."""
        return F.mse_loss(module(batch.lr).float(), batch.hr.float())
