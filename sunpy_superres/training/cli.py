"""
``sunpy-superres-train [finetune] CONFIG``: train or fine-tune a model from a TOML config (a file or a
shipped name).
"""

import argparse
import sys

from .config import load_config, shipped_configs

__all__ = ["main"]


def main(argv=None):
    """
    Entry point of ``sunpy-superres-train``.

    ``sunpy-superres-train CONFIG`` runs the config as it is; ``sunpy-superres-train finetune CONFIG``
    also requires it to fine-tune (a ``[finetune] base_model``, or ``--base-model``), so a config
    without one is refused rather than silently trained from scratch.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # An optional leading sub-command keeps the original `sunpy-superres-train CONFIG` form working.
    finetune = bool(argv) and argv[0] == "finetune"
    if finetune:
        argv = argv[1:]
    prog = "sunpy-superres-train finetune" if finetune else "sunpy-superres-train"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fine-tune a trained model on MDI/HMI pairs (Ramunno et al. 2025, section 7): LoRA "
            "and the U-Net mid block of a diffusion model, all weights of a CNN. "
            if finetune
            else "Train a sunpy-superres model (autoencoder, diffusion variant, Enhance or Progressive "
            "CNN); `sunpy-superres-train finetune CONFIG` fine-tunes one on MDI/HMI pairs. "
        )
        + "Resumes from the newest checkpoint in the output directory; a run at a constant learning rate "
        "continues past its end when --max-steps (or the config's max_steps) is raised. Run several "
        "processes with `torchrun "
        "--nproc_per_node=N -m sunpy_superres.training.cli [finetune] CONFIG` or `accelerate launch`.",
    )
    parser.add_argument(
        "config", help=f"TOML config file, or a shipped config: {', '.join(shipped_configs())}"
    )
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--data-dir", help="override [data] data_dir (full-disk HMI FITS files)")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    if finetune:
        parser.add_argument(
            "--base-model",
            help="override [finetune] base_model (a trained model directory or a pinned hf:// reference)",
        )
        parser.add_argument(
            "--pairs-dir",
            help="real MDI/HMI pairs in this directory: sets [finetune] pairs = 'directory' and pairs_dir",
        )
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
    if finetune:
        if args.base_model:
            cfg.finetune.base_model = args.base_model
        if args.pairs_dir:
            cfg.finetune.pairs, cfg.finetune.pairs_dir = "directory", args.pairs_dir
        if not cfg.finetune.enabled:
            parser.error(f"config {args.config!r} has no [finetune] base_model; set it or pass --base-model")
    from .loop import train

    final = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(f"model written to {final}")
    # A LoRA fine-tune also writes its adapter alone.
    if cfg.finetune.enabled and (final.parent / "adapter").is_dir():
        print(f"adapter written to {final.parent / 'adapter'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
