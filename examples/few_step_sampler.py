"""
=================================================
Four steps instead of ten: the distilled sampler
=================================================

The default model samples with a *student*: a copy of its denoiser distilled (by trajectory
distillation) to follow the model's 10-step DPM-Solver++ sampler in 4 steps (``sampler="distilled"``,
the default since 2026-12-05). ``sampler="dpm-solver++"`` runs the 10-step sampler, on the network
the student was distilled from. Because the student learnt the map from the initial noise to the
sample, the same seed gives nearly the same sample as the 10-step sampler, at 4 network evaluations
instead of 10.

Here the shipped HMI cut-out (a training day, 2011-12-17) is degraded to 2"/pixel and
super-resolved with both samplers and two seeds. The student's sample is compared with the
teacher's sample of the same seed, and with the teacher's sample of another seed.
"""

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.data import HMI_AR_CUTOUT
from sunpy_superres.evaluation import degrade
from sunpy_superres.memory import keep_freed_memory
from sunpy_superres.metrics import spectra

###############################################################################
# One sample of each sampler with seed 0, and one of the 10-step sampler with seed 1. The header
# records which sampler ran (``SRSCHED``), its network evaluations (``SRSTEPS``) and the revision of
# the network that ran them (``SRMODREV``: the student has its own).
#
# Speed on a CPU under Linux: each call keeps the memory its networks free for their next layer and
# tile, and a loop of calls inside ``keep_freed_memory()`` keeps it from one call to the next as
# well (a 256x256 MDI crop's call of the 10-step sampler: 1.56 s against 1.78 s; the results are the same
# to the bit; see the user guide's "Full disk").

truth = sunpy.map.Map(HMI_AR_CUTOUT).submap([128, 128] * u.pix, top_right=[383, 383] * u.pix)
lowres = degrade(truth)
options = dict(calibrate=False, progress=False)
runs = {}
with keep_freed_memory():
    for name, kwargs in [
        ("10 steps, seed 0", dict(seed=0, sampler="dpm-solver++")),
        ("10 steps, seed 1", dict(seed=1, sampler="dpm-solver++")),
        ("distilled, seed 0", dict(seed=0)),
    ]:
        runs[name] = out = superresolve(lowres, **kwargs, **options)
        print(
            f"{name:>18}: {out.meta['srsched']}, {out.meta['srsteps']} network evaluations, "
            f"revision {out.meta['srmodrev']}"
        )


def rms(a, b):
    return np.sqrt(np.mean((a.data - b.data) ** 2))


teacher, other, student = runs.values()
print(f"student vs teacher, same seed: {rms(student, teacher):.1f} G rms")
print(f"teacher, seed 0 vs seed 1:     {rms(teacher, other):.1f} G rms")
print(f"teacher vs truth:              {rms(teacher, truth):.1f} G rms")

###############################################################################
# The samples side by side, and each one's radial power spectrum relative to the truth's (1 is
# right). Right of the dashed line (MDI's Nyquist frequency) lies what a 2"/pixel map cannot hold;
# there the student keeps about as much power as its teacher (its model card has the held-out
# numbers).

fig = plt.figure(figsize=(10, 7))
for i, (name, smap) in enumerate((("truth (HMI)", truth), *runs.items())):
    ax = fig.add_subplot(2, 4, i + 1, projection=smap)
    smap.plot(axes=ax, cmap="hmimag", norm=None, vmin=-500, vmax=500, title=name)
    ax.set_axis_off()
ax = fig.add_subplot(2, 1, 2)
k, truth_power = spectra.radial_power_spectrum(truth)
for name, smap in runs.items():
    ax.semilogx(k[1:], spectra.radial_power_spectrum(smap)[1][1:] / truth_power[1:], label=name)
ax.axhline(1, color="k", lw=0.5)
ax.axvline(0.25, color="grey", ls="--", lw=1)
ax.set_xlabel("k [1/arcsec]")
ax.set_ylabel("power / truth's")
ax.legend()
plt.show()
