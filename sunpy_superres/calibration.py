"""
Intensity calibration and network normalisation of line-of-sight magnetograms.

Two value-changing steps happen before a model sees a magnetogram, and both are recorded in the
output header:

1. **Cross-calibration.** MDI level 1.8 magnetograms read about 1.4 times stronger than HMI for the
   same field; following Liu et al. (2012) and Ramunno et al. (2025, section 2) MDI data are divided
   by 1.4 to bring them to HMI levels.
2. **Normalisation.** Networks work in [-1, 1] units over +-3000 G (Ramunno et al. 2025, section 2).
   The scaling is linear and exactly invertible; values beyond +-3000 G are *not* clipped here, see
   `sunpy_superres.superresolve` for how the excess is carried past a network.

One fact about the target instrument is kept here too: the quiet-Sun noise of HMI's 720 s
magnetograms changed with its observing sequence in April 2016, and within a frame it rises from
disk centre to limb (`hmi_noise_level`); a noise-conditioned model told the noise of the HMI data a
map stands for makes that map's texture.
"""

import math
import warnings

import astropy.units as u
import numpy as np

__all__ = [
    "MDI_TO_HMI",
    "NORMALISATION_RANGE",
    "calibration_factor",
    "instrument_known",
    "HMI_NOISE_LEVELS",
    "HMI_NOISE_CADENCE",
    "warn_if_not_720s",
    "MOD_L_START",
    "hmi_observing_sequence",
    "hmi_noise_level",
    "HMI_NOISE_CLV",
    "hmi_noise_clv",
    "disk_radius",
    "normalise",
    "denormalise",
]

#: Multiplicative factor that brings MDI level 1.8 line-of-sight field to HMI levels.
#: Liu, Y. et al. 2012, Sol. Phys. 279, 295, "Comparison of line-of-sight magnetograms taken by the
#: Solar Dynamics Observatory/Helioseismic and Magnetic Imager and Solar and Heliospheric
#: Observatory/Michelson Doppler Imager".
MDI_TO_HMI = 1 / 1.4

#: Field strength mapped to +-1 for the networks (Ramunno et al. 2025, section 2).
NORMALISATION_RANGE = 3000 * u.G

LIU_2012 = "Liu et al. 2012, SoPh 279, 295"

_RANGE_GAUSS = NORMALISATION_RANGE.to_value(u.G)


def _header_instrument(smap):
    """The TELESCOP and INSTRUME keys of ``smap``, upper case, ``""`` where missing."""
    return tuple(str(smap.meta.get(key, "")).strip().upper() for key in ("telescop", "instrume"))


def is_mdi(smap):
    """Whether ``smap`` is a SOHO/MDI magnetogram (by map class or by its TELESCOP/INSTRUME keys)."""
    from sunpy.map.sources import MDIMap  # here: whoever passes a map has imported sunpy.map already

    if isinstance(smap, MDIMap):
        return True
    telescope, instrument = _header_instrument(smap)
    return telescope == "SOHO" and instrument.startswith("MDI")


def instrument_known(smap):
    """Whether the header says which instrument took ``smap`` (so that ``calibrate=True`` can decide)."""
    from sunpy.map.sources import HMIMap, MDIMap

    return isinstance(smap, MDIMap | HMIMap) or any(_header_instrument(smap))


def is_hmi(smap):
    """Whether ``smap`` is an SDO/HMI map (by map class or by its TELESCOP/INSTRUME keys)."""
    from sunpy.map.sources import HMIMap

    if isinstance(smap, HMIMap):
        return True
    telescope, instrument = _header_instrument(smap)
    return telescope == "SDO/HMI" or instrument.startswith("HMI")


#: When HMI's mod-L observing sequence began (JSOC, "Mod-C and Mod-L Processing": 2016.04.13_19:12:55,
#: FSN 104683793). Since then its 720 s products combine the filtergrams of both cameras (header
#: ``CAMERA = 3``, ``INSTRUME = 'HMI_COMBINED'``); before, the mod-C sequence took them from one
#: (``CAMERA = 1``, ``INSTRUME = 'HMI_SIDE1'``).
MOD_L_START = "2016-04-13T19:12:55"

#: Quiet-Sun noise of HMI 720 s line-of-sight magnetograms per observing sequence, as
#: `sunpy_superres.metrics.physics.quiet_sun_noise` measures it within 0.9 solar radii on the
#: training frames: 4.84 G on 2011-12-17 (mod-C) and 3.53 G on 2019-06-21 (mod-L).
HMI_NOISE_LEVELS = {"mod-C": 4.8 * u.G, "mod-L": 3.5 * u.G}

#: The cadence (s, header ``CADENCE``) of the series whose noise `HMI_NOISE_LEVELS` holds: hmi.M_720s.
HMI_NOISE_CADENCE = 720.0


def warn_if_not_720s(smap, stacklevel=2):
    """
    Warn where an HMI map's ``CADENCE`` says it is not of the 720 s series `HMI_NOISE_LEVELS` measured.

    HMI's 45 s magnetograms (hmi.M_45s) average fewer filtergrams and are noisier, so HMI's level
    would give an output with less texture, and less weak-field unsigned flux, than the data has.
    A map without ``CADENCE`` (written by other software) is taken as it comes.
    `hmi_noise_level` and `~sunpy_superres.superresolve` (for an HMI map given no ``noise_level``)
    call it.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        An HMI map.
    stacklevel : int, optional
        Where the warning points, as `warnings.warn` counts from the caller of this function.
    """
    try:
        cadence = float(smap.meta.get("cadence"))
    except (TypeError, ValueError):
        return
    if math.isfinite(cadence) and not math.isclose(cadence, HMI_NOISE_CADENCE, rel_tol=0.01):
        warnings.warn(
            f"this HMI map's CADENCE is {cadence:g} s, and HMI's noise levels (HMI_NOISE_LEVELS) are those "
            f"of its {HMI_NOISE_CADENCE:g} s magnetograms (hmi.M_720s), which average more filtergrams and "
            "are less noisy: the output gets less small-scale texture, and less weak-field unsigned flux, "
            "than these data have. Give noise_level, the data's own (measure it with "
            "sunpy_superres.metrics.physics.quiet_sun_noise), for an output that matches them.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


_ONE_CAMERA = ("HMI_SIDE1", "HMI_FRONT2")


def hmi_observing_sequence(smap):
    """
    The observing sequence (``"mod-C"`` or ``"mod-L"``) of an HMI map; `None` for another instrument.

    Read from the header's camera (``CAMERA`` 3 or ``INSTRUME = 'HMI_COMBINED'``: both cameras,
    mod-L; ``CAMERA`` 1 or 2, ``HMI_SIDE1`` or ``HMI_FRONT2``: one camera, mod-C); a header that
    says neither (a map written by other software, say) goes by its date against `MOD_L_START`.
    """
    if not is_hmi(smap):
        return None
    _, instrument = _header_instrument(smap)
    try:
        camera = int(smap.meta.get("camera"))  # a FITS integer, or a string from other writers
    except (TypeError, ValueError):
        camera = None
    if camera == 3 or instrument == "HMI_COMBINED":
        return "mod-L"
    if camera in (1, 2) or instrument in _ONE_CAMERA:
        return "mod-C"
    from astropy.time import Time  # here: the package's import stays light (issue 18, cold start)

    return "mod-L" if smap.date >= Time(MOD_L_START, scale="utc") else "mod-C"


def disk_radius(smap, step=1):
    """
    The distance of ``smap``'s pixel centres from the centre of the solar disk, in solar radii.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A map of the Sun: helioprojective, or in any frame sunpy can see from the map's observer
        (a Carrington CEA patch, say).
    step : int, optional
        Every ``step``-th pixel along each axis (1: all).

    Returns
    -------
    `numpy.ndarray`
        ``(ceil(ny / step), ceil(nx / step))``: the angle from the disk centre over the Sun's
        apparent radius (``RSUN_OBS``, or sunpy's value from the observer's distance); above 1 off
        the disk.
    """
    ny, nx = smap.data.shape
    y, x = np.mgrid[0:ny:step, 0:nx:step]
    if str(smap.wcs.wcs.ctype[0]).startswith("HPLN"):
        # The world values of the WCS, not SkyCoords: a full disk's 16 million pixels in a second.
        lon, lat = smap.wcs.pixel_to_world_values(x, y)
        unit_lon, unit_lat = (u.Unit(c) for c in smap.wcs.world_axis_units[:2])
        tx = u.Quantity(lon, unit_lon).to_value(u.deg)
        tx = (tx + 180) % 360 - 180  # helioprojective longitude about 0, not 360
        ty = u.Quantity(lat, unit_lat).to_value(u.deg)
    else:  # another frame (a CEA patch, say): seen from the map's observer
        from sunpy.coordinates import Helioprojective

        seen = smap.wcs.pixel_to_world(x, y).transform_to(Helioprojective(observer=smap.observer_coordinate))
        tx, ty = seen.Tx.to_value(u.deg), seen.Ty.to_value(u.deg)
    return np.hypot(tx, ty) / smap.rsun_obs.to_value(u.deg)


#: HMI's quiet-Sun noise from disk centre to limb, relative to its frame's level (`HMI_NOISE_LEVELS`,
#: within 0.9 solar radii): (distance from disk centre in solar radii, ratio), the median of 256x256
#: boxes per ring of 0.1 radii, averaged over the two training frames, whose own ratios agree to
#: 0.02 inside 0.9 radii (``python tools/measure_hmi_noise_clv.py``). The Sun is darker and the line
#: weaker towards the limb; between the rings' centres the ratio is interpolated, beyond them held.
HMI_NOISE_CLV = (
    (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95),
    (0.857, 0.860, 0.875, 0.912, 0.946, 0.981, 1.015, 1.068, 1.123, 1.219),
)


def hmi_noise_clv(smap, boxes=None):
    """
    How much HMI's quiet-Sun noise where ``smap`` lies differs from its frame's level.

    The mean of `HMI_NOISE_CLV` over the map's pixels on the disk (within one solar radius): about
    0.86 for a map at disk centre, 1.2 at the limb, near 1 for a full disk.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A map of the Sun whose coordinates sunpy can place on the disk.
    boxes : sequence of (slice, slice), optional
        Parts of the map, as ``(rows, columns)`` slices of its pixels (the tiles of
        `~sunpy_superres.superresolve`, say): the ratio of each, the mean over its own pixels on the
        disk.

    Returns
    -------
    float or None, or list of them
        The ratio (one per box with ``boxes``); `None` where the map, or the box, has no pixel on the
        disk, or the map cannot be placed on it.
    """
    if boxes is None:
        step = max(1, -(-max(smap.data.shape) // 64))  # a grid of at most 64 x 64 points is plenty
    else:
        boxes = list(boxes)
        step = max(1, -(-max(smap.data.shape) // 512))  # a finer grid, so that small boxes get points
    try:
        r = disk_radius(smap, step)
    except Exception:  # noqa: BLE001 - a map sunpy cannot place (no observer, an odd WCS)
        return None if boxes is None else [None] * len(boxes)
    if boxes is None:
        return _mean_clv(r)
    # Grid point i is pixel i * step: the points of pixels [start, stop) are [ceil(start / step),
    # ceil(stop / step)).
    return [
        _mean_clv(r[-(-ys.start // step) : -(-ys.stop // step), -(-xs.start // step) : -(-xs.stop // step)])
        for ys, xs in boxes
    ]


def _mean_clv(r):
    """The mean of `HMI_NOISE_CLV` over the distances ``r`` (solar radii) on the disk; `None` if none is."""
    on_disk = r[np.isfinite(r) & (r <= 1)]
    if not on_disk.size:
        return None
    return float(np.mean(np.interp(on_disk, *HMI_NOISE_CLV)))


def hmi_noise_level(smap, *, place=True):
    """
    The quiet-Sun noise of the HMI data ``smap`` is, or was made from, where it lies on the disk.

    What `~sunpy_superres.superresolve` asks of a noise-conditioned model for an HMI map given
    without ``noise_level``, such as one degraded to MDI's resolution to test a model against its
    original: the output then has the texture, and so the weak-field unsigned flux, of the HMI data
    it is compared with. (A map of several tiles, a full disk say, is asked this tile by tile, with
    each tile's own `hmi_noise_clv`.)

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A line-of-sight magnetogram.
    place : bool, optional
        Include the rise of the noise from disk centre to limb (`hmi_noise_clv`), where the map can
        be placed on the disk; `False` gives its frame's level.

    Returns
    -------
    `~astropy.units.Quantity` or None
        The level in G of its observing sequence (`hmi_observing_sequence`, `HMI_NOISE_LEVELS`),
        times the centre-to-limb factor with ``place``; `None` for a map of another instrument.
    """
    sequence = hmi_observing_sequence(smap)
    if sequence is None:
        return None
    warn_if_not_720s(smap)
    clv = hmi_noise_clv(smap) if place else None
    return HMI_NOISE_LEVELS[sequence] * (1 if clv is None else clv)


def calibration_factor(smap, calibrate=True):
    """
    The factor by which ``smap`` is multiplied to bring it to HMI levels.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A line-of-sight magnetogram.
    calibrate : bool or float, optional
        ``True`` (default) applies the MDI-to-HMI factor 1/1.4 (Liu et al. 2012) to MDI maps and 1 to
        every other instrument; ``False`` applies none; a number is used as the factor as it is
        (for experts with their own cross-calibration).

    Returns
    -------
    factor : float
        Dimensionless multiplicative factor.
    reference : str
        Where the factor comes from, written into the output header.

    Raises
    ------
    ValueError
        If a numeric ``calibrate`` is not finite and positive.
    """
    if calibrate is True:
        if is_mdi(smap):
            return MDI_TO_HMI, LIU_2012
        return 1.0, "none (not MDI)" if instrument_known(smap) else "none (instrument unknown)"
    if calibrate is False or calibrate is None:
        return 1.0, "none (calibrate=False)"
    try:
        factor = float(calibrate)
    except (TypeError, ValueError):
        factor = np.nan
    if isinstance(calibrate, str) or not np.isfinite(factor) or factor <= 0:
        raise ValueError(
            f"calibrate={calibrate!r} is not a positive finite factor; "
            "pass True (MDI 1/1.4), False, or a positive number."
        )
    return factor, "user-supplied factor"


def normalise(data_gauss):
    """
    Scale field values in Gauss to network units, ``B / 3000 G``.

    Parameters
    ----------
    data_gauss : `numpy.ndarray`
        Field in G.

    Returns
    -------
    `numpy.ndarray`
        Field in units of 3000 G, as float32. Not clipped: values beyond +-3000 G map beyond +-1.
    """
    return (np.asarray(data_gauss, dtype=np.float64) / _RANGE_GAUSS).astype(np.float32)


def denormalise(data_units):
    """Invert `normalise`: network units back to Gauss (float32)."""
    return (np.asarray(data_units, dtype=np.float64) * _RANGE_GAUSS).astype(np.float32)
