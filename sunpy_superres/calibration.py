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
"""

import astropy.units as u
import numpy as np

__all__ = [
    "MDI_TO_HMI",
    "NORMALISATION_RANGE",
    "calibration_factor",
    "instrument_known",
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
