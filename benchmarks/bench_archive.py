"""
Speed and quality of models and samplers in one table, and what the whole MDI archive would take.

For each ``--model`` (a registry name, model directory or pinned Hub reference, optionally
``:SAMPLER:STEPS``, e.g. ``default:lcm:4``, and ``@PRECISION`` for a diffusion model's networks,
e.g. ``default@bf16``), measured in one run on this machine, each in a fresh process of its own:

* seconds per 256x256 MDI input (1024x1024 out, one sample, the whole ``superresolve`` call, best of
  ``--repeats`` after a warm-up), and per MDI full disk (1024x1024 -> 4096x4096): with
  ``--full-disk`` one real call, otherwise estimated (``est.``) as the full disk's tiles times the
  256x256 time plus the map-wide work (calibration, blending, back-projection) of a full disk;
* network evaluations (NFE) per tile, and the peak resident memory of the timed calls (with an
  estimated full disk, of the 256x256 calls and the map-wide work of a full disk);
* on the held-out 2016-07-07 crops of ``evaluate_heldout.py``: the unsigned-flux and spectral errors
  of one sample, and the coverage of ``mean +- 2 std`` of ``--samples`` samples (stochastic models).

Each diffusion model (but a distilled student loaded alone) also gets a row for the paper's
1000-step DDPM chain, extrapolated (``est.``) from the same call with 1 and 11 DDPM steps (the cost
of a step, times 999, added to the 1-step call; on a full disk, that less the model's own call,
for each tile); quality not scored: a thousand evaluations per sample. For the default, whose
sampler is its 4-step student, the chain is that of the network the student was distilled from. The
last lines extrapolate the MDI archive, about 80,000 full disks
(96-minute cadence, 1996-2011), over N workers of ``sunpy-superres batch``, each one such machine.
With ``--batch N`` the first model also runs through ``sunpy-superres batch`` for real
(`sunpy_superres.batch.superresolve_files`, a local cluster of one worker on this machine, N copies
of the MDI full disk, outputs written): its median seconds per disk on the worker, beside the
estimate, carry the archive line, so that what the cluster adds (a worker's threads, reading and
writing FITS) is measured rather than assumed; ``--batch-only`` prints that line alone (no table, no
held-out frame needed: ``benchmarks/gpu_check.sh``'s batch step). Run from the repository root::

    python benchmarks/bench_archive.py --model default --model enhance --model bicubic
    python benchmarks/bench_archive.py --model default --full-disk --batch 3
"""

import argparse
import concurrent.futures
import multiprocessing
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

#: MDI full-disk magnetograms 1996-2011 at 96-minute cadence, with gaps (about 15 per day).
MDI_ARCHIVE = 80_000
HERE = Path(__file__).parent
HMI_HELDOUT = "../shared/data/hmi/hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
MDI = "../shared/data/mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits"


def parse_spec(spec):
    """
    ``(name, sampler, steps, precision)`` of ``NAME[:SAMPLER:STEPS][@PRECISION]``, `None` where not given.

    NAME may be a pinned Hub reference, ``hf://owner/repo@<40-hex commit>``, whose ``://`` and
    ``@commit`` belong to the name.
    """
    scheme = "hf://" if spec.startswith("hf://") else ""
    spec = spec[len(scheme) :]
    head, at, tail = spec.rpartition("@")
    precision = None
    if at and not re.fullmatch(r"[0-9a-f]{40}(:.*)?", tail):
        spec, precision = head, tail
    name, *sampler = spec.split(":")
    steps = int(sampler[1]) if len(sampler) > 1 else None
    return scheme + name, sampler[0] if sampler else None, steps, precision or None


def load(spec, device):
    """The model of ``NAME[:SAMPLER:STEPS][@PRECISION]``, configured (``default:distilled:4@bf16``)."""
    from sunpy_superres.models import load_model

    name, sampler, steps, precision = parse_spec(spec)
    model = load_model(name, device=device)
    if sampler:
        model = model.configure_sampler(sampler=sampler, steps=steps)
    if precision:
        model = model.configure_runtime(precision=precision)
    return model


def peak_memory_mb():
    """This process's peak resident memory (VmHWM), MB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def chain_seconds(model, lr, repeats):
    """Seconds of the paper's 1000-step chain on ``lr`` (est.), or `None` for a student loaded alone."""
    from bench_default import best_time

    if getattr(model, "own_sampler", None) is not None and getattr(model, "teacher", None) is None:
        return None  # it runs only its own few steps; its teacher's chain is not here
    one, eleven = (best_time(lr, model.configure_sampler(sampler="ddpm", steps=n), repeats) for n in (1, 11))
    return one + 999 * (eleven - one) / 10


def measure(spec, args):
    """One model's row, measured in this (fresh) process."""
    import torch

    from sunpy_superres import superresolve
    from sunpy_superres.evaluation import evaluate
    from sunpy_superres.io import read_map
    from sunpy_superres.tiling import plan_tiles

    sys.path.insert(0, str(HERE))
    from bench_default import best_time, mdi_crop
    from evaluate_heldout import heldout_crops

    warnings.simplefilter("ignore")
    model = load(spec, args.device)
    call = dict(model=model, seed=0, progress=False)
    crop = mdi_crop(args.mdi, 256)
    per_input = best_time(crop, model, args.repeats)
    chain = chain_seconds(model, crop, args.repeats) if model.stochastic else None
    disk = read_map(args.mdi)
    tiles = len(plan_tiles(disk.data.shape, model.tile_size, 2 * model.halo + 8))
    if args.full_disk:
        t0 = time.perf_counter()
        superresolve(disk, **call)
        per_disk, estimated = time.perf_counter() - t0, False
    else:
        t0 = time.perf_counter()
        superresolve(disk, model="nearest", consistency=model.stochastic, progress=False)
        map_work = time.perf_counter() - t0
        per_disk, estimated = tiles * per_input + map_work, True
    peak = peak_memory_mb()  # of the timed calls, before the held-out frame is read
    nfe = getattr(model, "network_evaluations", None)
    if nfe is None:
        nfe = 0 if model.name in ("nearest", "bicubic") else 1
    _, crops = heldout_crops(args.hmi, args.crop, args.regions)
    samples = args.samples if model.stochastic else 1
    summary = evaluate([model], crops, crop=None, seed=0, samples=samples).summary
    one, mean = summary[0], summary[-1]
    return {
        "model": spec,
        "name": model.name,
        "revision": model.revision,
        "sampler": f"{model.sampler} ({model.steps})" if model.stochastic else "",
        "nfe": nfe,
        "per_input": per_input,
        "per_disk": per_disk,
        "estimated": estimated,
        "peak_mb": peak,
        "flux": one["flux_error_mean"],
        "spectral": one["spectral_error_mean"],
        "coverage": mean["coverage_2sd_mean"] if model.stochastic and samples > 1 else float("nan"),
        "stochastic": model.stochastic,
        # The paper's chain runs the network a student reached through its teacher was distilled from.
        "chain_revision": (getattr(model, "teacher", None) or model).revision,
        "chain_input": chain,
        # Each of the full disk's tiles takes the chain's extra steps.
        "chain_disk": None if chain is None else per_disk + tiles * (chain - per_input),
        "threads": torch.get_num_threads(),
        "device": str(model.device),
    }


def measure_batch(spec, args):
    """Seconds per full disk on the worker of ``superresolve_files`` over ``args.batch`` copies, and the wall."""
    import shutil
    import tempfile

    from sunpy_superres.batch import superresolve_files
    from sunpy_superres.options import Options

    name, sampler, steps, precision = parse_spec(spec)
    options = Options(
        model=name, sampler=sampler, steps=steps, precision=precision, device=args.device, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.batch):  # copies under other names: the manifest keys files by path
            shutil.copy(args.mdi, Path(tmp) / f"disk{i}.fits")
        t0 = time.perf_counter()
        table = superresolve_files(
            sorted(Path(tmp).glob("disk*.fits")),
            Path(tmp) / "out",
            n_workers=1,
            progress=False,
            options=options,
        )
        wall = time.perf_counter() - t0
    done = np.asarray(table["seconds"], float)[np.asarray(table["status"]) == "done"]
    if len(done) < args.batch:
        raise RuntimeError(
            f"batch: {args.batch - len(done)} of {args.batch} disks failed: {list(table['reason'])}"
        )
    return done, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--model", action="append", help="NAME[:SAMPLER:STEPS][@PRECISION] (repeatable); default: default"
    )
    parser.add_argument("--mdi", default=MDI, help="MDI full disk (also cropped for the 256x256 input)")
    parser.add_argument("--hmi", default=HMI_HELDOUT, help="held-out HMI frame for the quality columns")
    parser.add_argument("--crop", type=int, default=256, help="held-out crop side, HR pixels")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8, help="samples per crop of stochastic models")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-disk", action="store_true", help="time a real full-disk call per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--batch", type=int, default=0, metavar="N", help="also run the first model through batch on N disks"
    )
    parser.add_argument(
        "--batch-only",
        action="store_true",
        help="the batch line alone: no table, no held-out frame needed (benchmarks/gpu_check.sh)",
    )
    args = parser.parse_args()
    rows = []
    if not args.batch_only:
        context = multiprocessing.get_context("spawn")  # a fresh process per model: its own peak memory
        for spec in args.model or ["default"]:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                rows.append(pool.submit(measure, spec, args).result())
        print_table(rows, args)
    if args.batch:
        print_batch_line((args.model or ["default"])[0], rows[0] if rows else None, args)


def print_table(rows, args):
    """The models' table, then the archive extrapolated from each one's full-disk time."""
    first = rows[0]
    print(
        f"{first['device']}, {first['threads']} torch threads; 256x256 input best of {args.repeats} after a "
        f"warm-up; quality on {args.regions} held-out crops of {args.crop}x{args.crop} (2016-07-07), "
        f"{args.samples} samples; est. = extrapolated"
    )
    print(
        "| model | revision | sampler | NFE | s / 256x256 | s / full disk | peak MB | flux % | spectral | +-2 std |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")

    def cell(value, fmt, est=False):
        return "" if not np.isfinite(value) else format(value, fmt) + (" (est.)" if est else "")

    for r in rows:
        print(
            f"| {r['model']} | {r['revision']} | {r['sampler']} | {r['nfe']} | {r['per_input']:.2f} | "
            f"{cell(r['per_disk'], '.0f', r['estimated'])} | {cell(r['peak_mb'], '.0f')} | "
            f"{cell(r['flux'], '.2f')} | {cell(r['spectral'], '.2f')} | {cell(r['coverage'], '.3f')} |"
        )
        if r["chain_input"] is not None:
            print(
                f"| {r['model']}, the paper's chain | {r['chain_revision']} | ddpm (1000) | 1000 | "
                f"{r['chain_input']:.0f} (est.) | {r['chain_disk']:.0f} (est.) | | | | |"
            )
    print(f"\nThe MDI archive ({MDI_ARCHIVE:,} full disks, one sample each) through `sunpy-superres batch`:")
    for r in rows:
        days = ", ".join(
            f"{n} workers {MDI_ARCHIVE * r['per_disk'] / n / 86400:.1f} days" for n in args.workers
        )
        print(f"- {r['model']} on workers like this machine ({r['device']}): {days}")


def print_batch_line(spec, row, args):
    """The archive from ``spec``'s seconds per disk measured through batch (beside ``row``'s call, if any)."""
    done, wall = measure_batch(spec, args)
    days = ", ".join(
        f"{n} workers {MDI_ARCHIVE * np.median(done) / n / 86400:.1f} days" for n in args.workers
    )
    alone = ""
    if row is not None:
        alone = f", against {row['per_disk']:.1f} s{' (est.)' if row['estimated'] else ''} for the call alone"
    print(
        f"- {spec} measured through `sunpy-superres batch` ({len(done)} full disks on one local worker, "
        f"{wall:.0f} s in all with the cluster's start): {np.median(done):.1f} s a disk on the worker "
        f"(median; the first, with the model's warm-up, {done[0]:.1f} s){alone}: {days}"
    )


if __name__ == "__main__":
    main()
