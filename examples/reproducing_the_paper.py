"""
============================================================
The paper's comparison: Fourier amplitude and power below 2"
============================================================

Ramunno et al. (2025, A&A 698, A140) show in their Fig. 10 the Fourier amplitude of a magnetogram
and of its super-resolutions: a model that only interpolates leaves the frequencies beyond the
input's 2" resolution (outside the red circle) empty; one that resolves features below 2" fills
them as the truth does. This example draws that figure with the package, for every model that
ships with weights, on the shipped cut-out of the held-out 2016-07-07 frame (no model was trained,
tuned or calibrated on that day). The table of all eight models on four held-out crops, next to the
paper's Table 1, is on the docs page "Reproducing the paper".
"""

import matplotlib.pyplot as plt
import sunpy.map

from sunpy_superres.data import HMI_HELDOUT_CUTOUT
from sunpy_superres.evaluation import evaluate, plot_fourier, plot_power_spectra
from sunpy_superres.models import available_models

###############################################################################
# The truth: 256x256 HMI pixels (0.5") around the strongest active region of the held-out frame.
# `~sunpy_superres.evaluation.evaluate` degrades it by 4x4 block means to MDI's 2"/pixel (the
# paper's simulation of MDI), super-resolves the 64x64 result with each model (one sample of each
# stochastic one, seed 0) and scores the outputs.

truth = sunpy.map.Map(HMI_HELDOUT_CUTOUT)
shipped = available_models()
diffusion = [name for name in ("ldm-res", "ldm", "ddpm-res", "ddpm") if name in shipped]
models = [*diffusion, "enhance", "progressive", "bicubic", "nearest"]
result = evaluate(models, [truth], crop=None, samples=1, seed=0)

table = result.summary["model", "psnr_mean", "flux_error_mean", "spectral_error_mean", "small_scale_mean"]
for name in table.colnames[1:]:
    table.rename_column(name, name.removesuffix("_mean"))
print(f"{truth.date.strftime('%Y-%m-%d')}, {truth.detector}, one crop, one sample:")
table.pprint(max_width=-1)

###############################################################################
# Fig. 10 of the paper: the Fourier amplitude of the truth and of each output, the red circle at
# 2" features. The diffusion models fill the corners beyond the circle with most of the truth's
# power (``small_scale`` in the table, 1 being the truth's); the CNNs, trained on the pixel error,
# fill them weakly: the average of the possible fine structures is nearly smooth. (Nearest
# replication's ``small_scale`` is high too, but its power is the aliasing of its 4x4 blocks, on
# the axes of this figure, not the truth's pattern: see its spectral error.)

fig = plot_fourier(result, models=[*diffusion, "progressive", "enhance"])
fig.suptitle(f"HMI {truth.date.strftime('%Y-%m-%d %H:%M')}, degraded 4x4 and super-resolved")
fig.tight_layout(rect=(0, 0, 1, 0.92))
plt.show()

###############################################################################
# The same as radial power spectra: to the left of the input's Nyquist frequency (the dashed
# line) every model keeps the input's power; to its right, bicubic falls off, nearest replication
# has the aliased power of its 2" blocks, and the diffusion models follow the truth.

fig = plot_power_spectra(result)
plt.show()
