"""
Paired MDI/HMI training data for fine-tuning (Ramunno et al. 2025, section 7).

A training pair is an MDI magnetogram (the input, 2"/pixel) and the HMI magnetogram of the same time
on *exactly* the grid that `sunpy_superres.superresolve` gives the super-resolved MDI map: the
4x-finer MDI grid of `sunpy_superres.maps.finer_meta`, seen from SOHO. So a model's output and its
target agree pixel for pixel, header for header.

Which grid, and why
-------------------
HMI is reprojected onto the 4x-finer MDI grid; MDI is never resampled.

* At inference the model sees raw MDI pixels on MDI's own grid, with MDI's noise and PSF. Training
  inputs must have the same statistics, so they must not be interpolated: interpolating MDI would
  smooth its noise and change exactly the small scales the model learns to add.
* The target grid (0.4965"/pixel) is within 2 % of HMI's 0.504"/pixel, so resampling HMI onto it
  loses little, and it is the only grid on which the output can be compared with the target.
* HMI is seen from SDO (geosynchronous orbit), MDI from SOHO on its halo orbit about L1 (about 1 %
  closer to the Sun, up to about a quarter of a degree off the Sun-Earth line): reprojection goes
  through heliographic coordinates on the solar surface (sunpy's default for on-disk helioprojective
  points), so each HMI pixel lands where SOHO sees that point of the surface. A time difference
  between the two frames is undone by differential rotation
  (`sunpy.coordinates.propagate_with_solar_surface`). Off-disk pixels are NaN.
* Interpolation, not area weighting. The field (G, a flux density) is an intensive quantity: the
  value of a target pixel is the field there, so point interpolation is physically right at a
  resampling ratio near 1, and the total flux ``sum(B * area)`` follows from the target pixel areas.
  Area-weighted ("flux-conserving", ``algorithm="exact"``) or adaptive Gaussian resampling
  averages over a pixel-sized footprint: measured on the shipped HMI cut-out, a shift-and-back round
  trip keeps 87 % of the power at spatial frequencies above half Nyquist with bicubic interpolation,
  35 % with ``"exact"`` and 18 % with ``"adaptive"`` (Gaussian kernel), and the adaptive Gaussian
  kernel blurs even an identity resampling (9.6 G rms). The small scales are what the super-resolution
  is scored on (the paper's Fig. 10), so bicubic interpolation is the default; the other
  algorithms of `reproject` stay available through ``algorithm=``.

The MDI data are multiplied by 1/1.4 to HMI levels (Liu et al. 2012), as `superresolve` does at
inference, and both maps are cropped around the most intense active region (256x256 MDI pixels in
the paper) before anything is resampled.

No co-temporal MDI/HMI pairs ship with the package: `degrade_to_mdi` makes an MDI-like map from an
HMI map (PSF, 4x4 block mean, noise, MDI intensity scale) so that the pairing runs on real HMI data
here and, unchanged, on real pairs from JSOC (`fetch_pair`).

References
----------
.. [1] Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent
   diffusion model approach", A&A 698, A140, sections 2, 4 and 7.
.. [2] Liu, Y. et al. 2012, Sol. Phys. 279, 295 (MDI = 1.4 x HMI).
.. [3] Yeo, K. L., Solanki, S. K. & Krivova, N. A. 2024, A&A 688, A48, Table 2 (the Gaussian of
   3.32" FWHM that matches HMI to MDI resolution).
.. [4] Scherrer, P. H. et al. 1995, Sol. Phys. 162, 129 (MDI: 20 G noise per 1-minute magnetogram).
"""

import dataclasses
import datetime
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.time import Time
from scipy.ndimage import gaussian_filter
from sunpy.coordinates import propagate_with_solar_surface
from sunpy.map import GenericMap
from sunpy.time import parse_time

from ..calibration import LIU_2012, MDI_TO_HMI, NORMALISATION_RANGE
from ..consistency import repeat_blocks
from ..maps import (
    _PIXEL_LENGTH_KEYS,
    _PIXEL_SCALE_KEYS,
    _STALE_KEYS,
    _ZERO_BASED_PIXEL_KEYS,
    add_history,
    finer_meta,
)
from ..metrics.regions import most_intense_region, region_crop

__all__ = [
    "MagnetogramPair",
    "degrade_to_mdi",
    "make_pair",
    "make_synthetic_pair",
    "split_paper_dates",
    "fetch_pair",
    "MDI_PSF_FWHM",
    "MDI_NOISE",
    "FINETUNE_PERIOD",
    "TEST_PERIOD",
    "JSOC_EMAIL_VARIABLE",
    "MDI_SERIES",
    "HMI_SERIES",
]

#: FWHM of the Gaussian applied to HMI before the 4x4 block mean to mimic MDI's optics: the kernel
#: that matches HMI to MDI in Yeo et al. (2024, Table 2, 3.32"), rounded. An estimate: fit it to
#: real pairs (`fetch_pair`) when they are at hand.
MDI_PSF_FWHM = 3.3 * u.arcsec
#: rms of the noise added at MDI levels: 20 G per 1-minute MDI magnetogram (Scherrer et al. 1995),
#: divided by sqrt(5) for the five 1-minute magnetograms averaged into each 96-minute one. HMI's own
#: noise, about 2 G after the 4x4 mean and the x1.4, adds in quadrature (9.2 G in all). An estimate.
MDI_NOISE = 9.0 * u.G
#: Fine-tuning pairs of the paper: 1 May - 31 August 2010 (inclusive days, UTC; section 7).
FINETUNE_PERIOD = ("2010-05-01", "2010-08-31")
#: Test pairs of the paper: 1 September 2010 - 11 April 2011 (the end of MDI; section 7).
TEST_PERIOD = ("2010-09-01", "2011-04-11")
#: Environment variable holding the e-mail address registered with JSOC exports.
JSOC_EMAIL_VARIABLE = "JSOC_EMAIL"
MDI_SERIES = "mdi.fd_M_96m_lev182"
HMI_SERIES = "hmi.M_720s"

# Instrument keys that describe which instrument took the data (the grid keys describe where they lie).
_INSTRUMENT_KEYS = ("telescop", "instrume", "detector", "wavelnth", "waveunit", "content", "origin", "bunit")


def _field_gauss(smap, what):
    """A map's data in G as a new float64 array (masked pixels NaN); checks the map."""
    if not isinstance(smap, GenericMap):
        raise TypeError(f"{what} must be a sunpy Map, got {type(smap).__name__}")
    if smap.unit is None or not smap.unit.is_equivalent(u.G):
        raise ValueError(
            f"{what} has unit {smap.unit}, not a magnetic field; set meta['bunit'] = 'G' if it is in G"
        )
    data = np.array(smap.data, dtype=np.float64) * (1 * smap.unit).to_value(u.G)
    if smap.mask is not None and np.any(smap.mask):
        data[np.broadcast_to(smap.mask, data.shape)] = np.nan
    return data


def _coarser_pixel_keys(meta, factor):
    """Instrument keys in pixel units of ``meta`` (a ``factor``-times coarser grid), in place."""
    for key in _ZERO_BASED_PIXEL_KEYS:
        if key in meta:
            meta[key] = (float(meta[key]) + 0.5) / factor - 0.5
    for key in _PIXEL_LENGTH_KEYS:
        if key in meta:
            meta[key] = float(meta[key]) / factor
    for key in _PIXEL_SCALE_KEYS:
        if key in meta:
            meta[key] = float(meta[key]) * factor
    for key in _STALE_KEYS:
        meta.pop(key, None)


@u.quantity_input
def degrade_to_mdi(
    hmi_map,
    *,
    factor=4,
    psf_fwhm: u.arcsec = MDI_PSF_FWHM,
    noise: u.G = MDI_NOISE,
    mdi_level=1 / MDI_TO_HMI,
    seed=None,
):
    """
    An MDI-like magnetogram made from an HMI magnetogram, for pairs where no real MDI exists.

    Steps, in the order an MDI measurement would see the field:

    1. convolve with a Gaussian of FWHM ``psf_fwhm`` (MDI's optics beyond HMI's), normalised over
       valid pixels so NaN (off-disk) pixels neither spread nor bias the edge of the disk;
    2. average every ``factor x factor`` block (0.5"/pixel -> 2"/pixel; the paper's degradation,
       section 4); a block with a NaN is NaN;
    3. multiply by ``mdi_level`` (1.4: MDI reads 1.4 times HMI, Liu et al. 2012), so that pairing the
       result exercises the 1/1.4 calibration as real MDI data do;
    4. add Gaussian noise of rms ``noise`` (at MDI levels), seeded.

    The grid is the ``factor``-times coarser one (sunpy's ``superpixel``): applying
    `sunpy_superres.maps.finer_meta` to the result gives back the grid of ``hmi_map``. The observer
    and time stay HMI's; the instrument keys say SDO/HMI, with ``DEGPSF``, ``DEGNOISE``, ``DEGLEVEL``
    and ``DEGSEED`` and a HISTORY line recording the degradation.

    Parameters
    ----------
    hmi_map : `~sunpy.map.GenericMap`
        HMI line-of-sight magnetogram (G or Mx/cm2); both sides multiples of ``factor``.
    factor : int, optional
        Block size (4: HMI 0.5"/pixel to MDI 2"/pixel).
    psf_fwhm : `~astropy.units.Quantity`, optional
        FWHM of the Gaussian PSF (arcsec); 0 for none. Default `MDI_PSF_FWHM` (3.3").
    noise : `~astropy.units.Quantity`, optional
        rms of the additive noise in G at MDI levels; 0 for none. Default `MDI_NOISE` (9 G).
    mdi_level : float, optional
        Factor from HMI to MDI levels (default 1.4).
    seed : int, optional
        Seed of the noise (rule 7 of docs/dev/design.rst); `None` draws fresh noise.

    Returns
    -------
    `~sunpy.map.GenericMap`
        The degraded map, float32, in G at MDI levels.

    Raises
    ------
    TypeError
        If ``hmi_map`` is not a Map.
    ValueError
        If its unit is not magnetic, its shape is not a multiple of ``factor``, or a parameter is
        negative.

    References
    ----------
    .. [1] Ramunno et al. 2025, section 4 (4x4 block mean); Liu et al. 2012 (1.4); Yeo et al. 2024,
       Table 2 (PSF); Scherrer et al. 1995 (noise).
    """
    data = _field_gauss(hmi_map, "hmi_map")
    factor = int(factor)
    _check_degradation(data.shape, factor, psf_fwhm, noise, mdi_level)
    if psf_fwhm > 0 * u.arcsec:
        data = _gaussian_psf(data, psf_fwhm, hmi_map.scale)
    ny, nx = data.shape
    coarse = data.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    coarse *= mdi_level
    rng = np.random.default_rng(seed)
    coarse += rng.normal(0.0, noise.to_value(u.G), coarse.shape) * np.isfinite(coarse)
    meta = _degraded_meta(hmi_map, factor, psf_fwhm, noise, mdi_level, seed)
    return sunpy.map.Map(coarse.astype(np.float32), meta)


def _check_degradation(shape, factor, psf_fwhm, noise, mdi_level):
    """Refuse a shape that is not a multiple of ``factor``, or a negative parameter (`ValueError`)."""
    ny, nx = shape
    if factor < 1 or ny % factor or nx % factor:
        raise ValueError(
            f"the map's shape {shape} is not a multiple of factor {factor}; crop it first "
            "(e.g. with submap) to a multiple of the factor"
        )
    if psf_fwhm < 0 * u.arcsec or noise < 0 * u.G or not mdi_level > 0:
        raise ValueError("psf_fwhm and noise must be >= 0 and mdi_level > 0")


def _gaussian_psf(data, psf_fwhm, scale):
    """
    ``data`` convolved with a Gaussian of FWHM ``psf_fwhm`` on pixels of ``scale`` (a map's ``scale``).

    Normalised convolution: the weights of the valid pixels sum to one everywhere, so a crop edge or
    the limb neither darkens nor leaks NaN; NaN pixels stay NaN.
    """
    valid = np.isfinite(data)
    pixel = np.mean(u.Quantity(scale).to_value(u.arcsec / u.pix))
    sigma = psf_fwhm.to_value(u.arcsec) / (2 * np.sqrt(2 * np.log(2))) / pixel
    num = gaussian_filter(np.where(valid, data, 0.0), sigma, mode="constant")
    den = gaussian_filter(valid.astype(np.float64), sigma, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, num / den, np.nan)


def _degraded_meta(hmi_map, factor, psf_fwhm, noise, mdi_level, seed):
    """The header of `degrade_to_mdi`'s result: HMI's, on the coarser grid, with the degradation recorded."""
    # The coarse grid's WCS from sunpy itself (CDELT*f, CRPIX' = (CRPIX - 0.5)/f + 0.5), then the
    # instrument keys that count pixels.
    meta = hmi_map.superpixel((factor, factor) * u.pix, func=np.mean).meta.copy()
    _coarser_pixel_keys(meta, factor)
    meta["bunit"] = "G"
    meta.update(
        {
            "degpsf": psf_fwhm.to_value(u.arcsec),
            "degnoise": noise.to_value(u.G),
            "deglevel": float(mdi_level),
            "degseed": -1 if seed is None else int(seed),
        }
    )
    add_history(
        meta,
        f"sunpy-superres degrade_to_mdi: Gaussian PSF FWHM {psf_fwhm.to_value(u.arcsec):g} "
        f"arcsec, {factor}x{factor} block mean, x{mdi_level:g} to MDI levels, "
        f"{noise.to_value(u.G):g} G rms noise",
    )
    return meta


@dataclasses.dataclass(frozen=True)
class MagnetogramPair:
    """
    An input map and its target on the exactly ``factor``-times finer grid.

    Attributes
    ----------
    lr : `~sunpy.map.GenericMap`
        The MDI (or MDI-like) input at HMI levels (calibrated by 1/1.4), G, on its own grid.
    hr : `~sunpy.map.GenericMap`
        HMI on the grid of ``finer_meta(lr.meta, factor, lr.data.shape)``, G; NaN off-disk.
    """

    lr: GenericMap
    hr: GenericMap

    @property
    def factor(self):
        """Output pixels per input pixel along each axis."""
        return self.hr.data.shape[0] // self.lr.data.shape[0]

    @property
    def date(self):
        """Observation time of the input (and, rotated to it, of the target)."""
        return self.lr.date

    def to_arrays(self, *, clip=True, fill=0.0):
        """
        The pair as network-unit arrays (field / 3000 G), ready for a training step.

        Parameters
        ----------
        clip : bool, optional
            Clip to [-1, 1] (+-3000 G), as the paper's training data (section 2).
        fill : float, optional
            Value (network units) put where either map is NaN (off-disk or missing).

        Returns
        -------
        lr : `numpy.ndarray`
            ``(H, W)`` float32.
        hr : `numpy.ndarray`
            ``(factor * H, factor * W)`` float32.
        valid : `numpy.ndarray`
            ``(factor * H, factor * W)`` bool: where both the target pixel and its input pixel are
            finite, for masking a loss.
        """
        f = self.factor
        norm = NORMALISATION_RANGE.to_value(u.G)
        lr = _field_gauss(self.lr, "lr") / norm
        hr = _field_gauss(self.hr, "hr") / norm
        valid = np.isfinite(hr) & repeat_blocks(np.isfinite(lr), f)
        if clip:
            lr, hr = np.clip(lr, -1, 1), np.clip(hr, -1, 1)
        lr = np.where(np.isfinite(lr), lr, fill).astype(np.float32)
        hr = np.where(valid, hr, fill).astype(np.float32)
        return lr, hr, valid


def _empty_map_wcs(meta, shape):
    # The WCS of a header as sunpy reads it (observer, rsun, rotation), without allocating the data.
    return sunpy.map.Map(np.broadcast_to(np.float32(0), shape), meta).wcs


def make_pair(
    mdi_map,
    hmi_map,
    *,
    crop_size=None,
    center=None,
    factor=4,
    calibration=MDI_TO_HMI,
    max_time_difference=1 * u.h,
    algorithm="interpolation",
    reproject_options=None,
):
    """
    Pair an MDI magnetogram with the HMI magnetogram of the same time, HMI on the 4x-finer MDI grid.

    See the module notes for why HMI, not MDI, is resampled, and why by bicubic interpolation.

    Parameters
    ----------
    mdi_map : `~sunpy.map.GenericMap`
        MDI (or MDI-like, see `degrade_to_mdi`) line-of-sight magnetogram at MDI levels, G.
    hmi_map : `~sunpy.map.GenericMap`
        HMI magnetogram covering the same region, G.
    crop_size : int, optional
        Side of a square crop of the input in MDI pixels (the paper: 256), centred on ``center``;
        the target is then ``factor * crop_size`` a side. No crop when `None`.
    center : `~astropy.coordinates.SkyCoord`, optional
        Centre of the crop; by default the most intense active region of the calibrated MDI map
        (`~sunpy_superres.metrics.regions.most_intense_region`), as the paper does (section 7).
    factor : int, optional
        Refinement of the target grid (4).
    calibration : float, optional
        Factor applied to the MDI data (default 1/1.4, Liu et al. 2012); recorded as ``SRCALFAC``.
    max_time_difference : `~astropy.units.Quantity`, optional
        Largest accepted difference of observation times. The difference is compensated by
        differential rotation, but fields also evolve; `None` accepts any difference.
    algorithm : {"interpolation", "adaptive", "exact"}, optional
        `sunpy.map.GenericMap.reproject_to` algorithm; ``"interpolation"`` uses bicubic order.
    reproject_options : dict, optional
        Further keyword arguments for the reprojection (e.g. ``{"order": "bilinear"}``).

    Returns
    -------
    `MagnetogramPair`
        ``lr``: the (cropped) MDI map at HMI levels, float32 G, with ``SRCALFAC``/``SRCALREF``;
        ``hr``: HMI on ``finer_meta(lr.meta, factor, lr.data.shape)``, seen from MDI's observer at
        MDI's time, float32 G, with HMI's instrument keys, ``HMIDATE`` (HMI's own time) and HISTORY.

    Raises
    ------
    TypeError
        If either argument is not a Map.
    ~astropy.units.UnitConversionError
        If ``max_time_difference`` is not a time.
    ValueError
        If a unit is not magnetic, the times differ by more than ``max_time_difference``, the crop
        does not fit, or the HMI map does not overlap the target at all.

    References
    ----------
    .. [1] Ramunno et al. 2025, section 7: MDI scaled by 1/1.4, 256x256 crops around the most
       intense AR, HMI as ground truth.
    """
    mdi = _field_gauss(mdi_map, "mdi_map")
    hmi = _field_gauss(hmi_map, "hmi_map")
    _check_time_difference(mdi_map, hmi_map, max_time_difference)
    lr = _calibrated_input(mdi_map, mdi, calibration, crop_size, center)
    hr = _target_on_finer_grid(hmi_map, hmi, lr, mdi_map.date, factor, algorithm, reproject_options)
    return MagnetogramPair(lr=lr, hr=hr)


def _check_time_difference(mdi_map, hmi_map, max_time_difference):
    """Refuse maps taken more than ``max_time_difference`` apart (`ValueError`; `None`: any)."""
    dt = abs((hmi_map.date - mdi_map.date).to(u.s))
    if max_time_difference is not None and dt > u.Quantity(max_time_difference).to(u.s):
        raise ValueError(
            f"the maps are {dt.to(u.min):.1f} apart (MDI {mdi_map.date.isot}, HMI "
            f"{hmi_map.date.isot}), more than max_time_difference={max_time_difference}; pair "
            "frames taken together"
        )


def _calibrated_input(mdi_map, mdi, calibration, crop_size, center):
    """
    The input of a pair: ``mdi`` (``mdi_map``'s data in G) times ``calibration``, float32, on MDI's
    own grid, with ``SRCALFAC``/``SRCALREF`` and HISTORY; cropped around ``center`` (default: the
    most intense active region) when ``crop_size`` is given.
    """
    lr_meta = mdi_map.meta.copy()
    lr_meta["srcalfac"] = float(calibration)
    lr_meta["srcalref"] = LIU_2012 if calibration == MDI_TO_HMI else "user-supplied factor"
    for key in ("bscale", "bzero", "blank"):  # the integer encoding no longer describes float32 data
        lr_meta.pop(key, None)
    lr_meta["bunit"] = "G"
    add_history(lr_meta, f"sunpy-superres make_pair: field x{calibration:.6g} to HMI levels")
    lr = sunpy.map.Map((mdi * calibration).astype(np.float32), lr_meta)
    if crop_size is not None:
        if center is None:
            center = most_intense_region(lr, crop_size)
        lr = region_crop(lr, center, crop_size)
    return lr


def _target_on_finer_grid(hmi_map, hmi, lr, mdi_date, factor, algorithm, reproject_options):
    """
    The target of a pair: ``hmi`` (``hmi_map``'s data in G) reprojected onto the ``factor``-times
    finer grid of ``lr``, seen from MDI's observer at MDI's time ``mdi_date``; float32 G, with HMI's
    instrument keys, ``HMIDATE`` and HISTORY.

    Raises
    ------
    ValueError
        If the HMI map does not overlap the target at all.
    """
    reproject_options = dict(reproject_options or {})
    if algorithm == "interpolation":
        reproject_options.setdefault("order", "bicubic")
    target_meta = finer_meta(lr.meta, factor, lr.data.shape)
    target_shape = (factor * lr.data.shape[0], factor * lr.data.shape[1])
    hmi_meta = hmi_map.meta.copy()
    hmi_meta["bunit"] = "G"  # the data were converted to G above
    hmi_gauss = sunpy.map.Map(hmi, hmi_meta)
    # Points on the solar surface seen from SDO at HMI's time go to where SOHO sees them at MDI's
    # time: the observer change is done in heliographic coordinates, the time change by differential
    # rotation (a no-op when the times agree).
    with propagate_with_solar_surface():
        moved = hmi_gauss.reproject_to(
            _empty_map_wcs(target_meta, target_shape), algorithm=algorithm, **reproject_options
        )
    hr_data = np.asarray(moved.data, dtype=np.float32)
    if not np.isfinite(hr_data).any():
        raise ValueError("the HMI map does not overlap the MDI region: every target pixel is NaN")

    hr_meta = target_meta.copy()
    for key in _INSTRUMENT_KEYS:
        hr_meta.pop(key, None)
        if key in hmi_map.meta:
            hr_meta[key] = hmi_map.meta[key]
    for key in ("srcalfac", "srcalref"):
        hr_meta.pop(key, None)
    hr_meta["bunit"] = "G"
    hr_meta["hmidate"] = hmi_map.date.isot
    hr_meta["history"] = ""
    add_history(
        hr_meta,
        f"sunpy-superres make_pair: HMI {hmi_map.date.isot} reprojected ({algorithm}) "
        f"onto the {factor}x finer grid of MDI {mdi_date.isot}, observer and "
        "differential rotation accounted for",
    )
    return sunpy.map.Map(hr_data, hr_meta)


def make_synthetic_pair(
    hmi_map, *, crop_size=None, center=None, factor=4, psf_fwhm=MDI_PSF_FWHM, noise=MDI_NOISE, seed=None
):
    """
    A pair from one HMI map: `degrade_to_mdi` as input, the HMI map as target.

    The degraded map goes through `make_pair` like a real MDI map (calibration by 1/1.4, crop,
    reprojection of HMI onto its 4x-finer grid, which here is HMI's own grid), so the same code runs
    on synthetic and on real pairs.

    Parameters
    ----------
    hmi_map : `~sunpy.map.GenericMap`
        HMI magnetogram, sides multiples of ``factor``.
    crop_size, center, factor
        As in `make_pair`.
    psf_fwhm, noise, seed
        As in `degrade_to_mdi`.

    Returns
    -------
    `MagnetogramPair`

    Raises
    ------
    TypeError, ValueError
        As `degrade_to_mdi` and `make_pair`.
    """
    mdi_like = degrade_to_mdi(hmi_map, factor=factor, psf_fwhm=psf_fwhm, noise=noise, seed=seed)
    return make_pair(mdi_like, hmi_map, crop_size=crop_size, center=center, factor=factor)


def _day(value):
    """UTC calendar day ``YYYY-MM-DD`` of an observation, a time, or a magnetogram file."""
    when = None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time())
    if isinstance(value, (str, Time, datetime.datetime)):
        try:
            when = parse_time(value)
        except (ValueError, TypeError):
            if not isinstance(value, str):
                raise
    elif isinstance(value, (GenericMap, MagnetogramPair)):
        when = value.date
    if when is None and isinstance(value, (str, os.PathLike)):
        from .data import observation_date

        return observation_date(value)
    if when is None:
        raise TypeError(f"cannot tell the observation date of {value!r}")
    return Time(when).utc.strftime("%Y-%m-%d")


def split_paper_dates(items, *, finetune=FINETUNE_PERIOD, test=TEST_PERIOD):
    """
    Split pairs into the paper's fine-tuning and test sets by observation day.

    Ramunno et al. (2025, section 7) fine-tune on pairs of 1 May - 31 August 2010 and test on pairs
    of 1 September 2010 - 11 April 2011. The split is by UTC calendar day of each item, so all frames
    of a day go to the same side and no day is in both; items outside both periods are left out.

    Parameters
    ----------
    items : iterable
        Pairs (`MagnetogramPair`), maps, times (`~astropy.time.Time`, datetime or strings) or
        magnetogram files (day from a JSOC-style name or the FITS header).
    finetune, test : tuple of str, optional
        Inclusive first and last days ``("YYYY-MM-DD", "YYYY-MM-DD")`` of each set.

    Returns
    -------
    finetune, test : list
        The items of each set, in their input order.

    Raises
    ------
    ValueError
        If a period ends before it starts or the two periods share a day.
    TypeError
        If an item has no observation time.

    References
    ----------
    .. [1] Ramunno et al. 2025, section 7.
    """
    periods = []
    for name, (start, end) in (("finetune", finetune), ("test", test)):
        start, end = _day(start), _day(end)
        if end < start:
            raise ValueError(f"the {name} period ends ({end}) before it starts ({start})")
        periods.append((start, end))
    (f0, f1), (t0, t1) = periods
    if f0 <= t1 and t0 <= f1:
        raise ValueError(f"the fine-tuning period {f0}..{f1} and the test period {t0}..{t1} share days")
    tune, held_out = [], []
    for item in items:
        day = _day(item)  # ISO dates compare correctly as strings
        if f0 <= day <= f1:
            tune.append(item)
        elif t0 <= day <= t1:
            held_out.append(item)
    return tune, held_out


def _nearest_record(fido, attrs, series, when, window, email):
    result = fido.search(
        attrs.Time(when - window, when + window), attrs.jsoc.Series(series), attrs.jsoc.Notify(email)
    )
    if len(result) == 0 or len(result[0]) == 0:
        raise ValueError(f"JSOC has no {series} record within {window} of {when.isot}")
    times = Time([parse_time(str(t)) for t in result[0]["T_REC"]])
    return times[int(np.argmin(np.abs((times - when).to_value(u.s))))]


def _fetch_record(fido, attrs, series, segment, when, email, path):
    result = fido.search(
        attrs.Time(when, when),
        attrs.jsoc.Series(series),
        attrs.jsoc.Segment(segment),
        attrs.jsoc.Notify(email),
    )
    kwargs = {} if path is None else {"path": str(Path(path) / "{file}")}
    files = fido.fetch(result, **kwargs)
    if files.errors or len(files) != 1:
        raise OSError(f"downloading {series}[{when.isot}] from JSOC failed: {files.errors or list(files)}")
    return Path(files[0])


@u.quantity_input
def fetch_pair(time, *, path=None, max_time_difference: u.s = 6 * u.min):
    """
    Download a co-temporal MDI (``mdi.fd_M_96m_lev182``) / HMI (``hmi.M_720s``) pair from JSOC.

    The MDI record nearest ``time`` (MDI full-disk magnetograms come every 96 minutes) is taken, then
    the HMI 720 s magnetogram nearest to it. JSOC exports need a registered e-mail address, read from
    the environment variable ``JSOC_EMAIL`` (register at http://jsoc.stanford.edu/ajax/register_email.html).

    Parameters
    ----------
    time : `~astropy.time.Time`, str or datetime
        Wanted time, within the overlap of the two instruments (1 May 2010 - 11 April 2011).
    path : str or path-like, optional
        Download directory (default: sunpy's download directory).
    max_time_difference : `~astropy.units.Quantity`, optional
        Largest accepted difference between the two records (default 6 min, half HMI's cadence).

    Returns
    -------
    mdi_file, hmi_file : `pathlib.Path`
        Pass them through `sunpy.map.Map` to `make_pair`.

    Raises
    ------
    RuntimeError
        If ``JSOC_EMAIL`` is not set.
    ImportError
        If sunpy's ``net`` extra (drms, zeep, lxml) is not installed.
    ValueError
        If JSOC has no record near the time or the nearest records are too far apart.
    OSError
        If a download fails.
    """
    email = os.environ.get(JSOC_EMAIL_VARIABLE, "").strip()
    if not email:
        raise RuntimeError(
            f"fetch_pair needs the e-mail address you registered with JSOC exports in the "
            f"environment variable {JSOC_EMAIL_VARIABLE} (e.g. `export "
            f"{JSOC_EMAIL_VARIABLE}=you@example.org`); register one at "
            "http://jsoc.stanford.edu/ajax/register_email.html"
        )
    # Imported here: sunpy.net needs sunpy's "net" extra (drms, zeep, lxml), which the rest of the
    # package does not.
    try:
        from sunpy.net import Fido
        from sunpy.net import attrs as a
    except ImportError as error:
        raise ImportError(
            f"fetch_pair needs sunpy's net extra: pip install 'sunpy[net]' ({error})"
        ) from error

    when = parse_time(time)
    mdi_time = _nearest_record(Fido, a, MDI_SERIES, when, 48 * u.min, email)
    hmi_time = _nearest_record(Fido, a, HMI_SERIES, mdi_time, 12 * u.min, email)
    if abs((hmi_time - mdi_time).to(u.s)) > max_time_difference:
        raise ValueError(
            f"the nearest HMI record ({hmi_time.isot}) is more than {max_time_difference} "
            f"from the MDI record ({mdi_time.isot})"
        )
    mdi_file = _fetch_record(Fido, a, MDI_SERIES, "data", mdi_time, email, path)
    hmi_file = _fetch_record(Fido, a, HMI_SERIES, "magnetogram", hmi_time, email, path)
    return mdi_file, hmi_file
