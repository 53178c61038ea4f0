"""
Seconds, page faults and peak memory of ``superresolve`` calls with freed memory kept for reuse or not.

`sunpy_superres.memory.keep_freed_memory` lets glibc keep the pages a network frees for the next
layer and tile, instead of giving them back to the system and faulting in fresh ones. Three
settings: not kept (``SUNPY_SUPERRES_KEEP_FREED_MEMORY=0``), kept during each call (what
``superresolve`` does by itself), and kept across the calls (the loop of calls inside one
``with keep_freed_memory():``, as a script over many maps may do). Each (model, setting) is timed in
a process of its own (peak memory is a per-process high-water mark), the settings in turn, best of
``--repeats`` calls after a warm-up, so that the ratios are fair on a shared machine. Run from the
repository root::

    python benchmarks/bench_memory.py --model default --model default:distilled:4 --model enhance
    python benchmarks/bench_memory.py --model default --size 1024 --repeats 1   # the full MDI disk

``--model`` takes what ``bench_default.py`` takes. Needs Linux with glibc (elsewhere the settings
are the same).
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from sunpy_superres.memory import KEEP_FREED_MEMORY_ENV, keep_freed_memory

MDI = "../shared/data/mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits"
SETTINGS = ("not kept", "each call", "across calls")


def child(spec, mdi, size, repeats, across):
    """Time one model in this process; print seconds, faults per call and peak memory as JSON."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_archive import load
    from bench_default import best_time, mdi_crop

    smap, model = mdi_crop(mdi, size), load(spec, "cpu")
    with keep_freed_memory() if across else contextlib.nullcontext():
        best_time(smap, model, 1, warm_up=False)  # the warm-up call, outside the count of faults
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds = best_time(smap, model, repeats, warm_up=False)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "faults": faults, "peak": peak}))


def measure(spec, mdi, size, repeats, setting):
    env = dict(os.environ, **{KEEP_FREED_MEMORY_ENV: "0" if setting == "not kept" else "1"})
    cmd = [sys.executable, __file__, "--child", "--model", spec, "--mdi", mdi, "--size", str(size)]
    cmd += ["--repeats", str(repeats)] + (["--across"] if setting == "across calls" else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{spec}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--mdi", default=MDI)
    parser.add_argument("--model", action="append", help="NAME[:SAMPLER:STEPS][@PRECISION] (repeatable)")
    parser.add_argument("--size", type=int, default=256, help="input side in MDI pixels (1024: full disk)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the settings, in turn")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--across", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    specs = args.model or ["default", "enhance"]
    if args.child:
        return child(specs[0], args.mdi, args.size, args.repeats, args.across)
    print(
        f"input {args.size}x{args.size} MDI pixels, best of {args.repeats} after a warm-up, {args.rounds} rounds"
    )
    print("| model | freed memory | seconds | / not kept | page faults a call | peak GiB |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        runs = {setting: [] for setting in SETTINGS}
        for r in range(args.rounds):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                runs[setting].append(measure(spec, args.mdi, args.size, args.repeats, setting))
        best = {k: min(v, key=lambda m: m["seconds"]) for k, v in runs.items()}
        base = best["not kept"]["seconds"]
        for setting, m in best.items():
            print(
                f"| {spec} | {setting} | {m['seconds']:.2f} | {m['seconds'] / base:.2f} | "
                f"{m['faults']:,.0f} | {m['peak'] / 2**30:.2f} |"
            )


if __name__ == "__main__":
    main()
