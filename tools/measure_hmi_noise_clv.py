"""
Measure how HMI's quiet-Sun noise varies from disk centre to limb (`sunpy_superres.calibration.HMI_NOISE_CLV`).

HMI's noise rises towards the limb, where the Sun is darker and the line weaker. This tool tiles
full-disk HMI frames into boxes, measures each box's quiet-Sun noise with
`sunpy_superres.metrics.physics.quiet_noise_gauss` (the estimate `HMI_NOISE_LEVELS` and the noise
labels were made with), and prints, per ring of distance from disk centre (in solar radii), the
median over the ring's boxes divided by the frame's own level (the same estimate pooled over the
pixels within 0.9 solar radii), per frame and averaged over the frames. Only the training frames:
the held-out 2016-07-07 frame is refused. Run from the repository root::

    python tools/measure_hmi_noise_clv.py
"""

import argparse
import sys
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_uncertainty import frame_noise  # noqa: E402

from sunpy_superres.calibration import disk_radius  # noqa: E402
from sunpy_superres.metrics.physics import quiet_noise_gauss  # noqa: E402

FRAMES = [
    "../shared/data/hmi/hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
    "../shared/data/hmi/hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
]
HELD_OUT = "20160707"


def ring_ratios(path, box, edges):
    """Per ring of ``edges`` (solar radii): the median box noise over the frame's level, and the box count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hmi = sunpy.map.Map(path)
    data = hmi.data.astype(float)
    r = disk_radius(hmi)  # every pixel's distance from disk centre, solar radii
    level = frame_noise(hmi).to_value(u.G)  # as HMI_NOISE_LEVELS was measured
    ny, nx = data.shape
    radii, noise = [], []
    for y0 in range(0, ny - box + 1, box):
        for x0 in range(0, nx - box + 1, box):
            cut = (slice(y0, y0 + box), slice(x0, x0 + box))
            if not np.isfinite(data[cut]).all():  # boxes that reach off the disk
                continue
            radii.append(r[cut].mean())
            noise.append(quiet_noise_gauss(data[cut]))
    radii, noise = np.array(radii), np.array(noise)
    ratios, counts = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ring = (radii >= lo) & (radii < hi) & np.isfinite(noise)
        ratios.append(np.median(noise[ring]) / level if ring.any() else np.nan)
        counts.append(int(ring.sum()))
    return level, np.array(ratios), counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "frames", nargs="*", default=FRAMES, help="HMI full-disk FITS files (training frames)"
    )
    parser.add_argument("--box", type=int, default=256, help="box side in pixels")
    parser.add_argument("--ring", type=float, default=0.1, help="ring width in solar radii")
    args = parser.parse_args()
    if any(HELD_OUT in f for f in args.frames):
        parser.error("the 2016-07-07 frame is held out: nothing is measured on it")
    edges = np.round(np.arange(0, 1 + args.ring / 2, args.ring), 6)
    centres = (edges[:-1] + edges[1:]) / 2
    all_ratios = []
    for path in args.frames:
        level, ratios, counts = ring_ratios(path, args.box, edges)
        all_ratios.append(ratios)
        print(f"{path.rsplit('/', 1)[-1]}: level {level:.3f} G within 0.9 solar radii")
        for c, q, n in zip(centres, ratios, counts, strict=True):
            print(f"  r {c:.2f}: {q:.3f} ({n} boxes)")
    mean = np.nanmean(all_ratios, axis=0)
    keep = np.isfinite(mean)
    print("HMI_NOISE_CLV = (")
    print(f"    ({', '.join(f'{c:.2f}' for c in centres[keep])}),")
    print(f"    ({', '.join(f'{q:.3f}' for q in mean[keep])}),")
    print(")")


if __name__ == "__main__":
    main()
