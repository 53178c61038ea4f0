"""
Physical metrics of line-of-sight magnetograms: pixel areas on the solar surface, magnetic flux and
active-region (AR) area.

These are the "physics" metrics of Ramunno et al. (2025, Section 5; Tables 1 and 2): the unsigned magnetic
flux and the AR size of a super-resolved magnetogram, each compared with the ground truth as a
percentage difference. Every function takes a `~sunpy.map.GenericMap` and returns
`~astropy.units.Quantity` values, so a 2"/pixel MDI map and a 0.5"/pixel HMI map of the same region
give comparable numbers.

References
----------
- Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent diffusion
  model approach", A&A 698, A140 (doi:10.1051/0004-6361/202453205), Section 5 (Metrics) and
  Section 6 (Results).
"""

from typing import NamedTuple

import astropy.units as u
import cv2
import numpy as np
from astropy.wcs.utils import proj_plane_pixel_area
from scipy.stats import median_abs_deviation
from sunpy.coordinates import Helioprojective

from ..consistency import repeat_blocks
from ..maps import map_data, map_unit

__all__ = [
    "MSH",
    "ActiveRegionArea",
    "pixel_area",
    "unsigned_flux",
    "net_flux",
    "active_region_area",
    "percentage_difference",
    "quiet_sun_noise",
    "subpixel_cancellation",
]

#: Millionths of the solar hemisphere (MSH or uSH), the unit of sunspot and AR areas in NOAA reports.
#: It is a fraction (1e-6 of ``2 pi R_sun**2``), not an area, because ``R_sun`` differs between
#: conventions: convert with the radius that the map itself uses (``rsun_meters``).
MSH = u.def_unit("MSH", u.Unit(1e-6), doc="millionth of a solar hemisphere (2 pi R_sun^2)")

#: Default lower limit on mu: beyond about 84 degrees from disk centre the 1/mu area factor diverges
#: and the line-of-sight field says little about the surface.
DEFAULT_MU_MIN = 0.1


class ActiveRegionArea(NamedTuple):
    """The size of an active region as returned by `active_region_area`."""

    #: Number of pixels inside the filled contours (the paper's "AR size").
    pixels: int
    #: Area of those pixels on the solar surface (Mm^2).
    area: u.Quantity
    #: The same area in millionths of the solar hemisphere, with the map's own solar radius.
    area_msh: u.Quantity
    #: Boolean image of the pixels counted.
    mask: np.ndarray


def _check_mu_min(mu_min):
    if not 0 <= mu_min < 1:
        raise ValueError(f"mu_min must lie in [0, 1), got {mu_min}")


def _field_in_gauss(smap):
    """Return the map's data as a float64 array in Gauss, with masked pixels set to NaN."""
    unit = map_unit(smap)  # Mx/cm2 too, which sunpy does not read
    if unit is None or not unit.is_equivalent(u.G):
        raise ValueError(
            f"a magnetogram in G (or Mx/cm2) is needed; this map's unit is {unit!r} "
            f"(BUNIT={smap.meta.get('bunit')!r})"
        )
    return map_data(smap, u.G)


#: Pixels per block of `_surface_geometry` (a speed setting: any size gives the same result).
_GEOMETRY_BLOCK_PIXELS = 2**20


def _surface_geometry(smap):
    """
    Distance to the surface and mu for every pixel of a helioprojective map.

    Returns ``(d, mu)``: float64 arrays of the map's shape, ``d`` in metres from the observer to the
    first intersection of the pixel's line of sight with the sphere of radius ``smap.rsun_meters``,
    ``mu`` the cosine of the angle between the surface normal there and the line of sight. Both are
    NaN for lines of sight that miss the Sun.

    Written by hand: sunpy's ``all_coordinates_from_map(...).make_3d()`` followed by a transform to
    `~sunpy.coordinates.Heliocentric` gives the same points (mu agrees to 1e-9) but took about 14 s
    for a 4096x4096 map here, against about 3.5 s for the WCS call plus this numpy geometry.
    """
    if not isinstance(smap.coordinate_frame, Helioprojective):
        raise ValueError(
            f"a helioprojective map is needed to place pixels on the solar surface; "
            f"this map's frame is {type(smap.coordinate_frame).__name__}"
        )
    dsun = smap.dsun.to_value(u.m)
    rsun = smap.rsun_meters.to_value(u.m)
    to_rad = [u.Unit(unit).to(u.rad) for unit in smap.wcs.world_axis_units]
    ny, nx = smap.data.shape
    d = np.empty((ny, nx))
    mu = np.empty((ny, nx))
    # Blocks of about a million pixels: the WCS call on a whole 4096x4096 grid took 3.2 s here, in
    # blocks 2.1 s (temporaries stay in cache), and memory stays small.
    rows = max(1, _GEOMETRY_BLOCK_PIXELS // nx)
    for start in range(0, ny, rows):
        y, x = np.mgrid[start : min(start + rows, ny), 0:nx].astype(np.float64)
        tx, ty = smap.wcs.pixel_to_world_values(x, y)
        tx *= to_rad[0]
        ty *= to_rad[1]
        # Helioprojective (Tx, Ty) are longitude/latitude about the observer-Sun line, so the angle
        # rho between a line of sight and Sun centre has cos(rho) = cos(Tx) cos(Ty). sin^2(rho) is
        # written as sin^2(Ty) + cos^2(Ty) sin^2(Tx) to avoid the cancellation in 1 - cos^2(rho) at
        # rho ~ 0.3 deg.
        cos_ty = np.cos(ty)
        cos_rho = cos_ty * np.cos(tx)
        sin2_rho = np.sin(ty) ** 2 + (cos_ty * np.sin(tx)) ** 2
        # The ray s from the observer meets the sphere where s^2 - 2 s D cos(rho) + D^2 - R^2 = 0;
        # the near root is the visible surface. With n the outward normal there, mu = n.(-s_hat)
        # works out to sqrt(disc)/R.
        disc = rsun**2 - dsun**2 * sin2_rho
        disc[disc < 0] = np.nan  # lines of sight that miss the Sun
        root = np.sqrt(disc, out=disc)
        d[start : start + rows] = dsun * cos_rho - root
        mu[start : start + rows] = root / rsun
    return d, mu


def pixel_area(smap, *, mu_min=DEFAULT_MU_MIN):
    """
    Area on the solar surface seen by each pixel of a map.

    The area is the pixel's solid angle times ``d**2 / mu``, with ``d`` the distance from the
    observer to the surface point seen by that pixel and ``mu`` the cosine of the angle between the
    surface normal and the line of sight. Using the per-pixel ``d`` rather than the observer-Sun
    distance (DSUN) matters: it differs by up to one solar radius, about 1 % of the area.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A map in helioprojective coordinates, with an observer (DSUN_OBS or HGLN/HGLT_OBS) and
        a solar radius (RSUN_REF, else sunpy's default).
    mu_min : float, optional
        Pixels with ``mu < mu_min`` are NaN, as are off-disk pixels. Default 0.1 (about 84 degrees
        from disk centre), beyond which ``1/mu`` grows without bound.

    Returns
    -------
    `~astropy.units.Quantity`
        Array of the map's shape in Mm^2, NaN off the disk and where ``mu < mu_min``.

    Raises
    ------
    ValueError
        If the map is not helioprojective or ``mu_min`` is outside [0, 1).

    Notes
    -----
    The solid angle of a pixel is ``|det CD|`` of the WCS (``CDELT1 * CDELT2`` for a pure rotation),
    converted to steradians. The gnomonic (TAN) projection makes the true solid angle smaller by
    ``cos^3`` of the angle from the reference pixel: less than 4e-5 anywhere on the disk, neglected.

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5 and Section 6: fluxes are sums of the field times the pixel area
       "in meters".
    """
    area_m2, _ = _area_and_mu(smap, mu_min)
    return (area_m2 * u.m**2).to(u.Mm**2)


def _area_and_mu(smap, mu_min):
    """Pixel area in m^2 and mu, both NaN off the disk and where ``mu < mu_min``."""
    _check_mu_min(mu_min)
    d, mu = _surface_geometry(smap)
    # |det CD| in the WCS world units (deg^2 for helioprojective axes, which wcslib normalises)
    units = [u.Unit(unit) for unit in smap.wcs.world_axis_units]
    solid_angle = (proj_plane_pixel_area(smap.wcs) * units[0] * units[1]).to_value(u.sr)
    mu[~(mu >= mu_min) | (mu == 0)] = np.nan  # off the disk mu is NaN, and NaN >= mu_min is False
    return solid_angle * d**2 / mu, mu


def _flux_terms(smap, mu_min, radial):
    """Return ``B [G] * area [cm^2]`` per pixel (NaN where undefined)."""
    field = _field_in_gauss(smap)
    area_m2, mu = _area_and_mu(smap, mu_min)
    area_cm2 = area_m2 * 1e4
    if radial:
        # Radial-field approximation: B_r = B_los / mu, valid where the field is close to radial
        # (strong plage and sunspot umbrae), wrong for horizontal (penumbral) fields near the limb.
        field = field / mu
    return field * area_cm2


@u.quantity_input
def unsigned_flux(smap, *, mu_min=DEFAULT_MU_MIN, radial=False) -> u.Mx:
    """
    Total unsigned magnetic flux of a map, ``sum(|B| * A)``.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G or Mx/cm^2, helioprojective.
    mu_min : float, optional
        Pixels with ``mu < mu_min`` are left out (see `pixel_area`). Default 0.1.
    radial : bool, optional
        If `True`, divide the line-of-sight field by ``mu`` (the radial-field approximation) before
        summing. Default `False`: the line-of-sight field, as the paper uses it.

    Returns
    -------
    `~astropy.units.Quantity`
        Unsigned flux in Mx. NaN pixels (off-disk, missing data, masked) are ignored.

    Raises
    ------
    ValueError
        If the map is not in units of magnetic flux density, not helioprojective, or ``mu_min`` is
        outside [0, 1).

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5: "to compute the unsigned and the net flux we sum over the pixel
       in Gauss and then multiply by the total area considered". Here each pixel is weighted by its
       own area (`pixel_area`), which also holds for crops that reach towards the limb.
    """
    return np.nansum(np.abs(_flux_terms(smap, mu_min, radial))) * u.Mx


@u.quantity_input
def net_flux(smap, *, mu_min=DEFAULT_MU_MIN, radial=False) -> u.Mx:
    """
    Net (signed) magnetic flux of a map, ``sum(B * A)``.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G or Mx/cm^2, helioprojective.
    mu_min : float, optional
        Pixels with ``mu < mu_min`` are left out (see `pixel_area`). Default 0.1.
    radial : bool, optional
        If `True`, divide the line-of-sight field by ``mu`` before summing. Default `False`.

    Returns
    -------
    `~astropy.units.Quantity`
        Net flux in Mx. NaN pixels are ignored.

    Raises
    ------
    ValueError
        If the map is not in units of magnetic flux density, not helioprojective, or ``mu_min`` is
        outside [0, 1).

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5.
    """
    return np.nansum(_flux_terms(smap, mu_min, radial)) * u.Mx


@u.quantity_input
def active_region_area(smap, threshold: u.G = 300 * u.G, *, mu_min=DEFAULT_MU_MIN):
    """
    Size of the active regions in a magnetogram, from the filled contours of ``|B| >= threshold``.

    The map is binarised at ``|B| >= threshold``, the outer contours of the binary image are found
    with OpenCV's ``findContours`` and filled, and the pixels inside are counted; weak-field holes
    enclosed by strong field (e.g. between the polarities) therefore count as part of the region.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G or Mx/cm^2, helioprojective.
    threshold : `~astropy.units.Quantity`, optional
        Field strength that defines the region. Default 300 G, as in the paper.
    mu_min : float, optional
        Pixels with ``mu < mu_min`` (and off-disk or NaN pixels) never pass the threshold, so the
        pixel count and the area describe the same pixels. Default 0.1.

    Returns
    -------
    ActiveRegionArea
        Named tuple ``(pixels, area, area_msh, mask)``: the pixel count (the paper's AR size), the
        area on the solar surface in Mm^2 (sum of `pixel_area` over those pixels), the same area in
        millionths of the solar hemisphere (`MSH`, with ``2 pi smap.rsun_meters**2``) and the boolean
        mask of the counted pixels.

    Raises
    ------
    ValueError
        If the map is not in units of magnetic flux density, not helioprojective, ``threshold`` is
        not positive or ``mu_min`` is outside [0, 1).

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5: "we first binarize the image setting as a threshold 300 G, then
       we find the contours via the findContours() function from the OpenCV library and then we count
       the number of pixels inside".
    """
    if not threshold > 0 * u.G:
        raise ValueError(f"threshold must be positive, got {threshold}")
    field = _field_in_gauss(smap)
    area = pixel_area(smap, mu_min=mu_min)
    with np.errstate(invalid="ignore"):  # NaN compares False: missing data never passes
        strong = (np.abs(field) >= threshold.to_value(u.G)) & np.isfinite(area)
    contours, _ = cv2.findContours(strong.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(strong.shape, dtype=np.uint8)
    cv2.drawContours(filled, contours, -1, color=1, thickness=cv2.FILLED)
    mask = filled.astype(bool)
    total = np.nansum(area[mask])
    hemisphere = 2 * np.pi * smap.rsun_meters**2
    return ActiveRegionArea(
        pixels=int(mask.sum()),
        area=total.to(u.Mm**2),
        area_msh=(total / hemisphere).to(MSH),
        mask=mask,
    )


def percentage_difference(predicted, truth):
    """
    Signed percentage difference ``100 * (predicted - truth) / truth``.

    The paper reports the flux and AR-size metrics as percentage variations relative to the ground
    truth and averages their absolute values; take ``np.abs`` of the result for that.

    Parameters
    ----------
    predicted, truth : `~astropy.units.Quantity` or array-like
        Values in compatible units (plain numbers are dimensionless). They broadcast together.

    Returns
    -------
    `~astropy.units.Quantity`
        The difference in percent; positive when ``predicted`` exceeds ``truth``.

    Raises
    ------
    ValueError
        If any ``truth`` is zero: a relative difference to nothing is undefined.
    astropy.units.UnitConversionError
        If the units are incompatible.

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5 and Tables 1-2.
    """
    predicted = u.Quantity(predicted)
    truth = u.Quantity(truth)
    if np.any(truth.value == 0):
        raise ValueError("truth is zero: the percentage difference is undefined")
    return ((predicted - truth) / truth).to(u.percent)


#: Block mean (G) below which a block of the 4x4-degraded map counts as quiet Sun for `quiet_sun_noise`.
QUIET_BLOCK_GAUSS = 5.0


def _block_means(field, factor):
    """``field`` (trimmed to whole blocks) and its ``factor`` x ``factor`` block means, replicated."""
    ny, nx = (s - s % factor for s in field.shape)
    field = field[:ny, :nx]
    blocks = field.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    return field, repeat_blocks(blocks, factor)


def quiet_noise_gauss(field, *, threshold=QUIET_BLOCK_GAUSS, factor=4, min_pixels=1000, reference=None):
    """
    `quiet_sun_noise` on an array in G (NaN ignored); the training data use it on crops and patches.

    ``reference`` (an array of the same shape, in G), when given, chooses the quiet blocks by its
    block means instead of ``field``'s: the noise of an output on the blocks its truth calls quiet.

    Returns
    -------
    float
        The noise estimate in G.
    """
    field = np.asarray(field, dtype=np.float64)
    if reference is not None and np.shape(reference) != field.shape:
        raise ValueError(
            f"reference has shape {np.shape(reference)} and the field {field.shape}; give arrays of one shape"
        )
    field, mean = _block_means(field, factor)
    selector = mean if reference is None else _block_means(np.asarray(reference, dtype=np.float64), factor)[1]
    quiet = (np.abs(selector) < threshold) & np.isfinite(mean)  # False for NaN
    residual = (field - mean)[quiet]
    if residual.size < min_pixels:
        raise ValueError(
            f"only {residual.size} pixels lie in {factor}x{factor} blocks with |mean| < {threshold:g} G "
            f"(at least {min_pixels} are needed); give a map with more quiet Sun, e.g. a full disk"
        )
    # Robust (MAD) standard deviation of the within-block residual; for white noise of standard
    # deviation s that residual has standard deviation s * sqrt(1 - 1/factor**2), undone here.
    return float(median_abs_deviation(residual, scale="normal") / np.sqrt(1 - 1 / factor**2))


def quiet_sun_noise(smap, *, threshold: u.G = QUIET_BLOCK_GAUSS * u.G, factor=4, reference=None) -> u.G:
    """
    Per-pixel noise of a magnetogram, estimated on its quiet Sun.

    The map is averaged in ``factor`` x ``factor`` blocks (the paper's degradation, 0.5" -> 2" for
    HMI); in blocks whose mean is below ``threshold`` the field within the block is dominated by
    noise, and the robust (median absolute deviation) standard deviation of the pixels about their
    block mean, corrected for the mean's own share, estimates the standard deviation of white
    per-pixel noise. Real internetwork field inside quiet blocks adds to it, so this is an upper
    bound on the photon noise, but it is the quantity that sets the small-scale texture (and the
    weak-field unsigned flux) of a magnetogram: 4.8 G for the HMI 720 s full disk of
    2011-12-17 and 3.5 G for that of 2019-06-21, within 0.9 solar radii (HMI's observing sequence
    changed in April 2016). It is what
    `~sunpy_superres.superresolve` calls the target ``noise_level``.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A line-of-sight magnetogram in G or Mx/cm^2 with enough quiet Sun (at least 1000 pixels in
        quiet blocks).
    threshold : `~astropy.units.Quantity`, optional
        Largest ``|block mean|`` of a quiet block. Default 5 G.
    factor : int, optional
        Block size in pixels. Default 4.
    reference : `~sunpy.map.GenericMap`, optional
        A magnetogram on the same pixel grid whose block means choose the quiet blocks instead of
        ``smap``'s: a super-resolved map's noise on the blocks its HMI truth calls quiet, so that
        both are measured on the same pixels.

    Returns
    -------
    `~astropy.units.Quantity`
        Noise standard deviation per pixel, in G.

    Raises
    ------
    ValueError
        If a map is not a magnetic field, ``reference`` has another shape, or there are too few
        quiet pixels.
    """
    if not threshold > 0 * u.G:
        raise ValueError(f"threshold must be positive, got {threshold}")
    ref = None if reference is None else _field_in_gauss(reference)
    field = _field_in_gauss(smap)
    return (
        quiet_noise_gauss(field, threshold=threshold.to_value(u.G), factor=int(factor), reference=ref) * u.G
    )


def subpixel_cancellation(
    smap, *, threshold: u.G = QUIET_BLOCK_GAUSS * u.G, factor=4, reference=None
) -> u.one:
    """
    Fraction of a magnetogram's unsigned flux that cancels inside ``factor`` x ``factor`` blocks.

    For each block (a 2" MDI pixel of a 0.5" HMI map, for ``factor`` 4) whose ``|mean|`` is at least
    ``threshold``, ``sum |B| - |sum B|``: zero where the block is of one sign, twice its minority
    polarity's flux where it is not. Summed over those blocks and divided by their ``sum |B|``. It is
    the part of the unsigned flux that a 2" instrument cannot see, and it tells a super-resolved map
    whose sub-pixel texture has the right amplitude but the wrong sign structure from one with the
    truth's: where the truth concentrates a weak block's flux in a few elements of the block's sign,
    a texture spread symmetrically about the block mean crosses zero and reads more unsigned flux.
    Below ``threshold`` a block's texture is the quiet Sun's noise (`quiet_sun_noise`). Pixels are
    not weighted by their area on the Sun (a ratio within blocks of a few arcseconds).

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A line-of-sight magnetogram in G or Mx/cm^2.
    threshold : `~astropy.units.Quantity`, optional
        Smallest ``|block mean|`` of a block counted. Default 5 G.
    factor : int, optional
        Block size in pixels. Default 4.
    reference : `~sunpy.map.GenericMap`, optional
        A magnetogram on the same pixel grid whose block means choose the blocks instead of
        ``smap``'s (a super-resolved map's blocks where its HMI truth chooses them).

    Returns
    -------
    `~astropy.units.Quantity`
        Dimensionless, from 0 to 1; NaN if no block is counted. Blocks with a NaN pixel are left out.

    Raises
    ------
    ValueError
        If a map is not a magnetic field, ``reference`` has another shape or ``threshold`` is not
        positive.
    """
    if not threshold > 0 * u.G:
        raise ValueError(f"threshold must be positive, got {threshold}")
    field = _field_in_gauss(smap)
    selector = field if reference is None else _field_in_gauss(reference)
    if selector.shape != field.shape:
        raise ValueError(
            f"reference has shape {selector.shape} and the map {field.shape}; give maps of one grid"
        )
    ny, nx = (n - n % factor for n in field.shape)

    def blocks(a):
        return a[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)

    b = blocks(field)
    means = np.abs(blocks(selector).mean(axis=(1, 3)))
    counted = (means >= threshold.to_value(u.G)) & np.isfinite(b.sum(axis=(1, 3)))  # NaN >= t is False
    unsigned = np.abs(b).sum(axis=(1, 3))[counted]
    cancelled = unsigned - np.abs(b.sum(axis=(1, 3)))[counted]
    total = unsigned.sum()
    return (cancelled.sum() / total if total > 0 else np.nan) * u.one
