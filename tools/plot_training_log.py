"""
Plot the loss curve of a training run (``output_dir/log.jsonl``) and print it as a short table.

Run from the repository root::

    python tools/plot_training_log.py runs/cpu-ldm-res-s2d --output loss.png

The loss of one step is noisy (one batch, one timestep per crop): the plot and the table show the
mean over windows of ``--window`` steps, with the wall-clock time the steps took.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("run", type=Path, help="training output directory (holds log.jsonl)")
    parser.add_argument("--window", type=int, default=250, help="steps per averaged point")
    parser.add_argument("--output", type=Path, help="PNG to write (not written when omitted)")
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines() if line.strip()]
    step = np.array([r["step"] for r in records])
    loss = np.array([r["loss"] for r in records])
    seconds = np.cumsum([r["seconds"] for r in records])
    edges = np.arange(0, len(step), args.window)
    print(
        f"{len(step)} steps, {seconds[-1] / 60:.1f} min of step time, {seconds[-1] / len(step):.2f} s per step"
    )
    print("| steps | mean loss | minutes |")
    print("|---|---|---|")
    for a in edges:
        b = min(a + args.window, len(step))
        print(f"| {step[a]}-{step[b - 1]} | {loss[a:b].mean():.4f} | {seconds[b - 1] / 60:.1f} |")
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(step, loss, lw=0.3, alpha=0.4, label="per step")
        centres = [step[a : a + args.window].mean() for a in edges]
        ax.plot(
            centres, [loss[a : a + args.window].mean() for a in edges], "o-", label=f"mean of {args.window}"
        )
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.set_title(args.run.name)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.output, dpi=100)
        print(f"written {args.output}")


if __name__ == "__main__":
    main()
