"""
The progressive x2 -> x4 CNN (Rahman et al. 2020; `sunpy_superres.models.progressive`), trained with
pixel MSE on both pyramid levels (`~sunpy_superres.models.progressive.progressive_mse`).

``[model.progressive]`` holds the parameters of `~sunpy_superres.models.progressive.ProgressiveNet`
but the factor (4), with its defaults, and three keys of the run:

``level_weights``
    The weights of the x2 and x4 levels in the loss (empty: all ones).
``projected_loss``
    Take the x4 level's error after projection onto the input's block means (``projected`` of
    `~sunpy_superres.models.progressive.progressive_mse`): trains the regression of a
    ``residual_base = "regression"`` diffusion model for the base it is used as.
``init_from``
    A trained progressive model (registry name, model directory or ``hf://`` reference) whose
    network the run starts from, instead of new weights; its architecture replaces the table's.
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
    extra=[("level_weights", []), ("projected_loss", False), ("init_from", "")],
    doc=(
        "``[model.progressive]``: the parameters of `~sunpy_superres.models.progressive.ProgressiveNet` "
        "but ``factor``, ``level_weights`` and ``projected_loss`` of the loss, and ``init_from``."
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
        """`~sunpy_superres.models.progressive.progressive_mse` with ``level_weights`` and ``projected_loss``."""
        table = self.cfg.model.progressive
        return progressive_mse(
            module,
            batch.lr,
            batch.hr,
            level_weights=table.level_weights or None,
            projected=table.projected_loss,
        )
