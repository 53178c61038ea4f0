"""
Is the uncertainty larger below 2" than above? The paper's Fig. 12 check, on held-out real data.

Super-resolves AR-centred crops of a full-disk HMI file that training did not see (by default the
2016-07-07 frame held out by the shipped configs), degraded 4x4, with ``--samples`` samples of the
default model, and measures where the sample-to-sample variation lives: each sample is split at 2" with
the Butterworth filter of `sunpy_superres.metrics.spectra.butterworth_split` (the filter of
`sunpy_superres.UncertaintyMap.small_scale_uncertainty`), and the per-pixel standard deviation over the
samples of each part is averaged over the crop (in G). Also printed: the mean absolute value of the two
parts of the standard-deviation map itself, as ``UncertaintyMap.small_scale_uncertainty()`` /
``large_scale_uncertainty()`` return them (the low-pass part of a positive map is about its mean, so
this pair says how patchy the uncertainty is rather than at which scale the samples differ). Run from
the repository root::

    python benchmarks/uncertainty_scales.py --samples 10
"""

import argparse
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.evaluation import degrade
from sunpy_superres.metrics.spectra import butterworth_split

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_heldout import heldout_crops  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--hmi", default="../shared/data/hmi/hmi.M_720s.20160707_010000_TAI.magnetogram.fits")
    parser.add_argument("--model", default="default")
    parser.add_argument("--crop", type=int, default=256, help="HR crop side (LR = crop / 4)")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    hmi, crops = heldout_crops(args.hmi, args.crop, args.regions)
    print(f"{len(crops)} held-out crops of {args.crop}x{args.crop} from {hmi.date.isot}, "
          f"{args.samples} samples, model {args.model!r}")
    print("| crop | mean std (G) | std of samples below 2\" (G) | above 2\" (G) | below / above | "
          "std map split: mean abs below / above 2\" (G) | seconds |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for i, crop in enumerate(crops):
        t0 = time.perf_counter()
        um = superresolve(degrade(crop), model=args.model, samples=args.samples, seed=i, calibrate=False,
                          keep_samples=True, progress=False)
        parts = [butterworth_split(sunpy.map.Map(s, um.meta)) for s in um.samples]
        large = np.nanmean(np.std([lo.data for lo, _ in parts], axis=0, ddof=1))
        small = np.nanmean(np.std([hi.data for _, hi in parts], axis=0, ddof=1))
        ratios.append(small / large)
        map_small = np.nanmean(np.abs(um.small_scale_uncertainty().data))
        map_large = np.nanmean(np.abs(um.large_scale_uncertainty().data))
        print(f"| {i} | {np.nanmean(um.std.to_value(u.G)):.2f} | {small:.2f} | "
              f"{large:.2f} | {small / large:.2f} | {map_small:.2f} / {map_large:.2f} | "
              f"{time.perf_counter() - t0:.0f} |")
    print(f"| all | | | | {np.mean(ratios):.2f} ± {np.std(ratios):.2f} | | |")


if __name__ == "__main__":
    main()
