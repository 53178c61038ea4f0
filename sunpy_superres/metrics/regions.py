"""
Locate active regions (ARs) on a map and cut crops around them.

The paper evaluates its physics metrics on crops centred on ARs: the regions are identified through
their NOAA numbers with sunpy (Section 5), or the most intense AR of a frame is taken (Sections 6
and 7: 1024x1024 HMI crops, 256x256 MDI crops). This module gives both routes as functions of a
`~sunpy.map.GenericMap`:

* `noaa_regions` reads a NOAA SWPC Solar Region Summary (SRS), rotates each region from the SRS time
  to the map's time and places it on the map;
* `most_intense_region` finds the strongest concentration of field when no SRS is at hand;
* `region_crop` cuts a square crop of a given size around either;
* `fetch_srs` downloads the SRS of a day with `sunpy.net.Fido`.

References
----------
- Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent diffusion
  model approach", A&A 698, A140 (doi:10.1051/0004-6361/202453205), Sections 5, 6 and 7.
"""

import numbers
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from astropy.time import Time
from scipy.signal import fftconvolve
from scipy.signal.windows import gaussian
from sunpy.coordinates import HeliographicStonyhurst, RotatedSunFrame, transform_with_sun_center
from sunpy.io.special.srs import read_srs
from sunpy.time import parse_time

from .physics import _area_and_mu, _field_in_gauss

__all__ = ["read_srs_table", "noaa_regions", "region_crop", "most_intense_region", "fetch_srs"]


def read_srs_table(srs):
    """
    Read a NOAA Solar Region Summary, or pass a table already read through.

    Parameters
    ----------
    srs : str, `~pathlib.Path` or `~astropy.table.QTable`
        Path to an SRS text file, or the table `sunpy.io.special.srs.read_srs` returned.

    Returns
    -------
    `~astropy.table.QTable`
        The SRS table, with ``meta["issued"]``.

    Raises
    ------
    TypeError
        If ``srs`` is neither a path nor a table.
    """
    if isinstance(srs, QTable):
        return srs
    if isinstance(srs, (str, Path)):
        return read_srs(str(srs))
    raise TypeError(f"srs must be a path to an SRS file or a table from read_srs, got {type(srs).__name__}")


def _srs_time(table):
    # SRS positions are "valid at 2400Z" of the day before the issue date, i.e. 00:00 UT of the day
    # the report is issued (at 00:30 UT).
    issued = table.meta.get("issued")
    if issued is None:
        raise ValueError("the SRS table has no 'issued' time in its meta; pass srs_time explicitly")
    return Time(issued.strftime("%Y-%m-%d"), scale="utc")


def _missing(column):
    """Boolean array: True where a (possibly masked) table column has no value."""
    mask = getattr(column, "mask", None)
    missing = np.zeros(len(column), bool) if mask is None else np.array(mask, dtype=bool)
    values = u.Quantity(getattr(column, "unmasked", column)).value
    return missing | ~np.isfinite(values)


def noaa_regions(srs, smap, *, srs_time=None):
    """
    NOAA regions of an SRS report, differentially rotated to the time of a map and placed on it.

    Parameters
    ----------
    srs : str, `~pathlib.Path` or `~astropy.table.QTable`
        SRS file or table (see `read_srs_table`). Rows without a position (section II, "regions due
        to return") are dropped.
    smap : `~sunpy.map.GenericMap`
        The map to place the regions on.
    srs_time : `~astropy.time.Time` or str, optional
        Time at which the SRS positions are valid. Default: 00:00 UT of the issue date, as the SRS
        format states ("locations valid at 2400Z" of the previous day).

    Returns
    -------
    `~astropy.table.QTable`
        One row per region with the SRS columns (``Number``, ``ID``, ``Latitude``, ``Longitude``,
        ``Area``, ``Mag Type`` ...) plus ``coord`` (`~astropy.coordinates.SkyCoord` in the map's
        frame, at the map's time), ``x`` and ``y`` (pixel position on the map, 0-based, in pix),
        ``on_disk`` (visible from the map's observer) and ``in_map`` (visible and inside the data
        array).

    Raises
    ------
    ValueError
        If the SRS time is unknown.

    Notes
    -----
    The rotation uses `~sunpy.coordinates.RotatedSunFrame` (sunpy's default differential-rotation
    model) from the SRS time to the map's coordinate-frame time; a region at 00:00 UT moves up to
    about 13 degrees of longitude by the end of that day.

    References
    ----------
    .. [1] Ramunno et al. 2025, Section 5: AR centres are identified "through their NOAA numbers".
    """
    table = read_srs_table(srs)
    when = _srs_time(table) if srs_time is None else parse_time(srs_time)
    has_position = ~(_missing(table["Longitude"]) | _missing(table["Latitude"]))
    out = QTable(table[has_position], meta=dict(table.meta))
    lon = u.Quantity(getattr(out["Longitude"], "unmasked", out["Longitude"]), u.deg)
    lat = u.Quantity(getattr(out["Latitude"], "unmasked", out["Latitude"]), u.deg)

    frame = smap.coordinate_frame
    rsun = smap.rsun_meters
    # Regions lie on the surface; giving the radius makes the coordinates 3-D, so visibility from the
    # map's observer is well defined (is_visible needs a distance).
    base = HeliographicStonyhurst(obstime=when, rsun=rsun)
    rotated = SkyCoord(
        RotatedSunFrame(
            lon=lon, lat=lat, radius=np.full(len(out), 1.0) * rsun, base=base, rotated_time=frame.obstime
        )
    )
    # Without transform_with_sun_center the change of obstime is inertial: the point stays fixed in
    # space while the Sun moves, which put a region 500 km off the surface and 0.7" away after 12 h.
    # sunpy's own solar_rotate_coordinate does the same.
    with transform_with_sun_center():
        coord = rotated.transform_to(frame)
    x, y = smap.wcs.world_to_pixel(coord)
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    on_disk = np.atleast_1d(coord.is_visible())
    ny, nx = smap.data.shape
    inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    out["coord"] = coord
    out["x"] = x * u.pix
    out["y"] = y * u.pix
    out["on_disk"] = on_disk
    out["in_map"] = on_disk & inside
    out.meta["srs_time"] = when
    return out


def _centre_pixel(smap, center, srs):
    """Pixel position (x, y) of a SkyCoord or NOAA number on ``smap``."""
    if isinstance(center, numbers.Integral):
        if srs is None:
            raise ValueError("a NOAA number needs the SRS table or file: pass srs=")
        regions = noaa_regions(srs, smap)
        rows = regions[regions["Number"] == center]
        if len(rows) == 0:
            raise ValueError(
                f"NOAA {center} is not in the SRS with positions; it lists {list(regions['Number'])}"
            )
        row = rows[0]
        if not row["in_map"]:
            where = "behind the limb" if not row["on_disk"] else "outside the map"
            raise ValueError(f"NOAA {center} is {where} at the map's time")
        return row["x"].to_value(u.pix), row["y"].to_value(u.pix)
    if isinstance(center, SkyCoord):
        coord = center.transform_to(smap.coordinate_frame)
        if not coord.is_visible():  # a 2-D coordinate counts as visible; a 3-D one may be far-side
            raise ValueError("the centre is behind the limb for this map's observer")
        x, y = smap.wcs.world_to_pixel(coord)
        return float(x), float(y)
    raise TypeError(f"center must be a SkyCoord or a NOAA number (int), got {type(center).__name__}")


def region_crop(smap, center, size, *, srs=None):
    """
    Square crop of ``size`` x ``size`` pixels around a region.

    The crop is centred on ``center`` to the nearest pixel and shifted, where needed, so that it lies
    entirely inside the map: it always has exactly the requested size.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        The map to crop.
    center : `~astropy.coordinates.SkyCoord` or int
        Centre of the crop, or a NOAA region number (then ``srs`` is needed).
    size : int or `~astropy.units.Quantity`
        Side of the crop in pixels (the paper uses 1024 for HMI, 256 for MDI).
    srs : str, `~pathlib.Path` or `~astropy.table.QTable`, optional
        SRS file or table in which to look up a NOAA number (see `noaa_regions`).

    Returns
    -------
    `~sunpy.map.GenericMap`
        The submap, with its WCS (`sunpy.map.GenericMap.submap` with pixel corners).

    Raises
    ------
    ValueError
        If ``size`` does not fit in the map, the centre lies outside the map or behind the limb, or
        the NOAA number is not in the SRS.
    TypeError
        If ``center`` is neither a SkyCoord nor an int.

    References
    ----------
    .. [1] Ramunno et al. 2025, Sections 6 and 7: crops taken around the AR.
    """
    size = int(u.Quantity(size, u.pix).to_value(u.pix))
    ny, nx = smap.data.shape
    if not 1 <= size <= min(nx, ny):
        raise ValueError(f"size {size} does not fit in a {ny}x{nx} map")
    cx, cy = _centre_pixel(smap, center, srs)
    if not (-0.5 <= cx < nx - 0.5 and -0.5 <= cy < ny - 0.5):
        raise ValueError(f"the centre (pixel {cx:.1f}, {cy:.1f}) lies outside the {ny}x{nx} map")
    # Pixels x0 .. x0+size-1 have their middle at x0 + (size-1)/2: put that nearest the centre.
    x0 = int(np.clip(np.floor(cx - (size - 1) / 2 + 0.5), 0, nx - size))
    y0 = int(np.clip(np.floor(cy - (size - 1) / 2 + 0.5), 0, ny - size))
    return smap.submap([x0, y0] * u.pix, top_right=[x0 + size - 1, y0 + size - 1] * u.pix)


def _gaussian_smooth(image, sigma):
    # Separable FFT convolution: scipy.ndimage.gaussian_filter costs O(sigma) per pixel, tens of
    # seconds on a 4096x4096 map at the AR scale (sigma ~ 100 pixels); the FFT does not depend on
    # sigma. Zero padding ("same" mode) treats the outside of the map as field-free.
    half = int(np.ceil(4 * sigma))
    kernel = gaussian(2 * half + 1, sigma)
    kernel /= kernel.sum()
    out = fftconvolve(image, kernel[np.newaxis, :], mode="same", axes=1)
    return fftconvolve(out, kernel[:, np.newaxis], mode="same", axes=0)


def most_intense_region(smap, size, *, smoothing=None, mu_min=0.3):
    """
    Centre of the most intense active region of a map, for when no SRS is at hand.

    ``|B|`` is smoothed with a Gaussian of the AR scale and its maximum over the disk (``mu >=
    mu_min``) is taken: the flux-weighted heart of the strongest concentration of field, not a
    single hot pixel.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G or Mx/cm^2, helioprojective.
    size : int or `~astropy.units.Quantity`
        Side in pixels of the crop that will be cut around the region (the paper: 1024 for HMI, 256
        for MDI); it sets the default smoothing.
    smoothing : `~astropy.units.Quantity`, optional
        Standard deviation of the Gaussian, in pixels or as an angle (arcsec). Default ``size / 8``
        pixels (64" for both a 1024-pixel HMI and a 256-pixel MDI crop): the AR scale.
    mu_min : float, optional
        Pixels nearer the limb than ``mu = mu_min`` neither contribute nor can be the centre. Default
        0.3 (73 degrees from disk centre): beyond it the line-of-sight field of plage is dominated by
        horizontal fields and the crop would be badly foreshortened.

    Returns
    -------
    `~astropy.coordinates.SkyCoord`
        The centre, in the map's frame; pass it to `region_crop`.

    Raises
    ------
    ValueError
        If the map has no finite field within ``mu >= mu_min``, or its unit is not magnetic.

    References
    ----------
    .. [1] Ramunno et al. 2025, Sections 6 and 7: "identify the most intense AR present" with sunpy.
    """
    size = u.Quantity(size, u.pix).to_value(u.pix)
    if smoothing is None:
        sigma = size / 8
    else:
        smoothing = u.Quantity(smoothing)
        if smoothing.unit.is_equivalent(u.pix):
            sigma = smoothing.to_value(u.pix)
        elif smoothing.unit.is_equivalent(u.arcsec):
            scale = np.mean(u.Quantity(smap.scale).to_value(u.arcsec / u.pix))
            sigma = smoothing.to_value(u.arcsec) / scale
        else:
            raise ValueError(f"smoothing must be in pixels or an angle, got {smoothing.unit}")
    if not sigma > 0:
        raise ValueError(f"the smoothing must be positive, got {sigma} pixels")

    field = _field_in_gauss(smap)
    _, mu = _area_and_mu(smap, mu_min)
    valid = np.isfinite(mu) & np.isfinite(field)
    if not valid.any() or not np.any(field[valid]):
        raise ValueError(f"the map has no field on the disk within mu >= {mu_min}")
    score = _gaussian_smooth(np.where(valid, np.abs(field), 0.0), sigma)
    score[~valid] = -np.inf
    iy, ix = np.unravel_index(np.argmax(score), score.shape)
    return smap.wcs.pixel_to_world(ix, iy)


def fetch_srs(time, *, path=None):
    """
    Download the NOAA Solar Region Summary for the day of ``time`` with `sunpy.net.Fido`.

    Parameters
    ----------
    time : `~astropy.time.Time`, str or datetime
        Any time of the wanted day (UTC); the SRS issued that day lists positions at 00:00 UT.
    path : str, optional
        Download path template for `sunpy.net.Fido.fetch` (default: sunpy's download directory).

    Returns
    -------
    `~pathlib.Path`
        Path of the SRS text file, ready for `noaa_regions`.

    Raises
    ------
    ValueError
        If NOAA has no SRS for that day.
    OSError
        If the download failed.
    ImportError
        If sunpy's ``net`` extra is not installed.
    """
    # Imported here: sunpy.net needs sunpy's "net" extra (drms, zeep, lxml), which the rest of the
    # package does not.
    try:
        from sunpy.net import Fido
        from sunpy.net import attrs as a
    except ImportError as error:
        raise ImportError(f"fetch_srs needs sunpy's net extra: pip install 'sunpy[net]' ({error})") from error

    day = Time(parse_time(time).strftime("%Y-%m-%d"), scale="utc")
    result = Fido.search(a.Time(day, day + 1 * u.day - 1 * u.s), a.Instrument("SRS-Table"))
    if len(result) == 0 or len(result[0]) == 0:
        raise ValueError(f"no SRS found for {day.strftime('%Y-%m-%d')}")
    kwargs = {} if path is None else {"path": path}
    files = Fido.fetch(result[0][0], **kwargs)
    if files.errors or not files:
        raise OSError(f"downloading the SRS for {day.strftime('%Y-%m-%d')} failed: {files.errors}")
    return Path(files[0])
