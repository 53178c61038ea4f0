"""
================================================================
Train a diffusion model and compare its samplers (a tiny recipe)
================================================================

The latent diffusion model with residuals of Ramunno et al. (2025) is trained with one loop,
`sunpy_superres.training.train`, from a dataclass config; the result is a model directory
(``config.json`` + safetensors + a ``superres.json`` manifest with sha256 checksums) that
`~sunpy_superres.superresolve` loads with ``model=<directory>``.

This recipe trains a *tiny* model for a few dozen steps on two full-disk HMI-sized crops made from the
shipped HMI cut-out, so that it runs in seconds: its output is not useful science, only the workflow
is. The shipped ``cpu`` config (``sunpy-superres-train cpu``) and ``paper-gpu`` config are the real
recipes of this variant, with a learnt autoencoder; the embedded default was trained with
``ldm-res-s2d-cpu`` and then ``ldm-res-s2d-noise-cpu``, in a space-to-depth latent without an
autoencoder (see its model card). ``sunpy-superres-train --help`` lists every shipped config. The
``[train]`` extra (``peft``, ``accelerate``) is needed.
"""

import tempfile
from pathlib import Path

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.data import HMI_AR_CUTOUT
from sunpy_superres.evaluation import degrade
from sunpy_superres.training import TrainConfig, train
from sunpy_superres.training.config import DataConfig, ModelConfig

###############################################################################
# Training data: the loop reads HMI FITS files from a folder. Here, the shipped cut-out.

work = Path(tempfile.mkdtemp())
(work / "hmi").mkdir()
hmi = sunpy.map.Map(HMI_AR_CUTOUT)
hmi.meta.pop("blank", None)  # an integer-encoding key of the original file; the copy is float
hmi.save(work / "hmi" / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits")

###############################################################################
# A tiny latent-diffusion-with-residuals config: a small autoencoder (factor 4) trained first in
# the same loop, then the denoiser. Each kind of network has its own table of settings, as
# ``[model.diffusion]`` and ``[model.autoencoder]`` in a TOML config. The ``cpu`` and ``paper-gpu``
# configs differ from this one mainly in sizes and step counts.

config = TrainConfig(
    name="tiny-ldm-res",
    output_dir=str(work / "run"),
    batch_size=2,
    max_steps=20,
    checkpoint_every=10,
    autoencoder_steps=20,
    scale_batches=2,
    data=DataConfig(
        data_dir=str(work / "hmi"), crop_size=64, validation_dates=[], validation_fraction=0, max_radius=1.0
    ),
    model=ModelConfig(
        diffusion={
            "space": "latent",
            "residual": True,
            "block_out_channels": [16, 32],
            "attention_levels": [False, True],
            "attention_head_dim": 8,
            "norm_num_groups": 8,
            "layers_per_block": 1,
        },
        autoencoder={
            "factor": 4,
            "latent_channels": 2,
            "base_channels": 8,
            "max_channels": 16,
            "norm_num_groups": 4,
        },
        tile_size=64,
        halo=4,
    ),
)
model_dir = train(config, progress=False)
print(sorted(p.name for p in model_dir.iterdir()))

###############################################################################
# Super-resolve a 2"/pixel patch of the cut-out with the fast default sampler (DPM-Solver++, 20
# network evaluations) and with DDIM at 25 steps; the paper's DDPM needs 1000 evaluations
# (``sampler="ddpm"``).

lowres = degrade(hmi).submap([0, 0] * u.pix, top_right=[31, 31] * u.pix)
outputs = {
    sched: superresolve(lowres, model=str(model_dir), sampler=sched, steps=steps, seed=0, progress=False)
    for sched, steps in (("dpm-solver++", None), ("ddim", 25))
}
for sched, out in outputs.items():
    print(sched, out.meta["srsteps"], "steps:", out.data.shape, f"{np.nanstd(out.data):.1f} G rms")

###############################################################################
# Input and the two samples side by side.

fig = plt.figure(figsize=(12, 4))
for i, (title, smap) in enumerate([('input (2")', lowres), *outputs.items()]):
    ax = fig.add_subplot(1, 3, i + 1, projection=smap)
    smap.plot(axes=ax, cmap="gray", norm=None, vmin=-1000, vmax=1000, title=title)
plt.show()
