"""
The seams between tiles: texture, spread and coverage inside the blending ramps against elsewhere.

A map larger than one tile is super-resolved tile by tile and blended across ramps where the tiles
overlap (`sunpy_superres.tiling`). Where the ramps are, a diffusion model's samples are blends of
two tiles' samples; this script measures what that does. From an HMI frame (a training frame: the
held-out 2016-07-07 frame is refused), ``--boxes`` boxes of 1280x1280 pixels (the first three in
quiet Sun near disk centre, then one with more field) are degraded by 4x4 block means to 320x320,
super-resolved in 4 tiles with ``--samples`` samples, and compared inside the ramps (output pixels
where a tile's weight is between 0.05 and 0.95) and elsewhere:

* **texture**: the rms over the samples of each sample minus its 4x4 block means (the field below
  2"), median over the quiet pixels (``|B| < 50 G`` in the mean), ramp over elsewhere;
* **spread**: the samples' own standard deviation, the same way, and the calibrated one that
  ``superresolve`` returns (which adds each |B| bin's floor in quadrature: `sunpy_superres.conformal`);
* **coverage**: the fraction of the true pixels within ``+-1`` and ``+-2`` of the calibrated
  standard deviation, all pixels.

Run from the repository root::

    python benchmarks/tile_seams.py ../shared/data/hmi/hmi.M_720s.20190621_060000_TAI.magnetogram.fits
    python benchmarks/tile_seams.py <frame> --sampler dpm-solver++ --samples 4 --boxes 3
"""

import argparse
import warnings

import astropy.units as u
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.consistency import block_means, repeat_blocks
from sunpy_superres.evaluation import degrade
from sunpy_superres.models import load_model
from sunpy_superres.tiling import blend_window, plan_tiles

HELD_OUT = "2016-07-07"
#: Box centres, in pixels from the centre of a 4096x4096 HMI frame: three quiet, then one with more field.
OFFSETS = [(-700, -400), (300, -900), (-300, 600), (200, 200)]
HALF = 640  # a box of 1280x1280 HMI pixels: 320x320 input pixels, 4 tiles of the default


def ramp_mask(shape, model):
    """Output pixels inside a blending ramp: a tile's weight between 0.05 and 0.95, on any axis."""
    f, overlap = model.factor, 2 * model.halo + 8
    first = plan_tiles(shape, model.tile_size, overlap)[0]
    weight = np.zeros((f * shape[0], f * shape[1]))
    weight[first.scaled_slices(f)] = blend_window(first, shape, factor=f, halo=model.halo, overlap=overlap)
    cols = (weight.max(axis=0) > 0.05) & (weight.max(axis=0) < 0.95)
    rows = (weight.max(axis=1) > 0.05) & (weight.max(axis=1) < 0.95)
    return cols[None, :] | rows[:, None]


def measure(truth, lr, model, samples, seed):
    """``(texture, samples' spread, calibrated spread, +-1 coverage in ramps, elsewhere, +-2 ...)`` of one box."""
    um = superresolve(lr, model=model, samples=samples, seed=seed, keep_samples=True, progress=False)
    s = um.samples.to_value(u.G)
    blocks = np.stack([repeat_blocks(block_means(sample, 4), 4) for sample in s])
    texture = np.sqrt(((s - blocks) ** 2).mean(axis=0))
    spread = um.std.to_value(u.G)
    ramp = ramp_mask(lr.data.shape, model)
    quiet = np.abs(um.data) < 50
    ratios = [
        np.median(a[ramp & quiet]) / np.median(a[~ramp & quiet]) for a in (texture, s.std(axis=0), spread)
    ]
    error = np.abs(np.asarray(truth.data, dtype=float) - um.data)
    cover = [np.mean(error[m] <= k * spread[m]) for k in (1, 2) for m in (ramp, ~ramp)]
    return (*ratios, *cover)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frame", help="an HMI full-disk FITS file (not the held-out frame)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--sampler", help="a sampler other than the model's")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=len(OFFSETS), choices=range(1, len(OFFSETS) + 1))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    hmi = sunpy.map.Map(args.frame)
    if HELD_OUT in hmi.date.isot:
        parser.error(f"{args.frame} is the held-out {HELD_OUT} frame: nothing is measured on it")
    model = load_model(args.model, device="cpu")
    if args.sampler:
        model = model.configure_sampler(sampler=args.sampler)
    cy, cx = (n // 2 for n in hmi.data.shape)
    print(f"{hmi.date.isot}, {args.model} ({model.sampler}), {args.samples} samples, seed {args.seed}")
    print(
        "| box (x, y) | tiles | texture, ramp / elsewhere | samples' spread | calibrated std "
        "| +-1 std: ramp | elsewhere | +-2 std: ramp | elsewhere |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for dy, dx in OFFSETS[: args.boxes]:
        y, x = cy + dy, cx + dx
        truth = hmi.submap([x - HALF, y - HALF] * u.pix, top_right=[x + HALF - 1, y + HALF - 1] * u.pix)
        lr = degrade(truth)
        rows.append(measure(truth, lr, model, args.samples, args.seed))
        tiles = len(plan_tiles(lr.data.shape, model.tile_size, 2 * model.halo + 8))
        print(f"| {x}, {y} | {tiles} | " + " | ".join(f"{v:.3f}" for v in rows[-1]) + " |", flush=True)
    print("| mean | | " + " | ".join(f"{v:.3f}" for v in np.mean(rows, axis=0)) + " |")


if __name__ == "__main__":
    main()
