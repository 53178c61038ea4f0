"""
Where a full disk's time goes: torch's profiler for one sample, Python's for several.

A benchmark, not a test. It runs ``superresolve`` with the model (default: the embedded default) on
the real MDI full disk of ``../shared/data`` (else a synthetic disk, as ``bench_fulldisk.py``; or
``--input``), times one sample and ``--samples`` after a warm-up call, then prints the operators
that took the most device time (CUDA) or CPU time (torch's profiler, one sample) and the Python
functions that took the most time of their own (cProfile, ``--samples``): the network against the
work around it (noise draws, copies, blending, back-projection, statistics). Run from the
repository root::

    python benchmarks/profile_fulldisk.py --device cuda --samples 10
    python benchmarks/profile_fulldisk.py --device cpu --input sunpy_superres/data/mdi_20101015_ar_cutout.fits

``benchmarks/gpu_check.sh`` runs the first (its ``profile`` step).
"""

import argparse
import cProfile
import io
import pstats
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from sunpy_superres import superresolve
from sunpy_superres.io import read_map
from sunpy_superres.models import load_model
from sunpy_superres.models.base import resolve_device

sys.path.insert(0, str(Path(__file__).parent))
from bench_fulldisk import MDI_FULL_DISK, synthetic_mdi  # noqa: E402


def timed(device, **kwargs):
    """Seconds of one ``superresolve`` call, the device's queue drained."""
    t0 = time.perf_counter()
    superresolve(**kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--input", help="FITS file (default: the shared MDI full disk, else synthetic)")
    parser.add_argument("--model", default="default", help="registry name, model directory or Hub reference")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--samples", type=int, default=10, help="samples of the Python profile")
    parser.add_argument("--rows", type=int, default=20, help="rows of each table")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    device = resolve_device(args.device)
    if args.input:
        smap = read_map(args.input)
    else:
        smap = read_map(MDI_FULL_DISK) if MDI_FULL_DISK.is_file() else synthetic_mdi()
    model = load_model(args.model, device=device)
    kw = dict(smap=smap, model=model, precision=args.precision, progress=False, seed=0)
    timed(device, **kw)  # warm-up: kernel selection, the first allocations
    one, several = timed(device, **kw), timed(device, samples=args.samples, **kw)
    ny, nx = smap.data.shape
    print(
        f"{model.name} on {device} ({args.precision}), {ny}x{nx} in: 1 sample {one:.2f} s, "
        f"{args.samples} samples {several:.2f} s"
    )

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        timed(device, **kw)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"\ntorch's profiler, one sample, by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))

    python = cProfile.Profile()
    python.enable()
    timed(device, samples=args.samples, **kw)
    python.disable()
    text = io.StringIO()
    pstats.Stats(python, stream=text).sort_stats("tottime").print_stats(args.rows)
    print(f"Python's profiler, {args.samples} samples, by own time:")
    print(text.getvalue())


if __name__ == "__main__":
    main()
