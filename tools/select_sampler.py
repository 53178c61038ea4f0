"""
Choose a diffusion model's sampler steps on the calibration crops, never on the held-out frame.

Scores ``--steps`` candidates of the model's sampler with `sunpy_superres.evaluation.evaluate` on
the strongest crops of full-disk training frames (``--hmi``, native HMI pixels; by default the
2011-12-17 frame) and, with ``--patches``, crops of active-region patches (see
``tools/calibrate_uncertainty.py``: their remapping smooths the finest scales, so native crops judge
the spectrum better), one or more samples each, and prints the table: fewer steps are cheaper, and
this says what they cost in spectrum, flux and PSNR. Run from the repository root::

    python tools/select_sampler.py runs/cpu-ldm-res-s2d/model --samplers dpm-solver++:12 sde-dpm-solver++:12
"""

import argparse
import glob
import sys
import time
import warnings
from pathlib import Path

from sunpy_superres.evaluation import evaluate
from sunpy_superres.models import load_model

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_uncertainty import disk_crops, patch_crops  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model")
    parser.add_argument(
        "--hmi", nargs="*", default=["../shared/data/hmi/hmi.M_720s.20111217_060000_TAI.magnetogram.fits"]
    )
    parser.add_argument("--patches", default="")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["dpm-solver++:10", "dpm-solver++:20"],
        help="candidates as SAMPLER:STEPS or SAMPLER:STEPS:SPACING",
    )
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-crops", type=int, default=16)
    args = parser.parse_args()
    files = sorted(glob.glob(args.patches)) if args.patches else []
    if any("20160707" in f for f in [*files, *args.hmi]):
        raise SystemExit("the 2016-07-07 frame is held out: never select on it")
    crops = [
        c for f in args.hmi for c in disk_crops(f, args.crop, args.max_crops // max(1, len(args.hmi)), 0)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crops += [c for f in files for c in patch_crops(f, args.crop)][: args.max_crops]
    base = load_model(args.model, device="cpu", stored=True)  # the stored network, its samplers compared
    print(f"{len(crops)} crops of {args.crop}^2, {args.samples} samples, from t={base.start_timestep}")
    cols = ["psnr", "flux_error", "ar_area_error", "spectral_error", "small_scale"]
    print("| sampler | row | " + " | ".join(cols) + " | seconds |")
    print("|---|---|" + "---|" * len(cols) + "---|")
    for spec in args.samplers:
        name, steps, *spacing = spec.split(":")
        model = base.configure_sampler(
            sampler=name, steps=int(steps), spacing=spacing[0] if spacing else None
        )
        t0 = time.perf_counter()
        result = evaluate([model], crops, crop=None, samples=args.samples, seed=0)
        seconds = time.perf_counter() - t0
        for row in result.summary:
            cells = [f"{row[c + '_mean']:.3g}" for c in cols]
            print(f"| {spec} | {row['model']} | " + " | ".join(cells) + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
