"""MDI/HMI pairs: degradation, grid alignment across observers and times, crops, arrays, date split, JSOC."""

import datetime
import os

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header
from sunpy.sun.models import differential_rotation

from sunpy_superres.calibration import MDI_TO_HMI
from sunpy_superres.maps import finer_meta
from sunpy_superres.training.pairs import (
    FINETUNE_PERIOD,
    TEST_PERIOD,
    MagnetogramPair,
    degrade_to_mdi,
    fetch_pair,
    make_pair,
    make_synthetic_pair,
    split_paper_dates,
)


def grid_of(meta, shape):
    return sunpy.map.Map(np.zeros(shape, np.float32), meta)


def assert_same_grid(smap, meta, shape):
    """Corners (pixel edges) and centre of ``smap`` are where the header ``meta`` puts them."""
    ref = grid_of(meta, shape)
    assert smap.data.shape == shape
    ny, nx = shape
    points = [
        (-0.5, -0.5),
        (nx - 0.5, -0.5),
        (-0.5, ny - 0.5),
        (nx - 0.5, ny - 0.5),
        ((nx - 1) / 2, (ny - 1) / 2),
    ]
    for px, py in points:
        here, there = smap.pixel_to_world(px * u.pix, py * u.pix), ref.pixel_to_world(px * u.pix, py * u.pix)
        assert here.separation(there) < 1 * u.mas
    assert smap.observer_coordinate.separation_3d(ref.observer_coordinate) < 1 * u.m


def block_mean(data, f=4):
    ny, nx = data.shape
    return data.reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))


# --- degradation -------------------------------------------------------------------------------------


def test_degrade_grid_is_the_coarse_grid(hmi_cutout):
    lr = degrade_to_mdi(hmi_cutout, seed=0)
    assert lr.data.shape == (128, 128) and lr.data.dtype == np.float32
    assert u.allclose(lr.scale.axis1, 4 * hmi_cutout.scale.axis1)
    # finer_meta of the degraded grid is HMI's grid: the pair's target needs no resampling.
    assert_same_grid(hmi_cutout, finer_meta(lr.meta, 4, lr.data.shape), hmi_cutout.data.shape)
    assert lr.date == hmi_cutout.date
    keys = ("degpsf", "degnoise", "deglevel", "degseed")
    assert tuple(lr.meta[k] for k in keys) == (3.3, 9.0, 1.4, 0)
    assert "degrade_to_mdi" in lr.meta["history"]


def test_degrade_block_means_level_and_noise(hmi_cutout):
    truth = block_mean(np.asarray(hmi_cutout.data, np.float64))
    exact = degrade_to_mdi(hmi_cutout, psf_fwhm=0 * u.arcsec, noise=0 * u.G)
    np.testing.assert_allclose(exact.data * MDI_TO_HMI, truth, atol=1e-3)  # float32 G
    noisy = degrade_to_mdi(hmi_cutout, psf_fwhm=0 * u.arcsec, noise=9 * u.G, seed=1)
    residual = noisy.data - 1.4 * truth
    assert abs(residual.std() - 9.0) < 0.5 and abs(residual.mean()) < 0.3
    np.testing.assert_array_equal(noisy.data, degrade_to_mdi(hmi_cutout, psf_fwhm=0 * u.arcsec, seed=1).data)
    assert not np.array_equal(noisy.data, degrade_to_mdi(hmi_cutout, psf_fwhm=0 * u.arcsec, seed=2).data)


def test_degrade_psf_keeps_flux_and_removes_small_scales(hmi_cutout):
    truth = block_mean(np.asarray(hmi_cutout.data, np.float64))
    blurred = degrade_to_mdi(hmi_cutout, noise=0 * u.G).data * MDI_TO_HMI
    inner = np.s_[8:-8, 8:-8]  # away from the crop edge, where the normalised kernel is truncated
    assert abs(blurred[inner].sum() / truth[inner].sum() - 1) < 0.01
    assert np.abs(blurred).sum() < 0.99 * np.abs(truth).sum()  # opposite polarities partly cancel
    assert np.diff(blurred, axis=1).std() < 0.6 * np.diff(truth, axis=1).std()


def test_degrade_handles_nan_and_checks_input(hmi_cutout):
    data = np.array(hmi_cutout.data, np.float64)
    data[:40, :] = np.nan  # an off-disk band
    lr = degrade_to_mdi(sunpy.map.Map(data, hmi_cutout.meta), seed=0)
    assert np.isnan(lr.data[:10]).all() and np.isfinite(lr.data[10:]).all()
    with pytest.raises(ValueError, match="multiple of factor"):
        degrade_to_mdi(hmi_cutout.submap([0, 0] * u.pix, top_right=[509, 509] * u.pix))
    with pytest.raises(ValueError, match="magnetic"):
        degrade_to_mdi(sunpy.map.Map(hmi_cutout.data, {**hmi_cutout.meta, "bunit": "m"}))
    with pytest.raises(TypeError, match="sunpy Map"):
        degrade_to_mdi(hmi_cutout.data)


# --- pairs -------------------------------------------------------------------------------------------


def test_synthetic_pair_block_means_equal_calibrated_input(hmi_cutout):
    """Pair an MDI-like map made from real HMI: HR block means = LR/1.4 (the calibration) + noise."""
    mdi_like = degrade_to_mdi(hmi_cutout, psf_fwhm=0 * u.arcsec, noise=9 * u.G, seed=3)
    pair = make_pair(mdi_like, hmi_cutout)
    assert pair.factor == 4 and pair.date == mdi_like.date
    np.testing.assert_allclose(pair.lr.data, mdi_like.data * MDI_TO_HMI, rtol=1e-6)
    assert pair.lr.meta["srcalfac"] == pytest.approx(MDI_TO_HMI)
    assert_same_grid(pair.hr, finer_meta(pair.lr.meta, 4, pair.lr.data.shape), (512, 512))
    # The target grid is HMI's own here, so the reprojection is the identity.
    np.testing.assert_allclose(pair.hr.data, hmi_cutout.data, atol=1e-3)
    residual = pair.lr.data - block_mean(pair.hr.data.astype(np.float64))
    assert abs(residual.std() - 9 * MDI_TO_HMI) < 0.5 and abs(residual.mean()) < 0.3
    assert pair.hr.meta["telescop"] == hmi_cutout.meta["telescop"]
    assert pair.hr.meta["hmidate"] == hmi_cutout.date.isot


@pytest.mark.parametrize("minutes", [0, 30])
def test_pair_across_observers_and_times(hmi_cutout, minutes):
    """An MDI-like grid seen from another observer (1 degree away, 1% closer) and later in time."""
    hmi_observer = hmi_cutout.observer_coordinate
    when = hmi_cutout.reference_date + minutes * u.min
    observer = SkyCoord(
        hmi_observer.lon + 1 * u.deg,
        hmi_observer.lat,
        0.99 * hmi_observer.radius,
        frame=frames.HeliographicStonyhurst,
        obstime=when,
        rsun=hmi_cutout.rsun_meters,
    )
    frame = frames.Helioprojective(observer=observer, obstime=when, rsun=hmi_cutout.rsun_meters)
    centre = hmi_cutout.center.transform_to(frame)  # only a pointing; the region stays inside the cut-out
    header = make_fitswcs_header(
        (96, 96), centre, scale=[2, 2] * u.arcsec / u.pix, unit=u.G, telescope="SOHO", instrument="MDI-like"
    )
    mdi_like = sunpy.map.Map(np.zeros((96, 96), np.float32), header)

    if minutes:
        with pytest.raises(ValueError, match="apart"):
            make_pair(mdi_like, hmi_cutout, max_time_difference=10 * u.min)
    pair = make_pair(mdi_like, hmi_cutout, max_time_difference=1 * u.h)
    assert_same_grid(pair.hr, finer_meta(pair.lr.meta, 4, (96, 96)), (384, 384))
    assert pair.hr.reference_date == mdi_like.reference_date

    def spot_centre(smap):
        """|B|-weighted heliographic position of the strongest spot (|B| > 1000 G near the peak)."""
        b = np.abs(np.nan_to_num(np.asarray(smap.data, np.float64)))
        py, px = np.unravel_index(np.argmax(b), b.shape)
        iy, ix = np.nonzero(b > 1000)
        near = np.hypot(iy - py, ix - px) < 15
        iy, ix = iy[near], ix[near]
        hgs = smap.pixel_to_world(ix * u.pix, iy * u.pix).transform_to(frames.HeliographicStonyhurst)
        return (
            np.average(hgs.lon.to_value(u.deg), weights=b[iy, ix]),
            np.average(hgs.lat.to_value(u.deg), weights=b[iy, ix]),
        )

    lon0, lat0 = spot_centre(hmi_cutout)
    lon1, lat1 = spot_centre(pair.hr)
    elapsed = pair.hr.coordinate_frame.obstime - hmi_cutout.coordinate_frame.obstime
    rotation = differential_rotation(elapsed.to(u.min), lat0 * u.deg, frame_time="synodic").to_value(u.deg)
    assert abs(lat1 - lat0) < 0.01
    assert abs((lon1 - lon0) - rotation) < 0.01  # the 1-degree parallax is undone, the rotation applied
    # Guard the test: copying HMI's pixels onto the new grid would misplace the spot by about the parallax.
    naive = sunpy.map.Map(np.asarray(hmi_cutout.data)[64:448, 64:448], pair.hr.meta)
    assert abs(spot_centre(naive)[0] - lon0) > 0.3


def test_crop_around_most_intense_region(hmi_cutout):
    full = make_synthetic_pair(hmi_cutout, seed=0)
    pair = make_synthetic_pair(hmi_cutout, crop_size=48, seed=0)
    assert pair.lr.data.shape == (48, 48) and pair.hr.data.shape == (192, 192)
    assert_same_grid(pair.hr, finer_meta(pair.lr.meta, 4, (48, 48)), (192, 192))
    # The strongest input pixel lies inside the crop.
    iy, ix = np.unravel_index(np.nanargmax(np.abs(full.lr.data)), full.lr.data.shape)
    x, y = pair.lr.world_to_pixel(full.lr.pixel_to_world(ix * u.pix, iy * u.pix))
    assert 0 <= x.value < 48 and 0 <= y.value < 48
    with pytest.raises(ValueError, match="does not fit"):
        make_synthetic_pair(hmi_cutout, crop_size=256)


def test_pair_refuses_distant_times_and_bad_units(mdi_cutout, hmi_cutout):
    with pytest.raises(ValueError, match="apart"):
        make_pair(mdi_cutout, hmi_cutout)  # 2010-10-15 and 2011-12-17
    with pytest.raises(ValueError, match="magnetic"):
        make_pair(sunpy.map.Map(mdi_cutout.data, {**mdi_cutout.meta, "bunit": "DN"}), hmi_cutout)


def test_to_arrays(hmi_cutout):
    pair = make_synthetic_pair(hmi_cutout, seed=0)
    hr_data = np.array(pair.hr.data)
    hr_data[:8, :8] = np.nan
    hr_data[100, 100] = 4500.0
    pair = MagnetogramPair(lr=pair.lr, hr=sunpy.map.Map(hr_data, pair.hr.meta))
    lr, hr, valid = pair.to_arrays()
    assert lr.shape == (128, 128) and hr.shape == (512, 512) and lr.dtype == hr.dtype == np.float32
    assert not valid[:8, :8].any() and valid[8:, 8:].all()
    assert (hr[:8, :8] == 0).all() and hr[100, 100] == 1.0  # filled and clipped (section 2)
    np.testing.assert_allclose(lr, np.clip(pair.lr.data / 3000, -1, 1), rtol=1e-6)
    _, raw, _ = pair.to_arrays(clip=False, fill=-9)
    assert raw[100, 100] == pytest.approx(1.5) and (raw[:8, :8] == -9).all()


# --- date split --------------------------------------------------------------------------------------


def test_paper_split():
    items = [
        "2010-04-30T23:59:59",
        "2010-05-01T00:00:00",
        datetime.datetime(2010, 7, 4, 12),
        "2010-08-31T23:59:59",
        "2010.09.01_00:00:00_TAI",  # 2010-08-31 23:59:26 UTC: days are UTC days
        "2010-09-01T00:10:00",
        "mdi.fd_M_96m_lev182.20110411_000000_TAI.data.fits",
        "2011-04-12T00:00:00",
    ]
    tune, test = split_paper_dates(items)
    assert tune == items[1:5]
    assert test == items[5:7]
    assert (FINETUNE_PERIOD, TEST_PERIOD) == (("2010-05-01", "2010-08-31"), ("2010-09-01", "2011-04-11"))


def test_paper_split_no_day_on_both_sides():
    hours = [
        f"{d.isoformat()}"
        for d in (datetime.datetime(2010, 4, 25) + datetime.timedelta(hours=7 * k) for k in range(1300))
    ]
    tune, test = split_paper_dates(hours)
    assert len(tune) > 400 and len(test) > 700
    assert not {h[:10] for h in tune} & {h[:10] for h in test}
    assert max(tune) < min(test)


def test_paper_split_of_pairs_and_bad_periods(hmi_cutout):
    pair = make_synthetic_pair(hmi_cutout, seed=0)  # 2011-12-17: outside both periods of the paper
    assert split_paper_dates([pair]) == ([], [])
    december, january = ("2011-12-01", "2011-12-31"), ("2012-01-01", "2012-01-31")
    assert split_paper_dates([pair], finetune=december, test=january) == ([pair], [])
    with pytest.raises(ValueError, match="share days"):
        split_paper_dates([], finetune=("2010-05-01", "2010-09-01"))
    with pytest.raises(ValueError, match="before it starts"):
        split_paper_dates([], test=("2011-04-11", "2010-09-01"))
    with pytest.raises(TypeError, match="observation date"):
        split_paper_dates([42])


# --- JSOC --------------------------------------------------------------------------------------------


def test_fetch_pair_needs_jsoc_email(monkeypatch):
    monkeypatch.delenv("JSOC_EMAIL", raising=False)
    with pytest.raises(RuntimeError, match="JSOC_EMAIL"):
        fetch_pair("2010-10-15T00:00:00")


@pytest.mark.remote_data
def test_fetch_real_pair(tmp_path):
    pytest.importorskip("drms")
    if not os.environ.get("JSOC_EMAIL"):
        pytest.skip("set JSOC_EMAIL to an address registered with JSOC exports")
    mdi_file, hmi_file = fetch_pair("2010-10-15T00:00:00", path=tmp_path)
    mdi, hmi = sunpy.map.Map(mdi_file), sunpy.map.Map(hmi_file)
    pair = make_pair(mdi, hmi, crop_size=256)
    assert pair.lr.data.shape == (256, 256) and pair.hr.data.shape == (1024, 1024)
    assert_same_grid(pair.hr, finer_meta(pair.lr.meta, 4, (256, 256)), (1024, 1024))
    # Calibrated MDI and HMI agree on the large scales of the active region.
    lr, hr, valid = pair.to_arrays()
    assert np.corrcoef(lr.ravel(), block_mean(hr).ravel())[0, 1] > 0.8
