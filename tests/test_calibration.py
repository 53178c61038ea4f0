"""The instrument calibration: which maps are MDI, which name an instrument, and the factor applied."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map

from sunpy_superres.calibration import (
    HMI_NOISE_LEVELS,
    LIU_2012,
    MDI_TO_HMI,
    calibration_factor,
    denormalise,
    disk_radius,
    hmi_noise_clv,
    hmi_noise_level,
    hmi_observing_sequence,
    instrument_known,
    is_mdi,
    normalise,
)
from sunpy_superres.metrics.physics import quiet_sun_noise

from .helpers import synthetic_map


def with_keys(**keys):
    smap = synthetic_map(instrument=None)
    meta = smap.meta.copy()
    for key in ("telescop", "instrume"):
        meta.pop(key, None)
    meta.update(keys)
    return type(smap)(smap.data, meta)


@pytest.mark.parametrize(
    ("keys", "known", "mdi"),
    [
        ({}, False, False),
        ({"telescop": "  "}, False, False),
        ({"telescop": "SOLIS"}, True, False),  # the telescope alone names it
        ({"instrume": "VSM"}, True, False),  # the instrument alone names it
        ({"telescop": "SOHO", "instrume": "MDI"}, True, True),
        ({"telescop": "soho", "instrume": "mdi 96m"}, True, True),
        ({"telescop": " SOHO ", "instrume": " MDI"}, True, True),  # padded values, as FITS cards may be
        ({"telescop": "SOHO", "instrume": "EIT"}, True, False),
        ({"instrume": "MDI"}, True, False),  # MDI only on SOHO
    ],
)
def test_instrument_known_and_is_mdi(keys, known, mdi):
    smap = with_keys(**keys)
    assert instrument_known(smap) is known
    assert is_mdi(smap) is mdi


def test_calibration_factor_follows_the_instrument(mdi_cutout, hmi_cutout):
    assert calibration_factor(mdi_cutout) == (MDI_TO_HMI, LIU_2012) and MDI_TO_HMI == pytest.approx(1 / 1.4)
    assert calibration_factor(with_keys(telescop="SOHO", instrume="MDI")) == (MDI_TO_HMI, LIU_2012)
    assert calibration_factor(hmi_cutout) == (1.0, "none (not MDI)")
    assert calibration_factor(with_keys()) == (1.0, "none (instrument unknown)")
    assert calibration_factor(with_keys(instrume="VSM")) == (1.0, "none (not MDI)")
    assert calibration_factor(mdi_cutout, calibrate=False) == (1.0, "none (calibrate=False)")
    assert calibration_factor(mdi_cutout, calibrate=None) == (1.0, "none (calibrate=False)")
    assert calibration_factor(mdi_cutout, calibrate=0.8) == (0.8, "user-supplied factor")
    for bad in (0, -1.0, float("nan"), float("inf"), "1.4", object()):
        with pytest.raises(
            ValueError, match=r"is not a positive finite factor; pass True \(MDI 1/1.4\), False"
        ):
            calibration_factor(mdi_cutout, calibrate=bad)


HMI = {"telescop": "SDO/HMI"}


@pytest.mark.parametrize(
    ("keys", "sequence"),
    [
        ({**HMI, "instrume": "HMI_SIDE1", "camera": 1, "date-obs": "2011-12-17T05:58:10"}, "mod-C"),
        ({**HMI, "instrume": "HMI_COMBINED", "camera": 3, "date-obs": "2019-06-21T05:58:46"}, "mod-L"),
        # The camera decides, not the date: the header says how the data were taken.
        ({**HMI, "instrume": "HMI_SIDE1", "camera": 1, "date-obs": "2019-06-21T05:58:46"}, "mod-C"),
        ({**HMI, "camera": 3, "date-obs": "2015-01-01T00:00:00"}, "mod-L"),
        ({**HMI, "camera": "1", "date-obs": "2019-06-21T05:58:46"}, "mod-C"),  # written as a string
        ({**HMI, "camera": "none", "date-obs": "2019-06-21T05:58:46"}, "mod-L"),  # unreadable: the date
        ({**HMI, "instrume": "HMI_FRONT2", "date-obs": "2019-06-21T05:58:46"}, "mod-C"),
        # A header that says neither goes by the date against the start of mod-L.
        ({**HMI, "date-obs": "2016-04-13T19:00:00"}, "mod-C"),
        ({**HMI, "date-obs": "2016-04-13T19:20:00"}, "mod-L"),
        ({"instrume": "HMI", "date-obs": "2010-06-01T00:00:00"}, "mod-C"),
        ({"telescop": "SOHO", "instrume": "MDI", "date-obs": "2010-06-01T00:00:00"}, None),
        ({"date-obs": "2019-06-21T05:58:46"}, None),
    ],
)
def test_the_hmi_noise_follows_the_observing_sequence(keys, sequence):
    smap = with_keys(**keys)
    assert hmi_observing_sequence(smap) == sequence
    level, frame = hmi_noise_level(smap), hmi_noise_level(smap, place=False)
    if sequence is None:
        assert level is None and frame is None
    else:  # the synthetic map lies at disk centre, where HMI's noise is lowest
        assert frame == HMI_NOISE_LEVELS[sequence]
        assert level == frame * hmi_noise_clv(smap) and u.isclose(level, 0.857 * frame, rtol=1e-3)


def test_disk_radius_from_the_coordinates():
    # 2" pixels, disk centre at the reference pixel (the middle of 32 x 32: pixel 15.5).
    smap = synthetic_map(shape=(32, 32), scale=2.0)
    rsun = smap.rsun_obs.to_value(u.arcsec)
    r = disk_radius(smap)
    assert r.shape == (32, 32)
    y, x = np.mgrid[0:32, 0:32]
    np.testing.assert_allclose(r, np.hypot(x - 15.5, y - 15.5) * 2 / rsun, rtol=1e-6)
    np.testing.assert_allclose(disk_radius(smap, step=8), r[::8, ::8])
    # A map in another frame (a SHARP-like Carrington CEA patch) is placed through sunpy's coordinates:
    # one at the point below the observer lies at disk centre.
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames
    from sunpy.map.header_helper import make_fitswcs_header

    observer = smap.observer_coordinate
    below = SkyCoord(observer.lon, observer.lat, frame=frames.HeliographicStonyhurst, obstime=smap.date)
    centre = below.transform_to(frames.HeliographicCarrington(observer=observer, obstime=smap.date))
    data = np.zeros((9, 9))
    header = make_fitswcs_header(data, centre, scale=[0.03, 0.03] * u.deg / u.pix, projection_code="CEA")
    patch = sunpy.map.Map(data, header)
    r = disk_radius(patch)
    assert r[4, 4] == pytest.approx(0, abs=1e-6)
    # 4 pixels of 0.03 deg of heliographic longitude from disk centre: sin(0.12 deg) solar radii, seen
    # from 1 au a little larger (0.5 %: the disk centre is nearer to the observer than the limb).
    assert r[4, 8] == pytest.approx(np.sin(np.deg2rad(0.12)), rel=1e-2)


@pytest.mark.parametrize(
    ("centre", "size", "expected"),
    [
        ((0, 0), 32, 0.857),  # disk centre
        ((0, 0.35), 32, 0.912),  # a ring's centre: the ring's value
        ((0.6, 0), 32, (0.981 + 1.015) / 2),  # between rings' centres: interpolated
        ((0, 0.97), 8, 1.219),  # beyond the last ring: held
    ],
)
def test_the_hmi_noise_rises_from_disk_centre_to_limb(centre, size, expected):
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames
    from sunpy.map.header_helper import make_fitswcs_header

    rsun = synthetic_map().rsun_obs
    ref = SkyCoord(centre[0] * rsun, centre[1] * rsun, obstime="2010-10-15", observer="earth",
                   frame=frames.Helioprojective)  # fmt: skip
    data = np.zeros((size, size))
    smap = sunpy.map.Map(data, make_fitswcs_header(data, ref, scale=[0.5, 0.5] * u.arcsec / u.pix))
    assert hmi_noise_clv(smap) == pytest.approx(expected, abs=2e-3)


def test_the_noise_of_a_map_off_the_disk_is_its_frames():
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames
    from sunpy.map.header_helper import make_fitswcs_header

    rsun = synthetic_map().rsun_obs
    off = SkyCoord(1.5 * rsun, 0 * rsun, obstime="2010-10-15", observer="earth", frame=frames.Helioprojective)
    data = np.zeros((16, 16))
    smap = sunpy.map.Map(
        data, make_fitswcs_header(data, off, scale=[2, 2] * u.arcsec / u.pix, instrument="HMI")
    )
    assert hmi_noise_clv(smap) is None
    assert hmi_noise_level(smap) == hmi_noise_level(smap, place=False) == HMI_NOISE_LEVELS["mod-C"]


def test_the_noise_of_each_part_of_a_map_is_that_of_its_place():
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames
    from sunpy.map.header_helper import make_fitswcs_header

    # A 2"-pixel disk: the box at its centre, one a ring out, one off the disk, and the whole map.
    rsun = synthetic_map().rsun_obs
    centre = SkyCoord(
        0 * rsun, 0 * rsun, obstime="2010-10-15", observer="earth", frame=frames.Helioprojective
    )
    data = np.zeros((1100, 1100))
    smap = sunpy.map.Map(data, make_fitswcs_header(data, centre, scale=[2, 2] * u.arcsec / u.pix))
    pix = (rsun / (2 * u.arcsec)).to_value(u.one)  # pixels per solar radius
    c = 549.5  # the reference pixel: disk centre
    ring = int(round(c + 0.35 * pix))  # a column 0.35 radii out, on the equator
    boxes = [
        (slice(546, 554), slice(546, 554)),
        (slice(546, 554), slice(ring - 1, ring + 1)),
        (slice(0, 8), slice(0, 8)),  # a corner, 1.4 radii out
        (slice(0, 1100), slice(0, 1100)),
    ]
    near, ring_value, off, whole = hmi_noise_clv(smap, boxes)
    assert near == pytest.approx(0.857, abs=2e-3) and ring_value == pytest.approx(0.912, abs=3e-3)
    assert off is None and whole == pytest.approx(hmi_noise_clv(smap), abs=2e-3)


def test_the_shipped_hmi_cutout_has_the_noise_of_its_sequence_and_place(hmi_cutout):
    # Both cameras' filtergrams (mod-L) average down the noise of one (mod-C): the training frames
    # measure 4.84 and 3.53 G. The shipped cut-out (2011-12-17, HMI_SIDE1, an active region) measures
    # 4.3 G itself: one camera's noise, not two cameras', and lower than its frame's, as it lies a
    # third of the way from disk centre to limb.
    assert hmi_observing_sequence(hmi_cutout) == "mod-C"
    assert hmi_noise_level(hmi_cutout, place=False) == HMI_NOISE_LEVELS["mod-C"] == 4.8 * u.G
    own = quiet_sun_noise(hmi_cutout)
    assert abs(own - HMI_NOISE_LEVELS["mod-C"]) < abs(own - HMI_NOISE_LEVELS["mod-L"])
    placed = hmi_noise_level(hmi_cutout)
    assert 0.85 < hmi_noise_clv(hmi_cutout) < 0.95
    assert abs(placed - own) < 0.05 * own < abs(HMI_NOISE_LEVELS["mod-C"] - own)


def test_normalisation_to_network_units_and_back():
    field = np.array([[-3000, 0], [1500, 3000]], dtype=np.int16)  # integer data are promoted
    units = normalise(field)
    assert units.dtype == np.float32
    np.testing.assert_array_equal(units, [[-1.0, 0.0], [0.5, 1.0]])
    back = denormalise(units)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, field.astype(np.float32))
