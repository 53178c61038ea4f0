"""
The paper's Table-1 protocol on held-out real HMI data: a benchmark script, not a test.

Cuts AR-centred crops from a full-disk HMI file that training did not see (by default the
2016-07-07 frame held out by the ``cpu`` config), degrades them 4x4, and scores every model with
`sunpy_superres.evaluation.evaluate`. Run from the repository root::

    python benchmarks/evaluate_heldout.py --model runs/cpu-ldm-res/model --crop 256 --regions 4

``--model`` may be given several times (directories, Hub references or registry names); "nearest"
and "bicubic" are always included. A stochastic model with ``--samples`` above 1 gets a row per
sample and a row for the mean of its samples with the coverage of its uncertainty, and a table of
`sunpy_superres.evaluation.uncertainty_calibration` (coverage per bin of the true ``|B|``). A
stochastic model is also scored with the paper's 1000-step DDPM sampler when ``--ddpm`` is given.
``--noise-level`` asks noise-conditioned models for a quiet-Sun noise level; without it they make
the noise of HMI's data at the frame's time and each crop's place
(`sunpy_superres.calibration.hmi_noise_level`).
``--hmi`` scores another frame: a training frame, for checks that are not the held-out report (given
several times, their crops are pooled); ``--radius LO HI`` seeks the regions in that ring of the
disk only (near the limb, say), leaving out crops that reach off the disk.
"""

import argparse
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map

from sunpy_superres.calibration import disk_radius
from sunpy_superres.evaluation import evaluate, sample_spread
from sunpy_superres.metrics import regions
from sunpy_superres.models import load_model

#: The frame held out from every shipped model's training, tuning and calibration.
HELD_OUT = "../shared/data/hmi/hmi.M_720s.20160707_010000_TAI.magnetogram.fits"


def strongest_regions(smap, size, count):
    """Centres of the ``count`` most intense regions, masking each found region before the next."""
    centres = []
    work = sunpy.map.Map(smap.data.copy(), smap.meta)
    for _ in range(count):
        centre = regions.most_intense_region(work, size)
        centres.append(centre)
        x, y = (int(round(float(v))) for v in work.wcs.world_to_pixel(centre))
        work.data[max(0, y - size) : y + size, max(0, x - size) : x + size] = np.nan
    return centres


def heldout_crops(path, size, count, radius=None):
    """
    The full-disk map of ``path`` and its ``count`` AR-centred crops of ``size`` x ``size`` pixels.

    With ``radius`` (``(lo, hi)`` in solar radii) the regions are sought between those distances from
    disk centre only, and a crop that reaches off the disk is left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hmi = sunpy.map.Map(path)
    search = hmi
    if radius is not None:
        r = disk_radius(hmi)
        search = sunpy.map.Map(np.where((r >= radius[0]) & (r <= radius[1]), hmi.data, np.nan), hmi.meta)
    crops = [regions.region_crop(hmi, c, size) for c in strongest_regions(search, size, count)]
    if radius is not None:
        crops = [c for c in crops if np.isfinite(c.data).all()]
    return hmi, crops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--hmi",
        action="append",
        default=[],
        help="full-disk HMI file (repeatable: the crops are pooled; default: the held-out 2016-07-07 frame)",
    )
    parser.add_argument("--model", action="append", default=[], help="model to score (repeatable)")
    parser.add_argument("--crop", type=int, default=256, help="HR crop side (LR = crop / 4)")
    parser.add_argument("--regions", type=int, default=4, help="number of AR-centred crops (per file)")
    parser.add_argument(
        "--radius",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="seek the regions between these distances from disk centre (solar radii), e.g. 0.88 0.95 near the limb",
    )
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument(
        "--ddpm", action="store_true", help="also score stochastic models with 1000 DDPM steps"
    )
    parser.add_argument(
        "--ddpm-samples", type=int, default=None, help="samples for the DDPM rows (default: --samples)"
    )
    parser.add_argument(
        "--consistency-off",
        action="store_true",
        help="also score stochastic models without the consistency step",
    )
    parser.add_argument(
        "--baseline-consistency",
        action="store_true",
        help="also score deterministic models with the consistency step (back-projection)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="arithmetic of the diffusion models' networks (auto: bfloat16 where the device has it natively)",
    )
    parser.add_argument(
        "--noise-level",
        type=float,
        default=None,
        help="quiet-Sun noise (G) asked of noise-conditioned models (default: HMI's own for the frame)",
    )
    parser.add_argument("--output", type=Path, default=None, help="write tables and figures here")
    args = parser.parse_args()

    crops, dates = [], []
    for path in args.hmi or [HELD_OUT]:
        hmi, found = heldout_crops(path, args.crop, args.regions, args.radius)
        crops += found
        dates.append(hmi.date.isot)
    where = "" if args.radius is None else f", centred {args.radius[0]:g}-{args.radius[1]:g} solar radii out"
    print(f"{len(crops)} crops of {args.crop}x{args.crop} from {', '.join(dates)}{where}")

    rows, calibrations, spreads, designs = [], [], [], {}
    models = [(spec, load_model(spec, device="cpu")) for spec in ["nearest", "bicubic", *args.model]]
    models = [
        (spec, m.configure_runtime(precision=args.precision) if m.stochastic else m) for spec, m in models
    ]
    names = [m.name for _, m in models]
    for spec, model in models:
        ddpm_samples = args.ddpm_samples or args.samples
        # Two models of one name (a default and its distilled student, say) are told apart by revision.
        label = model.name if names.count(model.name) == 1 else f"{model.name} [{model.revision}]"
        settings = [(model, {}, label)]
        start = getattr(model, "start_timestep", 999)
        if model.stochastic and start != 999:
            # The same sampler over the whole chain, to show what the later start does.
            settings.append((model.configure_sampler(start_timestep=999), {}, f"{label} (from t=999)"))
        if not model.stochastic and args.baseline_consistency and spec != "nearest":  # nearest already is
            settings.append((model, {"consistency": True}, f"{label} + back-projection"))
        if model.stochastic and args.consistency_off:
            settings.append((model, {"consistency": False}, f"{label} (consistency off)"))
        if model.stochastic and args.ddpm:
            ddpm = model.configure_sampler(sampler="ddpm", steps=1000)
            settings.append(
                (
                    model,
                    {"sampler": "ddpm", "steps": 1000, "samples": ddpm_samples},
                    f"{label} (DDPM, {ddpm.network_evaluations} steps from t={start})",
                )
            )
            if start != 999:
                settings.append(
                    (
                        model.configure_sampler(start_timestep=999),
                        {"sampler": "ddpm", "steps": 1000, "samples": ddpm_samples},
                        f"{label} (DDPM 1000 from t=999, the paper's chain)",
                    )
                )
        for variant, kwargs, label in settings:
            t0 = time.perf_counter()
            kwargs = {"samples": args.samples, **kwargs}
            if args.noise_level is not None and getattr(variant, "noise_level", None) is not None:
                kwargs["noise_level"] = args.noise_level * u.G
            result = evaluate([variant], crops, crop=None, seed=0, **kwargs)
            seconds = time.perf_counter() - t0
            for row in result.summary:
                # A stochastic model has a row per sample and one for the mean of its samples.
                suffix = row["model"][len(variant.name) :]
                rows.append((label + suffix, row, seconds))
            for table in result.calibration.values():
                calibrations.append((label, table))
            if result.calibration:  # several samples of each crop
                spreads.append((label, sample_spread(result)))
            for design in result.summary.meta["sample_designs"].values():  # one model per call
                designs[label] = design
            if args.output:
                result.write(
                    args.output / "".join(c if c.isalnum() or c in "-+." else "_" for c in label),
                    overwrite=True,
                )
    metrics = [
        "psnr",
        "ssim",
        "flux_error",
        "flux_bias",
        "ar_area_error",
        "spectral_error",
        "small_scale",
        "noise_ratio",
        "cancel_ratio",
        "coverage_1sd",
        "coverage_2sd",
    ]
    print("| model | n | " + " | ".join(metrics) + " | seconds |")
    print("|---|---|" + "---|" * len(metrics) + "---|")
    for label, row, seconds in rows:
        cells = [
            f"{row[m + '_mean']:.3g} ± {row[m + '_std']:.2g}"
            if m + "_mean" in row.colnames and np.isfinite(row[m + "_mean"])
            else ""
            for m in metrics
        ]
        print(f"| {label} | {row['n']} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    if designs:
        # "auto" draws each model's samples as its uncertainty calibration was fitted: say how.
        print("\nSamples drawn as: " + "; ".join(f"{label}: {d}" for label, d in designs.items()))
        if len(set(designs.values())) > 1:
            print("(not alike: their scores differ by the design too)")
    for label, table in calibrations:
        print(
            f"\nCalibration of the uncertainty of {label} ({args.samples} samples), pixels of all crops pooled, "
            "bins of the true |B|:"
        )
        print("| " + " | ".join(table.colnames) + " |")
        print("|" + "---|" * len(table.colnames))
        for r in table:
            print(
                "| "
                + " | ".join(
                    f"{r[c]:.3g}" if isinstance(r[c], float | np.floating) else str(r[c])
                    for c in table.colnames
                )
                + " |"
            )
    for label, table in spreads:
        r = table[0]
        print(
            f"\nUnsigned flux of each crop over the {r['samples']} samples of {label} (sample_spread): "
            f"error of their mean {r['error_rms']:.3g} % rms, their spread {r['spread_rms']:.3g} % rms "
            f"(the error {r['error_over_spread']:.3g} times the spread); the truth within 2 of their "
            f"standard deviations in {r['within_2sd'] * r['images']:.0f} of {r['images']} crops"
        )


if __name__ == "__main__":
    main()
