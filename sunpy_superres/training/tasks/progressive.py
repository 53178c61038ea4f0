"""
The progressive x2 -> x4 CNN (Rahman et al. 2020; `sunpy_superres.models.progressive`), trained with
pixel MSE on both pyramid levels (`~sunpy_superres.models.progressive.progressive_mse`).

``[model.progressive]`` holds the parameters of `~sunpy_superres.models.progressive.ProgressiveNet`
but the factor (4), with its defaults, and ``level_weights``: the weights of the x2 and x4 levels in
the loss (empty: all ones).
"""

from ...models.progressive import ProgressiveNet, ProgressiveSuperResolution, progressive_mse
from .base import signature_config
from .cnn import CNNTask
from .registry import register

__all__ = ["ProgressiveConfig", "ProgressiveTask"]

ProgressiveConfig = signature_config(
    "ProgressiveConfig",
    ProgressiveNet,
    exclude=("factor",),
    extra=[("level_weights", [])],
    doc=(
        "``[model.progressive]``: the parameters of `~sunpy_superres.models.progressive.ProgressiveNet` "
        "but ``factor``, and ``level_weights`` of the loss."
    ),
)


@register("progressive")
class ProgressiveTask(CNNTask):
    """Progressive: both pyramid levels supervised (x2 by the 2x2 block means), ProSR's curriculum."""

    config_class = ProgressiveConfig
    network_class = ProgressiveNet
    model_class = ProgressiveSuperResolution
    legacy_keys = {
        "cnn_channels": "channels",
        "cnn_skip": "skip",
        "progressive_growth_rate": "growth_rate",
        "progressive_layers_per_block": "layers_per_block",
        "progressive_blocks_per_level": "blocks_per_level",
        "progressive_level_weights": "level_weights",
    }

    def loss(self, module, batch, generator):
        """`~sunpy_superres.models.progressive.progressive_mse` with ``level_weights``."""
        weights = self.cfg.model.progressive.level_weights or None
        return progressive_mse(module, batch.lr, batch.hr, level_weights=weights)
