"""
Tests of sunpy_superres.metrics.regions.

The SRS report is one that sunpy ships as test data (2015-03-06); the map is a synthetic field on a
header made by sunpy for an Earth observer 12 hours later, with a sunspot-like blob placed where
sunpy's own `solar_rotate_coordinate` puts NOAA 12293 at the map's time.
"""

import functools

import astropy.units as u
import numpy as np
import pytest
import sunpy.data.test
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from sunpy.coordinates import HeliographicStonyhurst, Helioprojective, get_earth
from sunpy.io.special.srs import read_srs
from sunpy.map.header_helper import make_fitswcs_header
from sunpy.physics.differential_rotation import solar_rotate_coordinate

from sunpy_superres.metrics.regions import (
    fetch_srs,
    most_intense_region,
    noaa_regions,
    read_srs_table,
    region_crop,
)

SRS_FILE = sunpy.data.test.get_test_filepath("SRS/20150306SRS.txt")
SRS_TIME = "2015-03-06T00:00:00"  # "Locations Valid at 05/2400Z"
MAP_TIME = "2015-03-06T12:00:00"
SCALE = 2.0  # arcsec/pixel, MDI-like
SHAPE = (1024, 1024)


def empty_map(obstime=MAP_TIME, shape=SHAPE):
    earth = get_earth(obstime)
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=Helioprojective(observer=earth, obstime=obstime))
    header = make_fitswcs_header(shape, centre, scale=[SCALE, SCALE] * u.arcsec / u.pix, unit=u.G)
    return sunpy.map.Map(np.zeros(shape), header)


def expected_position(smap, lon, lat):
    """Where sunpy's solar_rotate_coordinate puts an SRS position at the map's time."""
    srs_coord = SkyCoord(lon, lat, frame=HeliographicStonyhurst(obstime=SRS_TIME))
    rotated = solar_rotate_coordinate(srs_coord, observer=smap.observer_coordinate)
    rotated = rotated.transform_to(smap.coordinate_frame)
    return rotated, np.array(smap.wcs.world_to_pixel(rotated), dtype=float)


def blob(shape, x, y, sigma, peak):
    yy, xx = np.indices(shape)
    return peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


@functools.cache
def active_map():
    """Noise, a strong blob at NOAA 12293 (N05W53 in the SRS) and a weaker one at 12295 (S08W53)."""
    template = empty_map()
    coord_12293, pix_12293 = expected_position(template, 53 * u.deg, 5 * u.deg)
    _, pix_12295 = expected_position(template, 53 * u.deg, -8 * u.deg)
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10, SHAPE)
    data += blob(SHAPE, *pix_12293, sigma=6, peak=-2500)
    data += blob(SHAPE, *pix_12295, sigma=6, peak=1200)
    return sunpy.map.Map(data, template.meta), coord_12293, pix_12293


def test_read_srs_table_accepts_path_or_table():
    table = read_srs_table(SRS_FILE)
    assert isinstance(table, QTable)
    assert read_srs_table(table) is table
    with pytest.raises(TypeError):
        read_srs_table(42)


def test_noaa_regions_rotated_to_map_time():
    smap, coord_12293, pix_12293 = active_map()
    regions = noaa_regions(SRS_FILE, smap)
    srs = read_srs(SRS_FILE)
    # Section II ("regions due to return") has no longitude: dropped; all others kept in order.
    with_position = [n for n, i in zip(srs["Number"], srs["ID"], strict=True) if i != "II"]
    assert list(regions["Number"]) == with_position
    row = regions[regions["Number"] == 12293][0]
    assert row["on_disk"] and row["in_map"]
    assert row["coord"].separation(coord_12293) < 0.05 * u.arcsec
    np.testing.assert_allclose([row["x"].to_value(u.pix), row["y"].to_value(u.pix)], pix_12293, atol=0.05)
    # Half a day of rotation moved it west (+x here: CROTA 0, solar west to the right) by about
    # 6.6 degrees of longitude.
    hgs = row["coord"].transform_to(HeliographicStonyhurst(obstime=smap.date))
    assert 6 * u.deg < hgs.lon - 53 * u.deg < 7 * u.deg
    assert u.isclose(hgs.lat, 5 * u.deg, atol=0.01 * u.deg)


def test_noaa_regions_flags_far_side_and_outside_map():
    # Two days later NOAA 12292 (S08W84 at the SRS time) has rotated behind the west limb.
    later = noaa_regions(SRS_FILE, empty_map("2015-03-08T00:00:00"))
    row = later[later["Number"] == 12292][0]
    assert not row["on_disk"] and not row["in_map"]
    assert later[later["Number"] == 12293][0]["in_map"]
    # A map of the east half of the disk holds none of these western regions, though they are visible.
    east = empty_map().submap([0, 0] * u.pix, top_right=[511, 1023] * u.pix)
    regions = noaa_regions(read_srs(SRS_FILE), east)
    assert np.all(regions["on_disk"]) and not np.any(regions["in_map"])
    assert np.all(regions["x"] > 511 * u.pix)


@pytest.mark.parametrize("size", [128, 65])
def test_region_crop_lands_on_noaa_region(size):
    smap, coord_12293, pix_12293 = active_map()
    crop = region_crop(smap, 12293, size, srs=SRS_FILE)
    assert crop.data.shape == (size, size)
    centre = crop.wcs.pixel_to_world((size - 1) / 2, (size - 1) / 2)
    assert centre.separation(coord_12293) < 1.0 * SCALE * u.arcsec  # nearest-pixel centring
    # The blob is inside, near the middle, and its world position is unchanged by the crop.
    iy, ix = np.unravel_index(np.argmin(crop.data), crop.data.shape)
    assert crop.data[iy, ix] == smap.data.min()
    assert abs(ix - (size - 1) / 2) <= 1 and abs(iy - (size - 1) / 2) <= 1
    assert crop.wcs.pixel_to_world(ix, iy).separation(coord_12293) < 1.0 * SCALE * u.arcsec
    # A SkyCoord centre gives the same crop as the NOAA number.
    same = region_crop(smap, coord_12293, size)
    assert same.bottom_left_coord.separation(crop.bottom_left_coord) < 1e-6 * u.arcsec


def test_region_crop_is_shifted_to_stay_inside_map():
    smap, coord_12293, pix_12293 = active_map()
    # A 400x400 piece of the map whose right edge is 20 pixels beyond the region: a centred 128-pixel
    # crop would stick out by 44 pixels, so it must end at the piece's edge instead.
    right = int(round(pix_12293[0])) + 20
    piece = smap.submap([right - 399, 300] * u.pix, top_right=[right, 699] * u.pix)
    crop = region_crop(piece, 12293, 128, srs=SRS_FILE)
    assert crop.data.shape == (128, 128)
    x0, y0 = (float(v) for v in piece.wcs.world_to_pixel(crop.wcs.pixel_to_world(0, 0)))
    assert x0 == pytest.approx(400 - 128, abs=1e-6)
    # Vertically it is still centred on the region, to the nearest pixel.
    _, region_y = piece.wcs.world_to_pixel(coord_12293)
    assert abs(y0 + 63.5 - region_y) <= 0.5 + 1e-6
    np.testing.assert_array_equal(crop.data, piece.data[int(round(y0)) : int(round(y0)) + 128, -128:])
    assert crop.data.min() == smap.data.min()  # the blob is still in it


def test_region_crop_errors():
    smap, coord_12293, _ = active_map()
    with pytest.raises(ValueError, match="SRS"):
        region_crop(smap, 12293, 64)
    with pytest.raises(ValueError, match="12290"):
        region_crop(smap, 12290, 64, srs=SRS_FILE)
    with pytest.raises(ValueError, match="does not fit"):
        region_crop(smap, 12293, 2048, srs=SRS_FILE)
    with pytest.raises(ValueError, match="behind the limb"):
        region_crop(empty_map("2015-03-08T00:00:00"), 12292, 64, srs=SRS_FILE)
    east = smap.submap([0, 0] * u.pix, top_right=[511, 1023] * u.pix)
    with pytest.raises(ValueError, match="outside"):
        region_crop(east, 12293, 64, srs=SRS_FILE)
    with pytest.raises(ValueError, match="outside"):
        region_crop(east, coord_12293, 64)
    with pytest.raises(TypeError):
        region_crop(smap, "12293", 64)


def test_most_intense_region_finds_strongest_blob():
    smap, coord_12293, _ = active_map()
    found = most_intense_region(smap, 128)
    assert found.separation(coord_12293) < 1.5 * SCALE * u.arcsec
    # The same with the smoothing given as an angle, and the crop around it holds the blob.
    assert (
        most_intense_region(smap, 128, smoothing=30 * u.arcsec).separation(coord_12293)
        < 1.5 * SCALE * u.arcsec
    )
    assert region_crop(smap, found, 128).data.min() == smap.data.min()


def test_most_intense_region_ignores_limb_and_off_disk():
    # A stronger blob at mu < mu_min must not win over a weaker one near disk centre.
    template = empty_map()
    data = blob(SHAPE, 980, 512, sigma=5, peak=3000) + blob(SHAPE, 600, 400, sigma=5, peak=1000)
    smap = sunpy.map.Map(data, template.meta)
    found = most_intense_region(smap, 64, mu_min=0.3)
    x, y = smap.wcs.world_to_pixel(found)
    assert abs(x - 600) <= 1 and abs(y - 400) <= 1
    with pytest.raises(ValueError, match="no field"):
        most_intense_region(template, 64)
    with pytest.raises(ValueError, match="pixels or an angle"):
        most_intense_region(smap, 64, smoothing=3 * u.G)


def test_most_intense_region_is_resolution_independent(hmi_cutout):
    # Real HMI field (CROTA2 ~ 180) and its 2"/pixel version: the default smoothing, size/8 pixels,
    # is the same angle for a 256-pixel fine crop and a 64-pixel coarse one, so the centres agree.
    coarse = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    fine_centre = most_intense_region(hmi_cutout, 256)
    coarse_centre = most_intense_region(coarse, 64)
    assert fine_centre.separation(coarse_centre) < 1.5 * coarse.scale.axis1 * u.pix
    # ...and the region is strong field, not the cut-out's quiet part.
    x, y = (int(round(float(v))) for v in hmi_cutout.wcs.world_to_pixel(fine_centre))
    local = np.abs(hmi_cutout.data[y - 16 : y + 17, x - 16 : x + 17]).mean()
    assert local > 3 * np.nanmean(np.abs(hmi_cutout.data))


@pytest.mark.remote_data
def test_fetch_srs_matches_shipped_file(tmp_path):
    path = fetch_srs("2015-03-06T12:00:00", path=str(tmp_path / "{file}"))
    fetched, shipped = read_srs(path), read_srs(SRS_FILE)
    assert list(fetched["Number"]) == list(shipped["Number"])
