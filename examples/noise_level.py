"""
===============================================
The noise level of a super-resolved magnetogram
===============================================

Below 2" a magnetogram's quiet Sun is mostly noise, and how much depends on the instrument and the
epoch: HMI's 720 s magnetograms have about 4.8 G of quiet-Sun noise in 2011 and 3.5 G since its
observing sequence changed in April 2016 (`sunpy_superres.metrics.physics.quiet_sun_noise`), and
within a frame it rises from 0.86 of the frame's level at disk centre to 1.2 at the limb. A
generative model has to make *some* small-scale texture, and that texture sets the weak-field
unsigned flux of its output. So the default ``ldm-res`` is told which noise to make:
``superresolve(..., noise_level=...)``, recorded as ``SRNOISE``. Without it, an HMI map (one
degraded to test a model against its original) gets the noise of HMI's data at the time and place
(`sunpy_superres.calibration.hmi_noise_level`), an MDI map 3.5 G (today's HMI) at its place, as
HMI would have seen it, and any other map 3.5 G; ``SRNOISRC`` says which, and ``SRNOICLV`` the
factor of the place.

Here an HMI cut-out of the held-out 2016-07-07 frame, degraded to 2"/pixel by 4x4 block means, is
super-resolved with the same seed at three levels, and compared with the truth: the measured noise
of each output follows the level asked for, and with it the unsigned flux where the field is weak.
"""

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.calibration import hmi_noise_clv, hmi_noise_level, hmi_observing_sequence
from sunpy_superres.data import HMI_AR_CUTOUT, HMI_HELDOUT_CUTOUT, MDI_AR_CUTOUT
from sunpy_superres.evaluation import degrade
from sunpy_superres.metrics.physics import (
    percentage_difference,
    quiet_sun_noise,
    subpixel_cancellation,
    unsigned_flux,
)

###############################################################################
# The truth (HMI, 0.5"/pixel), its 2"/pixel version, and three outputs, same seed.

truth = sunpy.map.Map(HMI_HELDOUT_CUTOUT)
lowres = degrade(truth)
levels = [3.0, 3.5, 4.5] * u.G
outputs = [superresolve(lowres, seed=7, noise_level=level, progress=False) for level in levels]
print(f"truth: quiet-Sun noise {quiet_sun_noise(truth):.2f}, unsigned flux {unsigned_flux(truth):.3e}")

###############################################################################
# The measured quiet-Sun noise of each output, and the unsigned flux of its weak-field pixels
# (where the 2" input is below 50 G) and of the whole map.

weak = np.repeat(np.repeat(np.abs(lowres.data) < 50, 4, axis=0), 4, axis=1)
print(
    f"truth weak-field flux {unsigned_flux(truth._new_instance(np.where(weak, truth.data, 0.0), truth.meta)):.3e}"
)
for level, out in zip(levels, outputs, strict=True):
    weak_map = out._new_instance(np.where(weak, out.data, 0.0), out.meta)
    print(
        f"noise_level {level:.1f}: header SRNOISE {out.meta['srnoise']}, measured "
        f"{quiet_sun_noise(out):.2f}, unsigned flux {unsigned_flux(out):.3e} "
        f"(weak field {unsigned_flux(weak_map):.3e})"
    )

###############################################################################
# The same split as `sunpy_superres.evaluation.evaluate` reports it for every output: the noise
# relative to the truth's, measured on the blocks the *truth* calls quiet (``reference=truth``), and
# the signed unsigned-flux error (its columns ``noise_ratio`` and ``flux_bias``). An output noisier
# than the truth has more unsigned flux without any change in its structure.

truth_noise = quiet_sun_noise(truth)
for level, out in zip(levels, outputs, strict=True):
    ratio = quiet_sun_noise(out, reference=truth) / truth_noise
    bias = percentage_difference(unsigned_flux(out), unsigned_flux(truth))
    print(f"noise_level {level:.1f}: noise ratio {ratio:.3f}, flux bias {bias:+.2f}")

###############################################################################
# A flux bias with the noise right is an error in the field's structure. One such error has its own
# metric: the share of the unsigned flux that cancels inside the input's 2" pixels (4x4 blocks with
# ``|mean|`` >= 5 G), `~sunpy_superres.metrics.physics.subpixel_cancellation`. The truth concentrates a
# weak pixel's flux in a few elements of its sign; a texture spread symmetrically about the pixel's
# mean crosses zero there and reads more unsigned flux. ``evaluate`` reports it as ``cancel_ratio``,
# the output's share (on the truth's blocks) over the truth's; 1 is right.

truth_share = subpixel_cancellation(truth)
for level, out in zip(levels, outputs, strict=True):
    share = subpixel_cancellation(out, reference=truth)
    print(f'noise_level {level:.1f}: flux cancelling inside 2" pixels {share:.4f} (truth {truth_share:.4f})')

###############################################################################
# The same quiet corner of the three outputs: the texture grows with the level; the network of
# strong elements is the same in all three, since each 4x4 block keeps its input's mean.

fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), sharey=True)
for ax, level, out in zip(axes, levels, outputs, strict=True):
    corner = out.data[:128, :128]
    ax.imshow(corner, origin="lower", cmap="gray", vmin=-40, vmax=40)
    ax.set_title(f"noise_level = {level:.1f}\nmeasured {quiet_sun_noise(out):.2f}")
    ax.set_xlabel('pixel (0.5")')
axes[0].set_ylabel('pixel (0.5")')
fig.suptitle(
    f'HMI {truth.date.strftime("%Y-%m-%d %H:%M")} degraded to 2", super-resolved by '
    f"{outputs[0].meta['srmodel']}, seed 7, grey scale +-40 G"
)
plt.show()

###############################################################################
# Without ``noise_level`` the level follows the HMI data: the header's camera tells HMI's observing
# sequences apart (one camera until April 2016, both since), each has its own noise, and the map's
# place on the disk scales it (`sunpy_superres.calibration.hmi_noise_clv`). The shipped 2011
# cut-out, a third of the way to the limb, and this 2016 one, three fifths of the way, against
# their own noise:

for name, smap in [("2011-12-17", sunpy.map.Map(HMI_AR_CUTOUT)), ("2016-07-07", truth)]:
    print(
        f"HMI {name}: INSTRUME {smap.meta['instrume']}, CAMERA {smap.meta.get('camera')}: "
        f"{hmi_observing_sequence(smap)}, frame {hmi_noise_level(smap, place=False)}, "
        f"here {hmi_noise_level(smap):.2f} (x {hmi_noise_clv(smap):.3f}); measured {quiet_sun_noise(smap):.2f}"
    )
out = superresolve(lowres, seed=7, progress=False)
print(
    f"2016-07-07 degraded, no noise_level: SRNOISE {out.meta['srnoise']}, SRNOISRC {out.meta['srnoisrc']!r}, "
    f"SRNOICLV {out.meta['srnoiclv']}"
)

###############################################################################
# On real MDI input the texture comes out stronger than the level asked for: MDI's own noise at 2"
# is larger than that of HMI averaged to 2", which is all the model was trained on (no real MDI/HMI
# pairs; see the model card). The level still orders the texture.

mdi = sunpy.map.Map(MDI_AR_CUTOUT)
for level in levels:
    out = superresolve(mdi, seed=7, noise_level=level, progress=False)
    print(f"MDI 2010-10-15, noise_level {level:.1f}: measured {quiet_sun_noise(out):.2f}")

###############################################################################
# Without ``noise_level`` an MDI map gets today's HMI level at its place, as HMI would have seen
# it. A map of more than one tile, a full disk say (25 tiles of the default), is placed tile by
# tile: each tile gets the level of its own place, as the same cut-out alone would, and the header
# records their range as ``SRNOILO`` to ``SRNOIHI`` (``SRNOISE`` stays the map's). The MDI cut-out
# is one tile of the default; cut into tiles of 96 input pixels it shows the rule on a small scale.

out = superresolve(mdi, seed=7, progress=False)
print(f"MDI, one tile: SRNOISE {out.meta['srnoise']}, SRNOICLV {out.meta['srnoiclv']}")
out = superresolve(mdi, seed=7, tile_size=96, progress=False)
print(
    f"MDI, 4 tiles: SRNOISE {out.meta['srnoise']}, tiles from SRNOILO {out.meta['srnoilo']} "
    f"to SRNOIHI {out.meta['srnoihi']}"
)
