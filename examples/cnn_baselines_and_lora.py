"""
===========================================================
CNN baselines, the diffusion model, and LoRA fine-tuning
===========================================================

Ramunno et al. (2025) compare their latent diffusion model with residuals (``ldm-res``) with two
deterministic CNNs, Enhance (Diaz Baso & Asensio Ramos 2018) and a progressive x2 -> x4 network
(Rahman et al. 2020), and with bicubic interpolation (their Tables 1 and 2). All four ship with
the package, the trained ones with embedded weights, so they run offline under one name each.

The first part scores them on a real HMI patch degraded 4x4 to MDI's 2"/pixel. The second part
fine-tunes ``ldm-res`` with LoRA on MDI/HMI pairs, as the paper does in its section 7, in
miniature. The ``[train]`` extra (``peft``, ``accelerate``) is needed for the second part.
"""

import shutil
import tempfile
import time
from pathlib import Path

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map
from safetensors.torch import load_file

from sunpy_superres import superresolve
from sunpy_superres.data import HMI_AR_CUTOUT, MDI_AR_CUTOUT, MODELS_DIR
from sunpy_superres.evaluation import evaluate
from sunpy_superres.models import available_models
from sunpy_superres.training import TrainConfig, train
from sunpy_superres.training.config import DataConfig, FinetuneConfig
from sunpy_superres.training.lora import verify_adapter
from sunpy_superres.training.pairs import make_synthetic_pair

###############################################################################
# The models of the registry; ``default`` is the embedded ``ldm-res``.

for name, description in available_models().items():
    print(f"{name:>12}: {description}")

###############################################################################
# Ground truth: a 256x256 patch (about 2' a side) of the shipped HMI cut-out of 2011-12-17, with
# the sunspot and the positive plage east of it. `~sunpy_superres.evaluation.evaluate` degrades it
# by 4x4 block means (the paper's simulation of MDI, section 4), super-resolves the 64x64 result
# with each model, and scores each output against the truth: PSNR, the percentage errors of the
# unsigned flux and of the active-region area (``|B| >= 300 G``), and the spectral error (the mean
# ``|ln|`` ratio of the radial power spectra at the scales below 2" that the models add: 0 is
# perfect, 0.69 a factor 2 off). ``ldm-res`` is stochastic: one sample here, ten in the paper, which
# also averages over many images; one patch gives an impression, not a ranking.

hmi = sunpy.map.Map(HMI_AR_CUTOUT)
truth = hmi.submap([192, 144] * u.pix, top_right=[447, 399] * u.pix)
models = ["bicubic", "enhance", "progressive", "ldm-res"]
result = evaluate(models, [truth], crop=None, samples=1, seed=0)

columns = ["model", "psnr_mean", "flux_error_mean", "ar_area_error_mean", "spectral_error_mean"]
table = result.summary[columns]
for name in columns[1:]:
    table.rename_column(name, name.removesuffix("_mean"))
print(table)

###############################################################################
# The input, the truth and the four outputs on one grey scale. Bicubic interpolation is smooth
# below 2"; the CNNs sharpen the edges; the diffusion model draws small-scale structure (a sample,
# not an average).

panels = [
    ('input, 2"/px', result.examples["lowres"]),
    ("truth (HMI)", result.examples["truth"]),
    *((name, result.examples[name]) for name in models),
]
fig = plt.figure(figsize=(12, 8))
for i, (title, smap) in enumerate(panels):
    ax = fig.add_subplot(2, 3, i + 1, projection=smap)
    smap.plot(axes=ax, cmap="gray", norm=None, vmin=-1500, vmax=1500, title=title)
    ax.coords[0].set_axislabel(" ")
    ax.coords[1].set_axislabel(" ")
fig.tight_layout()
plt.show()

###############################################################################
# LoRA fine-tuning
# ----------------
# The models above were trained on HMI degraded to 2"; real MDI differs (optics, noise, the 1.4
# intensity scale of Liu et al. 2012). The paper therefore fine-tunes its pre-trained model on 200
# co-temporal MDI/HMI pairs of May to August 2010, when both instruments observed (the rest of the
# overlap, to April 2011, is its test set), with Low-Rank Adaptation (LoRA, Hu et al. 2021):
# low-rank updates on the attention projections ``to_q``, ``to_k``, ``to_v`` and ``to_out.0`` of the
# U-Net, and the U-Net's bottleneck (its mid block) trained in full; every other weight stays
# frozen. The embedded default has no self-attention (it tiles exactly without it), so its LoRA goes
# on the two convolutions of every ResNet block instead (``conv1``, ``conv2``). Real pairs come from
# JSOC with `~sunpy_superres.training.pairs.fetch_pair` and the ``[finetune] pairs = "directory"``
# setting.
#
# No MDI/HMI pairs ship with the package, so the pair here is *synthetic*: an MDI-like map made from
# the HMI cut-out by `~sunpy_superres.training.pairs.degrade_to_mdi` (a Gaussian PSF of 3.3" FWHM, the
# 4x4 block mean, x1.4 to MDI levels, 9 G of noise), paired with the HMI map exactly as a real MDI map
# would be (`~sunpy_superres.training.pairs.make_synthetic_pair`). Fine-tuning on it teaches nothing
# about real MDI; it only shows the workflow.

pair = make_synthetic_pair(hmi, seed=0)
print(
    "input:",
    pair.lr.data.shape,
    f"{pair.lr.scale.axis1:.3f}",
    "| target:",
    pair.hr.data.shape,
    f"{pair.hr.scale.axis1:.3f}",
    "| calibration:",
    pair.lr.meta["srcalfac"],
)

fig = plt.figure(figsize=(10, 4.5))
for i, (title, smap) in enumerate((("MDI-like input (synthetic)", pair.lr), ("HMI target", pair.hr))):
    ax = fig.add_subplot(1, 2, i + 1, projection=smap)
    smap.plot(axes=ax, cmap="gray", norm=None, vmin=-1500, vmax=1500, title=title)
plt.show()

###############################################################################
# The fine-tuning loop is the training loop with a ``[finetune]`` section naming the base model. With
# ``pairs = "synthetic"`` (the default) it makes one pair per HMI file of ``[data] data_dir`` as above
# (``pair_crop_size = 0``: the whole cut-out instead of the paper's 256x256 MDI pixels around the
# most intense active region) and trains on random ``crop_size`` crops of the pairs. The loop takes
# each file's date (for ``[finetune] dates``) from a JSOC-style name, else from its header; the
# cut-out is copied into a folder of its own under the name a JSOC download would have.
#
# Here: rank 8 (the default), 128x128 crops, batches of 2, six steps, and a learning rate of 1e-3 so
# that six steps change something; the paper trains for epochs on its 200 pairs. The same run from a
# TOML file is ``sunpy-superres-train finetune CONFIG.toml --base-model ldm-res``.

work = Path(tempfile.mkdtemp(prefix="lora-example-"))
(work / "hmi").mkdir()
shutil.copy(HMI_AR_CUTOUT, work / "hmi" / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits")

config = TrainConfig(
    name="lora-demo",
    output_dir=str(work / "run"),
    batch_size=2,
    max_steps=6,
    checkpoint_every=6,
    learning_rate=1e-3,
    data=DataConfig(data_dir=str(work / "hmi"), crop_size=128, validation_fraction=0),
    finetune=FinetuneConfig(base_model="ldm-res", lora_rank=8, pair_crop_size=0),
)
start = time.perf_counter()
merged_dir = train(config, progress=False)
print(f"fine-tuned in {time.perf_counter() - start:.0f} s")

###############################################################################
# The run writes the adapter alone to ``output_dir/adapter``: the LoRA matrices and the trained mid
# block as safetensors (the mid block twice, in peft's layout and in plain keys, so that a change of
# peft's layout fails loudly), and an ``adapter.json`` manifest with the sha256 of every file and of
# the base model it belongs to. ``output_dir/model`` is the merged model, a normal model directory.


def size_kb(path):
    """Total size of the files under ``path``, in kB."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e3


adapter_dir = work / "run" / "adapter"
manifest = verify_adapter(adapter_dir)
print("LoRA:", manifest["lora"])
for p in sorted(adapter_dir.iterdir()):
    print(f"  {p.name:<28} {p.stat().st_size / 1e3:8.1f} kB")
print(
    f"adapter {size_kb(adapter_dir):.0f} kB; base model ldm-res {size_kb(MODELS_DIR / 'ldm-res'):.0f} kB "
    f"(float16 weights); merged model {size_kb(merged_dir):.0f} kB (float32)"
)

###############################################################################
# Most of the adapter is the mid block, trained in full and stored twice (float32); the LoRA
# matrices themselves are small. In parameters:

adapter_tensors = load_file(adapter_dir / "adapter_model.safetensors")
n_lora = sum(t.numel() for k, t in adapter_tensors.items() if ".lora_" in k)
n_mid = sum(t.numel() for k, t in adapter_tensors.items() if ".lora_" not in k)
base_files = (MODELS_DIR / "ldm-res").rglob("*.safetensors")
n_base = sum(t.numel() for f in base_files for t in load_file(f).values())
print(
    f"LoRA {n_lora:,} ({4 * n_lora / 1e3:.0f} kB as float32), mid block {n_mid:,}, "
    f"base model (denoiser + autoencoder) {n_base:,} parameters"
)

###############################################################################
# The adapter is applied at inference with ``adapter=``: the base model is loaded, the adapter's
# checksums and its base are checked, and LoRA is merged into the weights. Here on a 32x32 patch of
# the real MDI cut-out of 2010-10-15, with the same seed as the base model alone; the header
# records the adapter's revision. After six steps on one synthetic pair the change is small next to
# the small-scale structure the diffusion model adds to bicubic interpolation.

mdi = sunpy.map.Map(MDI_AR_CUTOUT).submap([38, 53] * u.pix, top_right=[69, 84] * u.pix)
base_out = superresolve(mdi, model="ldm-res", seed=0, progress=False)
tuned_out = superresolve(mdi, model="ldm-res", adapter=adapter_dir, seed=0, progress=False)
bicubic_out = superresolve(mdi, model="bicubic", progress=False)
print("revision:", base_out.meta["srmodrev"], "->", tuned_out.meta["srmodrev"])
for label, a, b in (
    ("ldm-res - bicubic", base_out, bicubic_out),
    ("fine-tuned - ldm-res", tuned_out, base_out),
):
    print(f"rms {label}: {np.sqrt(np.mean((a.data - b.data) ** 2)):.2f} G")

fig = plt.figure(figsize=(12, 4))
panels = [("MDI input", mdi), ("ldm-res", base_out), ("ldm-res + adapter", tuned_out)]
for i, (title, smap) in enumerate(panels):
    ax = fig.add_subplot(1, 3, i + 1, projection=smap)
    smap.plot(axes=ax, cmap="gray", norm=None, vmin=-1000, vmax=1000, title=title)
    if i:  # the same region in each panel
        ax.coords[1].set_axislabel(" ")
        ax.coords[1].set_ticklabel_visible(False)
plt.show()

###############################################################################
# Clean up the run directory.

shutil.rmtree(work)
