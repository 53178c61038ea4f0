"""
==========================
Tiles that meet seamlessly
==========================

A map larger than the model's tile (256x256 input pixels for the default; a full MDI disk takes 25)
is super-resolved tile by tile, and the tiles are blended across ramps where they overlap. A
diffusion model's sample of each tile starts from random noise; if every tile drew its own, the
blend across a ramp would average two independent samples there, and a sample's small-scale
texture and the spread of several samples would dip along every seam (to about 0.8 of elsewhere,
the user guide says). `~sunpy_superres.superresolve` gives overlapping tiles one noise where they
overlap (`sunpy_superres.tiling.SharedNoise`), so their samples nearly agree there.

Here the shipped MDI cut-out (128x128) is super-resolved in one tile and, with ``tile_size=96``,
in 2x2 tiles, eight samples each, and the standard deviation and the texture below 2" are
compared column by column across the seam.
"""

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.consistency import block_means, repeat_blocks
from sunpy_superres.data import MDI_AR_CUTOUT
from sunpy_superres.models import load_model
from sunpy_superres.tiling import blend_window, plan_tiles

###############################################################################
# The same input, seed and samples, in one tile and in four.

mdi = sunpy.map.Map(MDI_AR_CUTOUT)
runs = {
    tile: superresolve(mdi, samples=8, seed=2, tile_size=tile, keep_samples=True, progress=False)
    for tile in (256, 96)
}

###############################################################################
# Where the ramps are: the columns of the output grid where the first tile's weight is between
# 0.05 and 0.95 (the tiling's own plan and windows; the overlap is twice the model's halo plus 8).

model = load_model("default")
overlap = 2 * model.halo + 8
tiles = plan_tiles(mdi.data.shape, 96, overlap)
weight = blend_window(tiles[0], mdi.data.shape, factor=4, halo=model.halo, overlap=overlap)
ramp = np.flatnonzero((weight.max(axis=0) > 0.05) & (weight.max(axis=0) < 0.95))
print(f"{len(tiles)} tiles of {tiles[0].size_y}x{tiles[0].size_x}; ramp columns {ramp[0]}-{ramp[-1]}")

###############################################################################
# Per column, the median over rows of the standard deviation of the samples and of their texture
# below 2" (each sample minus its 4x4 block means, rms over the samples), tiled over untiled.


def column_profiles(um):
    s = um.samples.to_value(u.G)
    blocks = np.stack([repeat_blocks(block_means(sample, 4), 4) for sample in s])
    texture = np.sqrt(((s - blocks) ** 2).mean(axis=0))
    return np.median(s.std(axis=0), axis=0), np.median(texture, axis=0)


(std1, tex1), (std4, tex4) = column_profiles(runs[256]), column_profiles(runs[96])
for name, ratio in (("standard deviation", std4 / std1), ('texture below 2"', tex4 / tex1)):
    inside = np.median(ratio[ramp])
    outside = np.median(np.delete(ratio, ramp))
    print(f"{name}, tiled / untiled: {inside:.2f} in the ramp, {outside:.2f} elsewhere")

###############################################################################
# The profiles: the ramp (shaded) is no different from the rest.

fig, ax = plt.subplots(figsize=(8, 4))
ax.axvspan(ramp[0], ramp[-1], color="0.85", label="blending ramp")
ax.plot(std4 / std1, label="standard deviation")
ax.plot(tex4 / tex1, label='texture below 2"')
ax.axhline(1.0, color="k", lw=0.8)
ax.set_xlabel("output column (pixel)")
ax.set_ylabel("2x2 tiles / one tile (median over rows)")
ax.set_ylim(0.5, 1.5)
ax.legend()
plt.show()
