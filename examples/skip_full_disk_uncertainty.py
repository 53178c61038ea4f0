"""
========================================================
A full-disk MDI magnetogram with a 10-sample uncertainty
========================================================

The SOHO/MDI magnetogram of 2010-10-15 00:00 TAI, from the year MDI and SDO/HMI observed together,
super-resolved from 1024x1024 pixels at 1.986" to 4096x4096 at 0.4965" with ten samples of the
default model: the per-pixel mean, the per-pixel standard deviation, and its split at MDI's 2"
pixel (Ramunno et al. 2025, section 7, Figs. 11-12).

This example is not run when the documentation is built: it needs the full-disk file (1.4 MB; not
shipped with the package) and about 20 seconds per sample on a 2-core CPU with the default's
4-step student (bfloat16 where the CPU has AMX or AVX-512 BF16, float32 elsewhere: :doc:`/guide`),
or well under a minute
for all ten on a recent GPU (see ``benchmarks/bench_fulldisk.py``). Get the file from JSOC
(series ``mdi.fd_M_96m_lev182``, record ``[2010.10.15_00:00:00_TAI]``), e.g. with sunpy's
``Fido.search(a.Time("2010-10-15 00:00", "2010-10-15 00:01"), a.jsoc.Series("mdi.fd_M_96m_lev182"),
a.jsoc.Notify(email))``, and point ``MDI_FULL_DISK`` at it.
"""

import os
from pathlib import Path

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord

from sunpy_superres import superresolve

###############################################################################
# Read the full-disk frame. Off-disk pixels are NaN and stay NaN; tiles are blended on the disk.

path = Path(
    os.environ.get("MDI_FULL_DISK", "../shared/data/mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits")
)
if not path.is_file():
    raise FileNotFoundError(f"{path} not found: download the MDI frame (see above) and set MDI_FULL_DISK")
mdi = sunpy.map.Map(path)
print(mdi.date.isot, mdi.data.shape, mdi.scale.axis1)

###############################################################################
# Ten samples. ``batch_size="auto"`` (the default) fills a GPU with tiles when there is one; on a CPU
# each call takes a tile's samples of one flip, which share its regression pass (225 s on two cores
# of an AMD EPYC with AVX-512 BF16, 2026-12-05; with ``sampler="dpm-solver++"``, the default's
# 10-step sampler, about 9 minutes on two cores of a Xeon with AMX, est.).

um = superresolve(mdi, samples=10, seed=0)
print(type(um).__name__, um.data.shape, um.scale.axis1)
print(f"on-disk mean standard deviation: {np.nanmean(um.std.to_value(u.G)):.1f} G")

###############################################################################
# Mean and standard deviation of the whole disk.

um.plot()
plt.show()

###############################################################################
# The standard deviation map split at 2" with a Butterworth filter, as the paper's Fig. 12: the
# parts are filtered images of the std map, not standard deviations themselves (the part below 2" is
# a signed ripple that says how patchy the uncertainty is; see the gallery example on the per-pixel
# uncertainty). Shown on a 200" x 200" field around the active region near disk centre.

small, large = um.small_scale_uncertainty(), um.large_scale_uncertainty()
print(
    f'mean |std| below 2": {np.nanmean(np.abs(small.data)):.1f} G, '
    f"above: {np.nanmean(np.abs(large.data)):.1f} G"
)
box = dict(bottom_left=[-100, -500] * u.arcsec, top_right=[100, -300] * u.arcsec)
fig = plt.figure(figsize=(15, 5))
for i, (m, title, cmap) in enumerate(
    [(um, "mean", "gray"), (small, 'std below 2"', "RdBu_r"), (large, 'std above 2"', "magma")]
):
    sub = m.submap(
        SkyCoord(*box["bottom_left"], frame=m.coordinate_frame),
        top_right=SkyCoord(*box["top_right"], frame=m.coordinate_frame),
    )
    ax = fig.add_subplot(1, 3, i + 1, projection=sub)
    im = sub.plot(axes=ax, cmap=cmap, title=title)
    fig.colorbar(im, ax=ax, label="G", shrink=0.8)
plt.show()

###############################################################################
# One FITS file holds mean and standard deviation (HDUs), the provenance in the header.

um.save("mdi_20101015_superres_uncertainty.fits", overwrite=True)
