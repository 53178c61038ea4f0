"""
The paper's Table 1 for all eight models, on held-out HMI crops, next to the paper's own values.

The four diffusion frameworks of Ramunno et al. (2025, A&A 698, A140), the two CNNs and the two
interpolations, scored with `sunpy_superres.evaluation.evaluate` on the AR-centred crops of the
held-out 2016-07-07 frame (``evaluate_heldout.py``'s crops: training never saw that frame). A
stochastic model gets a row per sample ("one sample": mean and spread over all its samples, as the
paper's Table 1) and a row for the mean of its samples with the coverage of ``mean +- 2 std``.
``seconds`` is the wall time of one output (one sample of one crop, scoring included) on this
machine. The diffusion models run in float32 unless ``--precision`` says otherwise, so that the
table comes out the same on any CPU (bfloat16, ``"auto"`` on a CPU that has it, moves the last
digits). LPIPS and FID columns are filled when their pretrained feature weights are given (see
`sunpy_superres.metrics.image`), blank otherwise. Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/paper_table1.py --samples 8 --output docs/paper

``--model NAME=SOURCE`` scores ``SOURCE`` (a model directory or pinned Hub reference) under ``NAME``,
e.g. a model still in training; a model without weights gets an empty row that says so. With
``--output`` it writes ``table1.csv`` (the table the docs page "Reproducing the paper" includes),
the summary and per-output records, and the box plots, Fourier and power-spectrum figures.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from sunpy_superres.evaluation import PAPER_TABLE_1, Evaluation, evaluate, mean_name
from sunpy_superres.io import atomic_output
from sunpy_superres.models import load_model

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_heldout import heldout_crops  # noqa: E402  (a sibling script, not a package)

#: The paper's eight rows, in its order: diffusion with and without residuals, latent then pixel
#: space, the CNNs, and the two interpolations it compares against in the text.
MODELS = ("ldm-res", "ldm", "ddpm-res", "ddpm", "enhance", "progressive", "bicubic", "nearest")
#: Columns of table1.csv: (metric of the summary, header, digits).
COLUMNS = (
    ("psnr", "PSNR [dB]", 3),
    ("ssim", "SSIM", 3),
    ("lpips", "LPIPS", 2),
    ("fid", "FID", 2),
    ("flux_error", "flux error [%]", 3),
    ("ar_area_error", "AR area error [%]", 3),
    ("spectral_error", "spectral error", 2),
    ("small_scale", 'power below 2"', 2),
    ("coverage_2sd", "+-2 std coverage", 3),
)


def _cell(value, spread, digits):
    if value is None or not np.isfinite(value):
        return ""
    if spread is None or not np.isfinite(spread):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {spread:.2g}"


def table1(evaluation, seconds, samples, missing=None):
    """
    The rows of Table 1: per model (and per mean of samples) the metrics and the paper's values.

    Parameters
    ----------
    evaluation : `~sunpy_superres.evaluation.Evaluation`
        All models scored on the same crops.
    seconds : dict
        Wall seconds per output, by model name.
    samples : int
        Samples of each stochastic model (their means are rows ``mean_name(name, samples)``).
    missing : dict, optional
        Model name -> why it has no row (no weights).

    Returns
    -------
    `~astropy.table.Table`
        String cells: ``model``, ``n``, one column per metric, ``seconds``, and
        ``paper <metric>`` for the paper's PSNR, SSIM, LPIPS, FID, flux and AR-size errors.
    """
    summary = evaluation.summary
    missing = missing or {}
    rows = []
    names = [str(n) for n in summary["model"]]
    order = [m for m in MODELS if m in names or m in missing] + [
        n for n in names if n not in MODELS and n not in {mean_name(m, samples) for m in names}
    ]
    for name in order:
        mean = mean_name(name, samples)
        labels = [(name, "one sample"), (mean, "")] if mean in names else [(name, "")]
        for label, note in labels:
            row = {"model": label + (f" ({note})" if note else "")}
            if name in missing:
                row.update({"n": "", **{h: "" for _, h, _ in COLUMNS}, "seconds": missing[name]})
            else:
                r = summary[names.index(label)]
                row["n"] = str(int(r["n"]))
                for metric, header, digits in COLUMNS:
                    # FID is one number per model (a distance between sets), the others mean and std.
                    key, spread_key = (
                        ("fid", None) if metric == "fid" else (metric + "_mean", metric + "_std")
                    )
                    value = float(r[key]) if key in r.colnames else None
                    spread = float(r[spread_key]) if spread_key in r.colnames else None
                    row[header] = _cell(value, spread, digits)
                row["seconds"] = f"{seconds[name]:.2g}"
            paper = PAPER_TABLE_1.get(name, {}) if label == name else {}
            for metric in ("psnr", "ssim", "lpips", "fid", "flux_error", "ar_area_error"):
                mean_std = paper.get(metric)
                row[f"paper {metric}"] = _cell(*mean_std, 3) if mean_std else ""
            rows.append(row)
    return Table(rows=rows, names=list(rows[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--hmi", default="../shared/data/hmi/hmi.M_720s.20160707_010000_TAI.magnetogram.fits")
    parser.add_argument("--crop", type=int, default=256, help="HR crop side (LR = crop / 4)")
    parser.add_argument("--regions", type=int, default=4, help="number of AR-centred crops")
    parser.add_argument("--samples", type=int, default=8, help="samples of each stochastic model")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME[=SOURCE]",
        help="score SOURCE under NAME (repeatable); default: the eight registered models",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="fp32",
        help="arithmetic of the diffusion models' networks (default fp32: the table comes out the same "
        "on any CPU; auto is bfloat16 where the CPU has it natively)",
    )
    parser.add_argument("--lpips-weights", type=Path, default=None)
    parser.add_argument("--fid-weights", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write table1.csv, tables and figures here")
    args = parser.parse_args()

    sources = dict.fromkeys(MODELS)
    for spec in args.model:
        name, _, source = spec.partition("=")
        sources[name] = source or name
    hmi, crops = heldout_crops(args.hmi, args.crop, args.regions)
    print(f"{len(crops)} held-out crops of {args.crop}x{args.crop} from {hmi.date.isot}")

    models, missing = {}, {}
    for name, source in sources.items():
        try:
            models[name] = load_model(source or name, device="cpu")
        except ValueError as err:
            if "no trained weights" not in str(err):
                raise
            missing[name] = "no weights ship yet"
            continue
        if models[name].name != name:
            parser.error(
                f"{source!r} is a {models[name].name!r} model, not {name!r}; pass --model {models[name].name}={source}"
            )

    evaluations, seconds = [], {}
    for name, model in models.items():
        samples = args.samples if model.stochastic else 1
        t0 = time.perf_counter()
        evaluations.append(
            evaluate(
                [model],
                crops,
                crop=None,
                seed=0,
                samples=samples,
                precision=args.precision,
                lpips_weights=args.lpips_weights,
                fid_weights=args.fid_weights,
            )
        )
        seconds[name] = (time.perf_counter() - t0) / (len(crops) * samples)
        print(f"{name}: {seconds[name]:.2g} s per output", flush=True)
    evaluation = Evaluation.concatenate(evaluations)
    table = table1(evaluation, seconds, args.samples, missing)
    print("| " + " | ".join(table.colnames) + " |")
    print("|" + "---|" * len(table.colnames))
    for row in table:
        print("| " + " | ".join(str(v) for v in row) + " |")
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        evaluation.write(args.output, overwrite=True)
        with atomic_output(args.output / "table1.csv", overwrite=True) as tmp:
            table.meta = {}
            table.write(tmp, format="ascii.csv", overwrite=True)
        print(f"written {args.output}")
    return table


if __name__ == "__main__":
    main()
