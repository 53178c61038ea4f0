"""
Speed of the diffusion variants and samplers on the current device (a benchmark, not a test).

For each model and sampler it prints seconds per network evaluation and seconds per 256x256 LR input
(1024x1024 output). Timing does not depend on the weights, so models without trained weights are
built from a training config's architecture with random weights; pass ``--model DIR`` to time trained
model directories instead. Run from the repository root::

    python benchmarks/bench_samplers.py                 # CPU config architecture, all four variants
    python benchmarks/bench_samplers.py --full          # also run the 1000-step DDPM chain in full

Without ``--full``, samplers with more than ``--max-measured`` steps are timed over a few steps and
extrapolated (marked "est."): the cost is linear in the number of evaluations, plus a fixed
encode/decode overhead that is measured.
"""

import argparse
import time

import numpy as np
import torch

from sunpy_superres.models import load_model
from sunpy_superres.models.autoencoder import build_autoencoder
from sunpy_superres.models.diffusion import ConditionalDenoiser, DiffusionSuperResolution
from sunpy_superres.training import load_config

SAMPLERS = [("dpm-solver++", 20), ("ddim", 50), ("ddpm", 1000)]


def models_from_config(name, device):
    cfg = load_config(name).model
    torch.manual_seed(0)
    ae = build_autoencoder(
        factor=cfg.autoencoder.factor,
        latent_channels=cfg.autoencoder.latent_channels,
        base_channels=cfg.autoencoder.base_channels,
        max_channels=cfg.autoencoder.max_channels,
        layers_per_block=cfg.autoencoder.layers_per_block,
        norm_num_groups=cfg.autoencoder.norm_num_groups,
    )
    out = []
    for space in ("latent", "pixel"):
        for residual in (True, False):
            ch = cfg.autoencoder.latent_channels if space == "latent" else 1
            den = ConditionalDenoiser(
                space=space,
                residual=residual,
                target_channels=ch,
                cond_channels=ch,
                block_out_channels=tuple(cfg.diffusion.block_out_channels),
                layers_per_block=cfg.diffusion.layers_per_block,
                attention_levels=tuple(cfg.diffusion.attention_levels),
                attention_head_dim=cfg.diffusion.attention_head_dim,
                norm_num_groups=cfg.diffusion.norm_num_groups,
            )
            out.append(DiffusionSuperResolution(den, ae if space == "latent" else None, device=device))
    return out


def timed(model, x, steps, scheduler):
    m = model.configure_sampler(sampler=scheduler, steps=steps)
    t0 = time.perf_counter()
    m.predict(x, seeds=[0])
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--config", default="cpu", help="training config whose architecture is timed")
    parser.add_argument(
        "--model", action="append", help="trained model directory or Hub reference (repeatable)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256, help="LR input side in pixels")
    parser.add_argument("--max-measured", type=int, default=50, help="longest chain timed in full")
    parser.add_argument("--full", action="store_true", help="time every chain in full")
    parser.add_argument("--variants", default="ldm-res,ldm,ddpm-res,ddpm")
    args = parser.parse_args()

    if args.model:
        models = [load_model(m, device=args.device) for m in args.model]
    else:
        wanted = args.variants.split(",")
        models = [m for m in models_from_config(args.config, args.device) if m.name in wanted]
    x = np.random.default_rng(0).normal(0, 0.05, (1, args.size, args.size)).astype(np.float32)
    print(
        f"device: {models[0].device}, torch threads: {torch.get_num_threads()}, input {args.size}x{args.size} "
        f"-> {4 * args.size}x{4 * args.size}"
    )
    print("| model | params | sampler | steps (NFE) | s / NFE | s / input |")
    print("|---|---|---|---|---|---|")
    for model in models:
        params = sum(p.numel() for p in model.denoiser.parameters())
        timed(model, x, 1, "ddim")  # warm-up (allocations, kernels)
        # Best of two repeats: other load on a shared machine only ever adds time.
        t1 = min(timed(model, x, 1, "ddim") for _ in range(2))
        t6 = min(timed(model, x, 6, "ddim") for _ in range(2))
        per_nfe = max(0.0, (t6 - t1) / 5)
        overhead = max(0.0, t1 - per_nfe)  # encode/decode and set-up, independent of the steps
        for scheduler, steps in SAMPLERS:
            if args.full or steps <= args.max_measured:
                total, mark = timed(model, x, steps, scheduler), ""
            else:
                total, mark = overhead + steps * per_nfe, " (est.)"
            print(
                f"| {model.name} | {params:,} | {scheduler} | {steps} | {per_nfe:.3f} | {total:.1f}{mark} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
