"""
Map validation and header arithmetic for a grid that is ``factor`` times finer.

The output WCS is *derived* from the input, exactly as `sunpy.map.GenericMap.resample` derives it,
never copied: for a factor f every pixel of the input becomes f x f pixels of the output, so

* ``CDELTi' = CDELTi / f`` (and the CD matrix scaled by 1/f),
* ``CRPIXi' = f * (CRPIXi - 0.5) + 0.5``, because FITS pixel i spans [i - 0.5, i + 0.5]: the input
  grid's lower edge (0.5) must stay the output grid's lower edge; the naive ``f * CRPIXi`` shifts the
  image by (f - 1)/2 output pixels (about 1" at the corners of an MDI full disk),
* ``NAXISi' = f * NAXISi``,

while the rotation (PC/CROTA), observer, date and solar radius are kept. Instrument keys that count
in pixels (MDI ``X0``/``Y0``/``R_SUN``, HMI ``X0_MP``/``Y0_MP``/``R_SUN``/``IMSCL_MP``, ``CROP_RAD``)
are converted to the new grid; statistics of the old data (``DATAMIN`` ... ``TOT_FLUX``) and the
integer encoding (``BSCALE``/``BZERO``/``BLANK``) are dropped because they no longer describe it.
"""

import copy
import math
import numbers
import warnings

import astropy.units as u
import numpy as np
from sunpy.coordinates import Helioprojective
from sunpy.map import GenericMap

__all__ = [
    "validate_map",
    "complete_wcs",
    "finer_meta",
    "map_unit",
    "map_data",
    "PROVENANCE_KEYS",
    "MAX_FIELD",
]

#: Accepted pixel scales when ``check_scale=True``: MDI is 1.986"/pixel; the method is trained at 2".
SCALE_RANGE = (1.0, 4.0) * u.arcsec / u.pix
MIN_SIDE = 16
#: Strongest line-of-sight field accepted: sunspot umbrae reach about 4000-6000 G; a map beyond
#: 10**5 G is in another unit or unscaled (and would overflow the float32 output).
MAX_FIELD = 1e5 * u.G

# Keys in pixel units on a 0-based pixel grid (centre of first pixel = 0): x' = f*(x + 0.5) - 0.5.
_ZERO_BASED_PIXEL_KEYS = ("x0", "y0", "x0_mp", "y0_mp")
# Lengths in pixels: x' = f*x.
_PIXEL_LENGTH_KEYS = ("r_sun", "crop_rad")
# Angular size of a pixel: x' = x/f.
_PIXEL_SCALE_KEYS = ("imscl_mp",)
# Pixel scale and CD matrix: x' = x/f.
_SCALE_KEYS = ("cdelt1", "cdelt2", "cd1_1", "cd1_2", "cd2_1", "cd2_2")
# Describe the old data or its integer encoding; they would be wrong for the new data.
_STALE_KEYS = (
    "datamin",
    "datamax",
    "datamedn",
    "datamean",
    "datarms",
    "dataskew",
    "datakurt",
    "datavals",
    "missvals",
    "datap01",
    "datap10",
    "datap25",
    "datap75",
    "datap90",
    "datap95",
    "datap98",
    "datap99",
    "tot_flux",
    "avg_flux",
    "mean_fld",
    "totvals",
    "bscale",
    "bzero",
    "blank",
    "checksum",
    "datasum",
    "zblank",
)

#: Header keys written by `sunpy_superres.superresolve`, with their meaning.
PROVENANCE_KEYS = {
    "SRFACTOR": "super-resolution factor per axis",
    "SRMODEL": "model name",
    "SRMODREV": "model weights revision",
    "SRSEED": "random seed used (-1: deterministic model)",
    "SRSAMPLE": "number of stochastic samples",
    "SRVERS": "sunpy-superres version",
    "SRCALFAC": "calibration factor applied to the input",
    "SRCALREF": "source of the calibration factor",
    "SRNORM": "[G] field mapped to +-1 for the network",
    "SRNCLIP": "input pixels beyond +-SRNORM (excess kept)",
    "SRCONSIS": "output block means projected onto the input",
    "SRCONMET": "consistency method (backprojection, block, none)",
    "SRPREC": "arithmetic of the networks (fp32, bf16, fp16)",
    "SRSTEPS": "denoiser evaluations per tile (diffusion)",
    "SRSCHED": "sampler (ddpm, ddim, dpm-solver++)",
    "SRTSTART": "timestep at which sampling starts (999: all)",
    "SRSPACE": "spacing of the sampler steps (linear, log-snr)",
    "SRNOISE": "[G] target quiet-Sun noise level (diffusion)",
    "SRNOISRC": "source of SRNOISE (model, asked, HMI mod-C/L)",
    "SRNOICLV": "HMI noise at the map's place / frame's level",
    "SRNOILO": "[G] lowest level of a tile (each at its place)",
    "SRNOIHI": "[G] highest level of a tile (each at its place)",
    "SRREGREV": "regression weights revision",
    "SRUNCAL": "calibration of the std (none: raw sample spread)",
    "SRANTI": "antithetic pairs (T: noise negated, polarity)",
    "SRSYMM": "samples drawn under flips of the input",
}


def _magnetic_unit_ok(unit):
    return unit is not None and unit.is_equivalent(u.G)


def map_unit(smap):
    """
    The unit of a map's data, read leniently.

    sunpy reads ``BUNIT`` in the FITS unit syntax only, which has no maxwell: ``Mx/cm2``,
    ``Mx cm-2`` and ``Mx/cm^2``, common in magnetogram headers (the 2012 SHARP files, older MDI
    products) and equal to G for a line-of-sight flux density, come out as no unit. Here a ``BUNIT``
    that sunpy could not read is parsed again in astropy's generic syntax.

    Returns
    -------
    `~astropy.units.UnitBase` or None
        `None` when there is no ``BUNIT`` or it cannot be read in either syntax.
    """
    if smap.unit is not None:
        return smap.unit
    bunit = str(smap.meta.get("bunit") or "").strip()
    if not bunit:
        return None
    try:
        return u.Unit(bunit)  # astropy's generic syntax, its default
    except ValueError:
        return None


def map_data(smap, unit=None):
    """
    A map's data as a new float64 array, masked pixels as NaN: the one way the package reads a map.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        The map; never modified.
    unit : `~astropy.units.UnitBase`, optional
        Convert to this unit from the map's (read leniently, `map_unit`); the values as they are
        stored when not given.

    Returns
    -------
    `numpy.ndarray`
        A copy: changing it leaves the map as it was.

    Raises
    ------
    astropy.units.UnitConversionError
        If the map's unit cannot be converted to ``unit``.
    """
    masked = False if smap.mask is None else smap.mask
    data = np.where(masked, np.nan, np.asarray(smap.data, dtype=np.float64))  # always a new array
    if unit is not None:
        scale = (1 * map_unit(smap)).to_value(unit)
        if scale != 1:
            data *= scale
    return data


def complete_wcs(smap):
    """
    ``smap``, or a new map whose CD matrix has the off-diagonal terms its header left out.

    The FITS standard (Greisen & Calabretta 2002, sec. 2.1.2) makes a missing ``CDi_j`` zero; sunpy
    cannot build the WCS of such a header (KeyError ``cd1_2``). The input map is not changed.
    """
    keys = set(smap.meta)
    missing = {"cd1_2", "cd2_1"} - keys
    if not (missing and keys.issuperset(("cd1_1", "cd2_2"))):
        return smap
    new = copy.deepcopy(smap.meta)
    new.update(dict.fromkeys(missing, 0.0))
    with warnings.catch_warnings():
        # sunpy's MDIMap sets its colour limits with nanmax; an all-NaN map is refused later, by
        # validate_map, with a message that says what to do.
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        return smap._new_instance(smap.data, new, plot_settings=dict(smap.plot_settings), mask=smap.mask)


def validate_map(smap, *, check_scale=True, scale_range=SCALE_RANGE):
    """
    Check that ``smap`` is a magnetogram that `sunpy_superres.superresolve` can work on.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        The input line-of-sight magnetogram.
    check_scale : bool, optional
        If `True` (default) the pixel scale must lie within ``scale_range``. The models are trained
        at 2"/pixel; experts may switch the check off for other instruments at their own risk.
    scale_range : `~astropy.units.Quantity`, optional
        Inclusive (min, max) pixel scale in arcsec/pixel. Default 1-4"/pixel.

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        For data that are not 2-D, a unit that is not a magnetic field, coordinates that are not
        helioprojective, no or zero pixel scale, non-square pixels (the sign of CDELT, a mirrored
        axis, is allowed), a pixel scale out of range, fewer than 16 pixels a side, unsigned or
        non-real data, all-NaN data, or infinite values. Each
        message names the problem and what to do about it.
    """
    # The checks run in this order: each message assumes the ones before it passed.
    _validate_type(smap)
    smap = complete_wcs(smap)
    _validate_dimensions(smap)
    unit = _validate_unit(smap)
    _validate_cdelt_values(smap)
    _validate_frame(smap)
    _validate_pixel_scale(smap, check_scale, scale_range)
    _validate_size(smap)
    _validate_data(smap, unit)


def _validate_type(smap):
    """Refuse anything that is not a sunpy Map."""
    if not isinstance(smap, GenericMap):
        raise TypeError(
            f"superresolve needs a sunpy Map, got {type(smap).__name__}. "
            "Read the file with sunpy.map.Map('file.fits') or build one with sunpy.map.Map(data, header)."
        )


def _validate_dimensions(smap):
    """Refuse data that are not one 2-D image."""
    if smap.data.ndim != 2:
        raise ValueError(
            f"the map's data are {smap.data.ndim}-D with shape {smap.data.shape}; a magnetogram is 2-D. "
            "Pass one image at a time (for a cube, loop over its 2-D slices)."
        )


def _validate_unit(smap):
    """The map's unit (`map_unit`), refused unless it is a magnetic field."""
    unit = map_unit(smap)
    if not _magnetic_unit_ok(unit):
        bunit = str(smap.meta.get("bunit") or "").strip()
        found = (
            "no unit (BUNIT missing)"
            if not bunit
            else f"BUNIT {bunit!r}, which is not a unit"
            if unit is None
            else f"unit {unit}"
        )
        raise ValueError(
            f"the map has {found}, which is not a magnetic field. superresolve works on line-of-sight "
            "magnetograms in G, T or Mx/cm2; if the data are in Gauss, set smap.meta['bunit'] = 'G'."
        )
    return unit


def _validate_cdelt_values(smap):
    """Refuse a CDELT1/CDELT2 present in the header but not a finite, non-zero number."""
    meta_keys = set(smap.meta)
    for key in ("cdelt1", "cdelt2"):
        if key in meta_keys:
            try:
                value = float(smap.meta[key])
            except (TypeError, ValueError):
                value = math.nan
            if not (math.isfinite(value) and value != 0):
                raise ValueError(
                    f"the map's {key.upper()} is {smap.meta[key]!r}; a WCS needs a finite, non-zero pixel scale. "
                    "Set it (arcsec/pixel) to the true scale first."
                )


def _validate_frame(smap):
    """Refuse coordinates that are not helioprojective, or that sunpy cannot build."""
    frame = smap.coordinate_frame
    ctype = ", ".join(map(str, smap.coordinate_system))
    if frame is None:
        raise ValueError(
            f"sunpy could not build the map's coordinates from its header (CTYPE {ctype}): the CTYPE is "
            "not a known coordinate system, or the CD or PC matrix is singular. The models need "
            "helioprojective coordinates (HPLN-TAN, HPLT-TAN); fix the header's CTYPE and CDi_j / PCi_j "
            "keys first."
        )
    if not isinstance(frame, Helioprojective):
        raise ValueError(
            f"the map is in {type(frame).__name__} coordinates (CTYPE {ctype}), not helioprojective; the models "
            "work on images as the instrument saw them (HPLN/HPLT, arcsec). Reproject it first, e.g. "
            "smap.reproject_to(header) with a helioprojective header at about 2 arcsec/pixel."
        )


def _validate_pixel_scale(smap, check_scale, scale_range):
    """Refuse a missing or non-square pixel scale, and (if ``check_scale``) one out of range."""
    meta_keys = set(smap.meta)
    if not (meta_keys.issuperset(("cdelt1", "cdelt2")) or meta_keys.issuperset(("cd1_1", "cd2_2"))):
        raise ValueError(
            "the map has no pixel scale (CDELT1/CDELT2 or a CD matrix missing from its header), so sunpy "
            "assumes 1 arcsec/pixel and the output would claim a scale it never had. Set "
            "smap.meta['cdelt1'] and smap.meta['cdelt2'] (arcsec/pixel) to the true scale first."
        )
    # Magnitudes: a negative CDELT is a mirrored axis, a valid WCS that finer_meta carries over.
    # Not zero: a zero CDELT was refused above, and a singular CD matrix has no frame.
    scale_x, scale_y = (abs(s.to_value(u.arcsec / u.pix)) for s in smap.scale)
    if not np.isclose(scale_x, scale_y, rtol=1e-3):
        raise ValueError(
            f"the map's pixels are not square ({scale_x:.4f} x {scale_y:.4f} arcsec/pixel). "
            "Resample it to square pixels first, e.g. with smap.reproject_to() or smap.resample()."
        )
    if check_scale:
        lo, hi = scale_range.to_value(u.arcsec / u.pix)
        if not lo <= scale_x <= hi:
            raise ValueError(
                f"the pixel scale is {scale_x:.3f} arcsec/pixel, outside the {lo:g}-{hi:g} arcsec/pixel "
                "the models were trained for (MDI is 2 arcsec/pixel). Resample the map to about 2 "
                "arcsec/pixel, or pass check_scale=False if you know what you are doing."
            )


def _validate_size(smap):
    """Refuse a map with fewer than `MIN_SIDE` pixels a side."""
    ny, nx = smap.data.shape
    if min(nx, ny) < MIN_SIDE:
        raise ValueError(
            f"the map is {nx}x{ny} pixels; at least {MIN_SIDE} pixels a side are needed. "
            "Use a larger cut-out (submap) of the magnetogram."
        )


def _validate_data(smap, unit):
    """Refuse non-real or unsigned data, no usable pixel, a field beyond `MAX_FIELD`, infinities."""
    data = np.asarray(smap.data)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"the map's data have dtype {data.dtype}; a real-valued magnetogram is needed.")
    if data.dtype.kind == "u":
        raise ValueError(
            f"the map's data are {data.dtype} (unsigned), which cannot hold a line-of-sight field of both "
            "polarities: it looks like an image (e.g. a quick-look), not a magnetogram. Use the magnetogram "
            "data in G."
        )
    masked = np.broadcast_to(np.asarray(smap.mask, bool), data.shape)  # a mask of None: nothing masked
    finite = np.isfinite(data) & ~masked
    if not finite.any():
        raise ValueError(
            "every pixel of the map is NaN, infinite or masked; there is nothing to super-resolve. "
            "Check that the right HDU of the file was read, and the map's mask."
        )
    strongest = (np.max(np.abs(data[finite])) * unit).to(u.G)
    if strongest > MAX_FIELD:
        raise ValueError(
            f"the map's field reaches {strongest.value:.3g} G; no solar line-of-sight field comes near "
            f"{MAX_FIELD.value:g} G. Check BUNIT (the data may be in another unit, or raw counts) "
            "and the data's scaling (BSCALE/BZERO)."
        )
    if np.isinf(data[~masked]).any():
        n_inf = int(np.isinf(data[~masked]).sum())
        raise ValueError(
            f"the map has {n_inf} infinite pixel(s). Replace them with NaN (missing) or a valid "
            "value first, e.g. data[np.isinf(data)] = np.nan."
        )


def finer_meta(meta, factor, shape):
    """
    Derive the header of the ``factor``-times finer grid from ``meta``.

    Parameters
    ----------
    meta : `sunpy.util.MetaDict`
        Header of the input map (not modified).
    factor : int
        Refinement per axis.
    shape : tuple of int
        ``(ny, nx)`` of the input data.

    Returns
    -------
    `sunpy.util.MetaDict`
        A new header for the finer grid.
    """
    if not isinstance(factor, numbers.Integral) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    f = int(factor)
    # Deep: MetaDict.copy() shares the "keycomments" dict, and popping a stale key from the copy
    # would delete its comment from the caller's header too.
    new = copy.deepcopy(meta)
    for key in _SCALE_KEYS:
        if key in new:
            new[key] = float(new[key]) / f
    for axis in (1, 2):
        key = f"crpix{axis}"
        new[key] = f * (float(meta[key]) - 0.5) + 0.5 if key in meta else (f * (shape[2 - axis]) + 1) / 2
    new["naxis1"] = shape[1] * f
    new["naxis2"] = shape[0] * f
    for key in _ZERO_BASED_PIXEL_KEYS:
        if key in new:
            new[key] = f * (float(new[key]) + 0.5) - 0.5
    for key in _PIXEL_LENGTH_KEYS:
        if key in new:
            new[key] = float(new[key]) * f
    for key in _PIXEL_SCALE_KEYS:
        if key in new:
            new[key] = float(new[key]) / f
    for key in _STALE_KEYS:
        new.pop(key, None)
    return new


def add_history(meta, line):
    """Append ``line`` to the HISTORY of ``meta`` (in place), as sunpy does for its own operations."""
    old = str(meta.get("history") or "")
    meta["history"] = f"{old}\n{line}" if old.strip() else line
