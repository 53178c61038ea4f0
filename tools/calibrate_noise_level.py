"""
Measure what a noise-conditioned diffusion model's sampler makes of each conditioning label.

A noise-conditioned ``ldm-res`` takes the quiet-Sun noise level of its training crops as a label
(`sunpy_superres.models.diffusion.ConditionalDenoiser`). With a few-step sampler the output's
quiet-Sun noise is not exactly the label (DPM-Solver++ with 10 log-SNR steps adds about 0.5 G), so
this tool samples crops of the training frames (never the held-out 2016-07-07 frame) at a grid of
labels, measures each output's noise with `sunpy_superres.metrics.physics.quiet_noise_gauss` (the
same estimate the labels were made with), and with ``--write`` stores the map in the model's manifest
(``inference.noise_label_map``). ``superresolve(noise_level=...)`` is then the noise of the output.
Run from the repository root, on the packaged model (the map holds for its sampler settings)::

    python tools/calibrate_noise_level.py /tmp/ldm-res --write

It also prints each frame's own noise and the label it maps to.
"""

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_uncertainty import _measured_noise, disk_crops  # noqa: E402

from sunpy_superres import superresolve  # noqa: E402
from sunpy_superres.evaluation import degrade  # noqa: E402
from sunpy_superres.metrics.physics import quiet_noise_gauss  # noqa: E402
from sunpy_superres.models import load_model  # noqa: E402
from sunpy_superres.models.manifest import rewrite_manifest  # noqa: E402

FRAMES = [
    "../shared/data/hmi/hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
    "../shared/data/hmi/hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
]


def output_noise(model, crops, label, seed):
    """Median over crops of the quiet-Sun noise of one sample at conditioning ``label``."""
    raw = copy.copy(model)
    raw.noise_label_map, raw.noise_level = None, float(label)  # the label itself, not a mapped level
    raw.noise_level_asked = True  # kept for the HMI crops, which would otherwise take their HMI level
    values = []
    for i, crop in enumerate(crops):
        out = superresolve(degrade(crop), model=raw, seed=seed + i, calibrate=False, progress=False)
        values.append(quiet_noise_gauss(out.data))
    return float(np.median(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", help="packaged model directory (its manifest is updated with --write)")
    parser.add_argument("--hmi", nargs="*", default=FRAMES, help="training frames to crop (never 2016-07-07)")
    parser.add_argument("--crops", type=int, default=4, help="crops per frame (not the strongest: quiet Sun)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument(
        "--labels", default="2.0,2.5,3.0,3.5,4.0,4.5,5.0,6.0,7.0", help="conditioning labels to measure, G"
    )
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--write", action="store_true", help="store the map in the model's manifest")
    args = parser.parse_args()
    if any("20160707" in f for f in args.hmi):
        raise SystemExit("the 2016-07-07 frame is held out: never calibrate on it")
    # The network the directory stores (its --write goes there), not a default_sampler's student.
    model = load_model(args.model, device="cpu", stored=True)
    if getattr(model, "noise_level", None) is None:
        raise SystemExit(f"{args.model} is not conditioned on a noise level")
    crops = [c for i, f in enumerate(args.hmi) for c in disk_crops(f, args.crop, 0, args.crops, seed=100 + i)]
    labels = sorted(float(v) for v in args.labels.split(","))
    measured = [output_noise(model, crops, label, args.seed) for label in labels]
    print(
        f"{len(crops)} crops of {args.crop}^2 ({args.crops} per frame), one sample each, model "
        f"{model.name} ({model.revision}), {model.sampler} {model.steps} steps, {model.spacing}"
    )
    print("| label G | output quiet-Sun noise G |\n|---|---|")
    for label, value in zip(labels, measured, strict=True):
        print(f"| {label:.2f} | {value:.2f} |")
    # The map must be increasing to be inverted; a label that adds nothing (the output's floor) is dropped.
    keep = [0]
    for k in range(1, len(labels)):
        if measured[k] > measured[keep[-1]] + 0.02:
            keep.append(k)
    names = ", ".join(Path(f).name.split(".")[2] for f in args.hmi)
    label_map = {
        "output_gauss": [round(measured[k], 3) for k in keep],
        "label_gauss": [labels[k] for k in keep],
        "source": f"median of {len(crops)} crops of {args.crop}^2 from {names}, one sample each, "
        f"{model.sampler} {model.steps} steps {model.spacing}",
    }
    mapped = copy.copy(model)
    mapped.noise_label_map = model._check_label_map(label_map, model.denoiser.config)
    for f in args.hmi:
        level = _measured_noise(f)
        try:
            label = mapped.configure_sampler(noise_level=level).noise_label
        except ValueError as err:
            print(f"{Path(f).name}: {err}")
            continue
        print(f"{Path(f).name}: frame noise {level:.2f} G -> label {label:.2f} G")
    if args.write:
        rewrite_manifest(
            Path(args.model), {"inference": {**_inference(args.model), "noise_label_map": label_map}}
        )
        print(f"written to {Path(args.model) / 'superres.json'}")


def _inference(path):
    import json

    return json.loads((Path(path) / "superres.json").read_text())["inference"]


if __name__ == "__main__":
    main()
