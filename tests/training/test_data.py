"""Training data: the paper's degradation, the date split, crops from real full-disk HMI."""

import numpy as np
import pytest
import torch

from sunpy_superres.training.data import CropDataset, FullDisk, degrade, observation_date, split_by_date


def test_degrade_block_mean_and_replication():
    hr = np.arange(64, dtype=np.float32).reshape(8, 8)
    lr = degrade(hr)
    assert lr.shape == hr.shape
    np.testing.assert_allclose(lr[:4, :4], hr[:4, :4].mean())
    np.testing.assert_allclose(
        lr.reshape(2, 4, 2, 4).mean(axis=(1, 3)), hr.reshape(2, 4, 2, 4).mean(axis=(1, 3))
    )
    np.testing.assert_allclose(degrade(torch.from_numpy(hr)[None, None])[0, 0].numpy(), lr)
    with pytest.raises(ValueError, match="multiple of the factor"):
        degrade(np.zeros((6, 8)))


def files(tmp_path, names):
    out = []
    for n in names:
        p = tmp_path / n
        p.write_bytes(b"")
        out.append(p)
    return out


def test_split_by_date_is_disjoint_and_chronological(tmp_path):
    paths = files(
        tmp_path,
        [
            f"hmi.M_720s.2011{m:02d}{d:02d}_{h:02d}0000_TAI.magnetogram.fits"
            for m in (1, 2, 3)
            for d in (1, 15)
            for h in (0, 6)
        ],
    )
    train, val = split_by_date(paths, validation_fraction=0.34)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(paths)
    assert {observation_date(p) for p in train}.isdisjoint({observation_date(p) for p in val})
    assert max(observation_date(p) for p in train) < min(observation_date(p) for p in val)
    train_m, val_m = split_by_date(paths, validation_dates=["2011-02"], period="month")
    assert {observation_date(p)[:7] for p in val_m} == {"2011-02"}
    assert all(observation_date(p)[:7] != "2011-02" for p in train_m)
    with pytest.raises(ValueError, match="empty side"):
        split_by_date(paths, validation_dates=["2012-01-01"])
    with pytest.raises(ValueError, match="at least two"):
        split_by_date(paths[:2])


def test_real_split(hmi_full_disk_paths):
    train, val = split_by_date(hmi_full_disk_paths.values(), validation_fraction=0.34)
    assert [observation_date(p) for p in val] == ["2019-06-21"]
    assert len(train) == 2


def test_crops_inside_disk_deterministic_and_augmented(hmi_full_disk_paths):
    path = hmi_full_disk_paths["2011-12-17"]
    ds = CropDataset([path], crop_size=64, strong_field_fraction=1.0, seed=1)
    a, b = ds.sample(5), ds.sample(5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 64) and a.dtype == np.float32 and np.isfinite(a).all() and np.abs(a).max() <= 1
    batch = ds.batch(3, 4, rank=1, world_size=2)  # global indices 28..31
    np.testing.assert_array_equal(batch[0], ds.sample(28))
    # Strong-field weighting finds active regions: most crops hold some field above 300 G.
    strong = np.mean([np.abs(ds.sample(i)).max() > 0.1 for i in range(20)])
    quiet = CropDataset([path], crop_size=64, strong_field_fraction=0.0, seed=1)
    assert strong > np.mean([np.abs(quiet.sample(i)).max() > 0.1 for i in range(20)])
    # Augmentation flips polarity: signed means of many crops scatter around zero both ways.
    means = [ds.sample(i).mean() for i in range(40)]
    assert min(means) < 0 < max(means)
    disk = FullDisk(path)
    assert 1900 < disk.radius < 2000 and abs(disk.centre[0] - 2045.8) < 2


def _write_patch(path, shape=(70, 90), value=300.0, unit="Mx/cm^2", border=6):
    from astropy.io import fits

    data = np.full(shape, np.nan, dtype=np.float32)
    data[border:-border, border:-border] = value
    header = fits.Header()
    if unit is not None:
        header["BUNIT"] = unit
    fits.PrimaryHDU().writeto(path, overwrite=True)
    fits.append(path, data, header)
    return path


def test_patch_crops_lie_inside_the_valid_area(tmp_path):
    from sunpy_superres.training.data import CropDataset

    big = _write_patch(tmp_path / "hmi.sharp_cea_720s.1.20120306_142400_TAI.magnetogram.fits")
    small = _write_patch(
        tmp_path / "hmi.sharp_cea_720s.2.20120306_142400_TAI.magnetogram.fits", shape=(30, 30)
    )
    ds = CropDataset([], crop_size=32, patches=[big, small], patch_fraction=1.0, seed=3)
    assert len(ds._patches) == 1  # the 30x30 patch holds no 32x32 crop
    batch = ds.batch(0, 16)
    # 300 Mx/cm^2 = 300 G everywhere inside; a NaN border pixel would have become 0.
    np.testing.assert_allclose(np.abs(batch), 0.1, rtol=1e-6)
    np.testing.assert_array_equal(ds.batch(0, 16), batch)  # a pure function of (seed, index)
    with pytest.raises(ValueError, match="no patch holds"):
        CropDataset([], crop_size=32, patches=[small], patch_fraction=0.5)


def test_patch_units(tmp_path):
    from sunpy_superres.training.data import Patch

    no_unit = Patch(_write_patch(tmp_path / "a_20250504_150000.fits", unit=None, value=1500.0))
    assert np.nanmax(no_unit.data) == pytest.approx(0.5) and no_unit.date == "2025-05-04"
    with pytest.raises(ValueError, match="not a magnetic field"):
        Patch(_write_patch(tmp_path / "b_20250504_150000.fits", unit="DN/s"))
