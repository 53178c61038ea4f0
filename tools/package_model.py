"""
Package a trained model directory for shipping: float16 weights, chosen sampler settings, a revision.

Writes a new model directory (it must not exist) with the networks stored in float16 safetensors
(they load back as float32 on a CPU, bfloat16 autocast on a GPU), the inference settings given, the
training record (``training_config.json``) and any ``MODEL_CARD.md`` copied, and a fresh manifest
of sha256 checksums. An uncertainty calibration is not carried over: fit it on the packaged model
(``tools/calibrate_uncertainty.py --write``), since float16 weights change the samples slightly.
Run from the repository root::

    python tools/package_model.py runs/cpu-ldm-res-s2d/model /tmp/ldm-res --steps 12 --revision NAME
"""

import argparse
import shutil
from pathlib import Path

from sunpy_superres.models import load_model
from sunpy_superres.models.manifest import rewrite_manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, help="sampler steps (diffusion models)")
    parser.add_argument("--sampler", help="sampler (diffusion models)")
    parser.add_argument("--start-timestep", type=int, help="first timestep (diffusion models)")
    parser.add_argument("--spacing", choices=("linear", "log-snr"), help="step spacing (DPM-Solver samplers)")
    parser.add_argument(
        "--noise-level", type=float, help="target quiet-Sun noise in G (noise-conditioned models)"
    )
    parser.add_argument("--revision", help="revision recorded in the manifest and output headers")
    args = parser.parse_args()
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; choose a new directory")
    # The network the directory stores (its --write goes there), not a default_sampler's student.
    model = load_model(args.model, device="cpu", stored=True)
    if model.stochastic:
        model = model.configure_sampler(
            steps=args.steps,
            sampler=args.sampler,
            start_timestep=args.start_timestep,
            spacing=args.spacing,
            noise_level=args.noise_level,
        )
        model.uncertainty_calibration = None
        model.denoiser.half()
        if model.regression is not None:
            model.regression.half()  # a shipped regression is fp16 already: stored as it came
    else:
        model.network.half()
    if args.revision:
        model.revision = args.revision
    model.save_pretrained(args.output)
    for name in ("training_config.json", "MODEL_CARD.md"):
        if (args.model / name).is_file():
            shutil.copy2(args.model / name, args.output / name)
    rewrite_manifest(args.output)
    print(
        f"written {args.output}: "
        + ", ".join(
            f"{p.relative_to(args.output)} {p.stat().st_size / 1e6:.2f} MB"
            for p in sorted(args.output.rglob("*.safetensors"))
        )
    )


if __name__ == "__main__":
    main()
