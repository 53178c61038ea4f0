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
magnetograms changed with its observing sequence in April 2016 (`hmi_noise_level`), and a
noise-conditioned model told the noise of the HMI data a map stands for makes that map's texture.
"""

import astropy.units as u
import numpy as np

__all__ = [
    "MDI_TO_HMI",
    "NORMALISATION_RANGE",
    "calibration_factor",
    "instrument_known",
    "HMI_NOISE_LEVELS",
    "MOD_L_START",
    "hmi_observing_sequence",
    "hmi_noise_level",
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


def hmi_noise_level(smap):
    """
    The quiet-Sun noise of the HMI data ``smap`` is, or was made from (`HMI_NOISE_LEVELS`).

    What `~sunpy_superres.superresolve` asks of a noise-conditioned model for an HMI map given
    without ``noise_level``, such as one degraded to MDI's resolution to test a model against its
    original: the output then has the texture, and so the weak-field unsigned flux, of the HMI data
    it is compared with.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A line-of-sight magnetogram.

    Returns
    -------
    `~astropy.units.Quantity` or None
        The level in G of its observing sequence (`hmi_observing_sequence`); `None` for a map of
        another instrument.
    """
    sequence = hmi_observing_sequence(smap)
    return None if sequence is None else HMI_NOISE_LEVELS[sequence]


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
