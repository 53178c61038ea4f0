"""``sunpy-superres-train CONFIG``: train a model from a TOML config (a file or a shipped name)."""

import argparse
import sys

from .config import load_config, shipped_configs

__all__ = ["main"]


def main(argv=None):
    """
    Entry point of ``sunpy-superres-train``.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="sunpy-superres-train",
        description="Train a sunpy-superres model (autoencoder or diffusion variant). Resumes from the newest "
                    "checkpoint in the output directory. Run several processes with `torchrun "
                    "--nproc_per_node=N -m sunpy_superres.training.cli CONFIG` or `accelerate launch`.")
    parser.add_argument("config", help=f"TOML config file, or a shipped config: {', '.join(shipped_configs())}")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--data-dir", help="override [data] data_dir (full-disk HMI FITS files)")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    if args.max_steps is not None:
        cfg.max_steps = args.max_steps
    from .loop import train

    final = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(f"model written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
