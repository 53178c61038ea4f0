"""
Interpolation baselines: nearest-neighbour replication and bicubic interpolation.

Both use `torch.nn.functional.interpolate` with ``align_corners=False``: output pixel centres sit at
``(i + 0.5) / f - 0.5`` on the input grid, which is exactly the grid that
`sunpy_superres.maps.finer_meta` (and sunpy's ``resample``) describes. Nearest replication keeps the
mean of every 4x4 block equal to the input pixel, so it conserves flux at the input's scale; bicubic
(Keys kernel, a = -0.75, edge pixels replicated) is the paper's interpolation baseline.
"""

import torch.nn.functional as F

from .base import SuperResolutionModel

__all__ = ["NearestModel", "BicubicModel"]


class NearestModel(SuperResolutionModel):
    """Each input pixel replicated into a factor x factor block (no context needed)."""

    name = "nearest"
    halo = 0
    tile_size = 512

    def _forward(self, x, *, seeds):
        return F.interpolate(x, scale_factor=self.factor, mode="nearest")


class BicubicModel(SuperResolutionModel):
    """Bicubic interpolation (4x4 input pixels of support: a halo of 2)."""

    name = "bicubic"
    halo = 2
    tile_size = 512

    def _forward(self, x, *, seeds):
        return F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False)
