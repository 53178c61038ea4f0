"""
===========================================
Per-pixel uncertainty from repeated samples
===========================================

A diffusion model draws a different plausible high-resolution map on every run. Eight samples of the
shipped MDI active-region cut-out give an `~sunpy_superres.UncertaintyMap`: its data are the
per-pixel mean, and it carries the per-pixel standard deviation in G as a map with the same WCS
(Ramunno et al. 2025, section 7, Figs. 11-12). The samples are reproducible from the seed, come
in antithetic pairs, and each pair sees the input under another flip.
"""

import tempfile
from pathlib import Path

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map
from matplotlib.colors import Normalize

from sunpy_superres import UncertaintyMap, superresolve
from sunpy_superres.data import MDI_AR_CUTOUT
from sunpy_superres.visualization import plot_comparison

###############################################################################
# Eight samples of the default model (about 20 s on a laptop CPU). The default model's standard
# deviation is calibrated at eight samples (see the gallery example on calibration).

mdi = sunpy.map.Map(MDI_AR_CUTOUT)
um = superresolve(mdi, samples=8, seed=0, keep_samples=True, progress=False)
print(
    type(um).__name__,
    um.data.shape,
    "samples:",
    um.meta["srsample"],
    "pairs:",
    um.meta["sranti"],
    "flips:",
    um.meta["srsymm"],
)
std = um.std.to_value(u.G)
print(f"mean standard deviation: {np.nanmean(std):.1f} G, largest: {np.nanmax(std):.0f} G")

###############################################################################
# The samples come in antithetic pairs (``SRANTI = 'polarity'``): sample 1 starts from the same
# initial noise as sample 0, but for the input with its polarity reversed, and is reversed back;
# sample 3 likewise from sample 2's, and so on. The model was trained with reversed polarities, so
# this is the sample of sample 0's negated noise: each is a sample of the model, but within a pair
# the departures from the mean nearly cancel, so the mean of eight is close to the model's
# posterior mean (the user guide says how much that gains); across pairs they are unrelated.
# Each pair also sees the input under another flip (``SRSYMM``): pair 1 flipped left-right, pair 2
# upside down, pair 3 both, each output flipped back. Every sample is still a sample for this
# input, and the mean averages over the orientations and polarities in which the networks err.

departures = um.samples.to_value(u.G) - um.data
finite = np.isfinite(departures[0])


def correlation(a, b):
    return np.corrcoef(a[finite], b[finite])[0, 1]


print(
    f"correlation of departures from the mean: within a pair {correlation(departures[0], departures[1]):+.2f}, "
    f"across pairs {correlation(departures[0], departures[2]):+.2f}"
)

###############################################################################
# Mean and standard deviation side by side, each with its colour bar in G.

um.plot()
plt.show()

###############################################################################
# The quick-look of the command line (``sunpy-superres IN.fits -o OUT.fits --samples 8 --png
# OUT.png``) draws the same samples beside the input: the input on the output's scale, the mean,
# and the standard deviation on its own colour scale, noted "calibrated" when the model's
# calibration was applied (``SRUNCAL``).

plot_comparison(mdi, um)
plt.show()

###############################################################################
# Split the standard deviation at 2" features (MDI's Nyquist frequency, 0.25 arcsec^-1) with a
# Butterworth filter, as the paper's Fig. 12 does. The two parts are filtered images of the std map,
# not standard deviations themselves: the part above 2" holds the map's mean and is positive; the
# part below 2" is a signed ripple around zero (red where the uncertainty peaks more sharply than
# its surroundings, blue just beside such peaks), and its stripes are the edges of the strong-field
# patches, where the std changes within a few pixels. So this pair says how patchy the uncertainty
# is. At which scale the samples themselves differ, against the error of their mean, is measured
# by ``benchmarks/uncertainty_scales.py``.

small = um.small_scale_uncertainty()
large = um.large_scale_uncertainty()
print(
    f'mean |std| below 2": {np.nanmean(np.abs(small.data)):.1f} G, '
    f'above 2": {np.nanmean(np.abs(large.data)):.1f} G'
)

fig = plt.figure(figsize=(12, 5.2))
panels = [(small, 'std map below 2" (high pass, signed)'), (large, 'std map above 2" (low pass)')]
for i, (m, title) in enumerate(panels):
    ax = fig.add_subplot(1, 2, i + 1, projection=m)
    limit = np.nanpercentile(np.abs(m.data), 99.5)
    norm = Normalize(vmin=-limit if i == 0 else 0, vmax=limit)
    im = m.plot(axes=ax, cmap="RdBu_r" if i == 0 else "magma", title=title, norm=norm)
    fig.colorbar(im, ax=ax, label="G", shrink=0.85, pad=0.02)
    if i == 1:  # one latitude axis is enough; the colour bar of the left panel needs the room
        ax.coords[1].set_ticklabel_visible(False)
        ax.coords[1].set_axislabel(" ")
fig.suptitle(
    f"{mdi.instrument} {mdi.date.strftime('%Y-%m-%d %H:%M')}, {um.meta['srmodel']}, "
    f"{um.meta['srsample']} samples, seed {um.meta['srseed']}, HMI level"
)
plt.show()

###############################################################################
# Mean and standard deviation travel together: through a sub-map, and through one FITS file.

sub = um.submap([100, 100] * u.pix, top_right=[299, 299] * u.pix)
print(type(sub).__name__, sub.data.shape, sub.std.shape)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "mdi_uncertainty.fits"
    um.save(path)
    back = UncertaintyMap.read(path)
    print("std kept through FITS:", np.allclose(back.std, um.std, equal_nan=True))
