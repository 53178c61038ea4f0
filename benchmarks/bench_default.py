"""
Seconds per ``superresolve`` call of a 256x256 MDI map (1024x1024 out), default model beside the others.

The issue-13 speed check: the whole public call (validation, calibration, tiling, sampling,
back-projection, header), one sample, on the current device, each model timed best of
``--repeats`` after a warm-up call, all in one run so that the ratios are fair on a shared machine.
Run from the repository root::

    python benchmarks/bench_default.py --model default --model enhance --model progressive --model bicubic

``--model`` takes registry names, model directories (e.g. an earlier default checked out of git
history) or Hub references, optionally ``:SAMPLER:STEPS`` (``default:distilled:4``) and
``@PRECISION`` (``default@bf16``: the networks under bfloat16 autocast; as in
``bench_archive.py``). ``--samples N`` also times ``samples=N`` of each diffusion model (its
calibrated sampling design, ``batch_size="auto"``) against its one sample: the issue-18 check.
The "passes" columns count what a call runs through a diffusion model's regression and denoiser
(``1 + 4`` for the default's one sample; ``8 + 40`` for ten in its calibrated design, a regression
pass for each of the 8 flips and polarities the samples are drawn under and 4 steps for each): on
a CPU, where a larger batch runs no faster, each pass costs its time, so these bound the ratio.
"""

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
import torch

from sunpy_superres import superresolve

sys.path.insert(0, str(Path(__file__).parent))
from bench_archive import load  # noqa: E402


def mdi_crop(path, size):
    """A ``size`` x ``size`` crop of an MDI full disk around its strongest field, as a map."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdi = sunpy.map.Map(path)
    data = np.nan_to_num(np.abs(mdi.data))
    y, x = np.unravel_index(np.argmax(data), data.shape)
    y0 = int(np.clip(y - size // 2, 0, data.shape[0] - size))
    x0 = int(np.clip(x - size // 2, 0, data.shape[1] - size))
    return mdi.submap([x0, y0] * u.pix, top_right=[x0 + size - 1, y0 + size - 1] * u.pix)


def best_time(smap, model, repeats, samples=1, warm_up=True):
    """Seconds of the best of ``repeats`` whole ``superresolve`` calls after a warm-up."""
    call = dict(model=model, seed=0, progress=False, samples=samples)
    if warm_up:
        superresolve(smap, **call)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        superresolve(smap, **call)
        times.append(time.perf_counter() - t0)
    return min(times)


@contextlib.contextmanager
def counted_passes(model):
    """
    Forward passes of a diffusion model's regression and denoiser while the block runs, as a list
    ``[regression, denoiser]`` (zeros for a model without them; a compiled denoiser's passes may go uncounted).
    """
    counts = [0, 0]
    nets = [getattr(model, "regression", None), getattr(model, "denoiser", None)]

    def counter(i):
        def hook(*_):
            counts[i] += 1

        return hook

    hooks = [net.register_forward_hook(counter(i)) for i, net in enumerate(nets) if net is not None]
    try:
        yield counts
    finally:
        for hook in hooks:
            hook.remove()


def passes_cell(counts, calls):
    """``"regression + denoiser"`` passes per call, or empty for a model with neither."""
    if not any(counts):
        return ""
    return f"{counts[0] // calls} + {counts[1] // calls}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--mdi", default="../shared/data/mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits"
    )
    parser.add_argument(
        "--model",
        action="append",
        help="NAME[:SAMPLER:STEPS][@PRECISION] to time (repeatable); default: default, enhance",
    )
    parser.add_argument("--size", type=int, default=256, help="input side in MDI pixels")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--samples", type=int, default=0, help="also time this many samples of each diffusion model (once)"
    )
    args = parser.parse_args()
    specs = args.model or ["default", "enhance"]
    smap = mdi_crop(args.mdi, args.size)
    print(
        f"input {smap.data.shape[1]}x{smap.data.shape[0]} MDI pixels of {smap.date.isot}, torch threads "
        f"{torch.get_num_threads()}, best of {args.repeats} after a warm-up"
    )
    rows = []
    for spec in specs:
        model = load(spec, "cpu")
        steps = getattr(model, "network_evaluations", "")
        with counted_passes(model) as counts:
            one = best_time(smap, model, args.repeats)
        passes = [passes_cell(counts, args.repeats + 1)]
        many = None
        if args.samples > 1 and model.stochastic:
            with counted_passes(model) as counts:
                many = best_time(smap, model, 1, samples=args.samples, warm_up=False)  # warm after one sample
            passes.append(passes_cell(counts, 1))
        rows.append((spec, model.name, model.revision, steps, one, many, passes))
    reference = next((r[4] for r in rows if r[1] == "enhance"), None)
    n = args.samples
    print(
        "| model | name | revision | network evaluations | seconds | / enhance | passes |"
        + (f" {n} samples, seconds | / one sample | passes |" if n > 1 else "")
    )
    print("|---|---|---|---|---|---|---|" + ("---|---|---|" if n > 1 else ""))
    for spec, name, revision, steps, seconds, many, passes in rows:
        ratio = f"{seconds / reference:.2f}" if reference else ""
        line = f"| {spec} | {name} | {revision} | {steps} | {seconds:.2f} | {ratio} | {passes[0]} |"
        if n > 1:
            line += f" {many:.1f} | {many / seconds:.1f} | {passes[1]} |" if many is not None else " | | |"
        print(line)


if __name__ == "__main__":
    main()
