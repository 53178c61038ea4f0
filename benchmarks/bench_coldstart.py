"""
Cold start: seconds from a fresh interpreter to a loaded model, beside ``import sunpy.map``.

The issue-18 check is ``python -c "from sunpy_superres.models import load_model; load_model('default')"``
against ``python -c "import sunpy.map"``. Each command runs in a new interpreter ``--repeats``
times, the commands taking turns so that a busy machine slows all of them alike; the table gives
the median and its ratio to ``import sunpy.map``. The other rows say where the time goes: the
package alone, torch alone (the floor of any model load: the networks, their loading and the
default's samplers are the package's own), torch with diffusers' DPM-Solver (what a model load
and its first sample imported before), and a whole first call (Map read, model load, one sample of
the default, its 4-step student, on the shipped 128x128 MDI cut-out). Run from the repository root::

    python benchmarks/bench_coldstart.py --repeats 5
"""

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import sunpy.map": "import sunpy.map",
    "import sunpy_superres": "import sunpy_superres",
    "import torch": "import torch",
    "import torch + diffusers' DPM-Solver (no longer needed)": (
        "import torch, diffusers.schedulers.scheduling_dpmsolver_multistep"
    ),
    "load_model('default')": "from sunpy_superres.models import load_model; load_model('default')",
    "first call (Map, model, one default sample)": (
        "import sunpy.map; from sunpy_superres import superresolve; "
        "from sunpy_superres.data import MDI_AR_CUTOUT; "
        "superresolve(sunpy.map.Map(MDI_AR_CUTOUT), seed=0, progress=False)"
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, code in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["import sunpy.map"])
    print(f"{args.repeats} fresh interpreters each, commands taking turns; median seconds\n")
    print("| command | seconds | / import sunpy.map |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
