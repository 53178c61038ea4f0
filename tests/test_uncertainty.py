"""UncertaintyMap: samples from superresolve, std map, 2" split, FITS round trip, map operations."""

import pickle

import astropy.units as u
import matplotlib
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits
from sunpy.map.sources import MDIMap

from sunpy_superres import UncertaintyMap, superresolve

from .helpers import NoisyNearest

matplotlib.use("Agg")


@pytest.fixture
def noisy():
    return NoisyNearest(device="cpu")


@pytest.fixture
def um(mdi_cutout, noisy):
    return superresolve(mdi_cutout, model=noisy, samples=6, seed=3, keep_samples=True, progress=False)


def test_samples_give_mean_and_std(um, mdi_cutout, noisy):
    assert isinstance(um, UncertaintyMap)
    assert isinstance(um, MDIMap)  # the instrument class is kept
    assert um.data.shape == (512, 512)
    samples = um.samples.to_value(u.G)
    assert samples.shape == (6, 512, 512)
    np.testing.assert_allclose(um.data, samples.mean(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(um.std.to_value(u.G), samples.std(axis=0, ddof=1), rtol=1e-4, atol=1e-3)
    # The stand-in adds noise of 0.01 network units = 30 G: the std must say so.
    assert np.nanmedian(um.std.to_value(u.G)) == pytest.approx(30, rel=0.1)
    assert um.meta["srsample"] == 6
    assert um.std.unit == u.G


def test_samples_independent_and_reproducible(mdi_cutout, noisy, um):
    # Same seed -> the same samples whatever the batching of the tiles (seeds follow tile positions).
    one = superresolve(
        mdi_cutout,
        model=noisy,
        samples=3,
        seed=3,
        keep_samples=True,
        progress=False,
        tile_size=48,
        overlap=16,
        batch_size=1,
    )
    five = superresolve(
        mdi_cutout,
        model=noisy,
        samples=3,
        seed=3,
        keep_samples=True,
        progress=False,
        tile_size=48,
        overlap=16,
        batch_size=5,
    )
    np.testing.assert_array_equal(one.samples, five.samples)
    other = superresolve(mdi_cutout, model=noisy, samples=6, seed=4, progress=False)
    assert not np.allclose(other.data, um.data)
    s = um.samples.value
    corr = np.corrcoef((s[0] - s.mean(0)).ravel(), (s[1] - s.mean(0)).ravel())[0, 1]
    assert abs(corr) < 0.35  # independent draws (about -1/(N-1) for deviations from a common mean)


def test_same_seed_same_result(mdi_cutout, noisy, um):
    again = superresolve(mdi_cutout, model=noisy, samples=6, seed=3, progress=False)
    np.testing.assert_array_equal(again.data, um.data)
    np.testing.assert_array_equal(again.std, um.std)
    assert again.samples is None  # not kept unless asked


def test_std_map_has_same_wcs(um):
    std = um.std_map
    assert isinstance(std, MDIMap) and not isinstance(std, UncertaintyMap)
    assert std.wcs.wcs.compare(um.wcs.wcs)
    np.testing.assert_array_equal(std.data, um.std.value)


def test_scale_split(um):
    small = um.small_scale_uncertainty()
    large = um.large_scale_uncertainty()
    np.testing.assert_allclose(small.data + large.data, um.std.value, atol=1e-3)
    # White noise per 0.5" pixel: most of its variation is below 2".
    assert np.nanstd(small.data) > np.nanstd(large.data - np.nanmean(large.data))


def test_fits_round_trip(um, tmp_path):
    path = um.save(tmp_path / "um.fits")
    back = UncertaintyMap.read(path)
    assert isinstance(back, MDIMap) and isinstance(back, UncertaintyMap)
    np.testing.assert_array_equal(back.data, um.data)
    np.testing.assert_array_equal(back.std, um.std)
    np.testing.assert_array_equal(back.samples, um.samples)
    assert back.meta["srmodel"] == "noisy-nearest"
    assert (
        back.pixel_to_world(0 * u.pix, 0 * u.pix).separation(um.pixel_to_world(0 * u.pix, 0 * u.pix))
        < 1 * u.mas
    )
    with pytest.raises(FileExistsError):
        um.save(path)
    # Without samples, a plain sunpy reader sees the mean (primary HDU) and the std (STD) as maps.
    plain_path = UncertaintyMap.from_map(um.mean_map, std=um.std.value).save(tmp_path / "plain.fits")
    mean_map, std_map = sunpy.map.Map(plain_path)
    np.testing.assert_array_equal(mean_map.data, um.data)
    np.testing.assert_array_equal(std_map.data, um.std.value)


def test_read_rejects_plain_fits(mdi_cutout, tmp_path):
    path = tmp_path / "plain.fits"
    fits.writeto(path, mdi_cutout.data)
    with pytest.raises(ValueError, match="no STD extension"):
        UncertaintyMap.read(path)


def test_submap_superpixel_resample_keep_std(um):
    sub = um.submap([10, 20] * u.pix, top_right=[73, 83] * u.pix)
    assert isinstance(sub, UncertaintyMap) and isinstance(sub, MDIMap)
    np.testing.assert_allclose(sub.std.value, um.std.value[20:84, 10:74], rtol=1e-5)
    np.testing.assert_array_equal(sub.samples.value, um.samples.value[:, 20:84, 10:74])

    sp = um.superpixel((4, 4) * u.pix, func=np.mean)
    block = um.samples.value.reshape(6, 128, 4, 128, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(sp.data, block.mean(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sp.std.value, block.std(axis=0, ddof=1), rtol=1e-4, atol=1e-3)
    # Averaging 16 independent noisy pixels shrinks the std about 4x: exact from the samples.
    assert np.nanmedian(sp.std.value) < 0.5 * np.nanmedian(um.std.value)

    rs = um.resample([256, 256] * u.pix)
    assert rs.std.shape == (256, 256) and isinstance(rs, UncertaintyMap)
    # Each sample resampled by sunpy itself; mean and std of the result are those of these samples
    # (linear interpolation commutes with the mean, so the mean is also the resampled mean).
    alone = np.stack([sunpy.map.Map(s.value, um.meta).resample([256, 256] * u.pix).data for s in um.samples])
    np.testing.assert_allclose(rs.samples.value, alone, rtol=1e-6)
    np.testing.assert_allclose(rs.data, alone.mean(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(rs.std.value, alone.std(axis=0, ddof=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(rs.data, um.mean_map.resample([256, 256] * u.pix).data, rtol=1e-4, atol=1e-2)
    assert rs.wcs.wcs.compare(um.mean_map.resample([256, 256] * u.pix).wcs.wcs)


def test_operations_without_samples(mdi_cutout, noisy):
    um = superresolve(mdi_cutout, model=noisy, samples=3, seed=0, progress=False)
    sp = um.superpixel((4, 4) * u.pix, func=np.mean)
    # Without samples: the fully-correlated bound, mean of the std.
    np.testing.assert_allclose(
        sp.std.value, um.std.value.reshape(128, 4, 128, 4).mean(axis=(1, 3)), rtol=1e-5
    )
    sub = um.submap([0, 0] * u.pix, top_right=[15, 15] * u.pix)
    np.testing.assert_array_equal(sub.std.value, um.std.value[:16, :16])


def test_arithmetic_drops_uncertainty(um):
    doubled = um * 2
    assert not isinstance(doubled, UncertaintyMap)
    assert isinstance(doubled, MDIMap)


def test_pickle(um):
    back = pickle.loads(pickle.dumps(um))
    assert type(back) is type(um)
    np.testing.assert_array_equal(back.std, um.std)


def test_plot_side_by_side(um):
    import matplotlib.pyplot as plt

    images = um.plot()
    assert len(images) == 2
    fig = images[0].figure
    assert len(fig.axes) == 4  # two maps, two colour bars
    assert "G" in fig.axes[2].get_ylabel() or "G" in fig.axes[3].get_ylabel()
    plt.close(fig)
    fig = plt.figure()
    ax = fig.add_subplot(projection=um)
    assert um.plot(axes=ax) is not None
    plt.close(fig)


def test_bad_shapes(mdi_cutout):
    with pytest.raises(ValueError, match="std must have the data's shape"):
        UncertaintyMap(mdi_cutout.data, mdi_cutout.meta, std=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="samples must have shape"):
        UncertaintyMap(mdi_cutout.data, mdi_cutout.meta, samples=np.zeros((2, 3, 3)))


def test_reading_a_mdi_file_still_gives_mdimap(mdi_cutout, um):
    """The combined class must not take over sunpy's Map factory."""
    from sunpy_superres.data import MDI_AR_CUTOUT

    assert type(sunpy.map.Map(MDI_AR_CUTOUT)) is MDIMap


def test_superresolve_applies_the_models_calibration(mdi_cutout):
    """A model's calibration scales the spread per |B| bin and is recorded; it can be turned off."""
    from sunpy_superres.conformal import StdCalibration

    from .helpers import NoisyNearest

    model = NoisyNearest(device="cpu")
    raw = superresolve(mdi_cutout, model=model, samples=4, seed=2, progress=False)
    assert raw.meta["sruncal"] == "none"
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0, 100.0), scales=((2.0, 5.0),), samples=(4,)
    )
    cal = superresolve(mdi_cutout, model=model, samples=4, seed=2, progress=False)
    np.testing.assert_array_equal(cal.data, raw.data)
    weak = np.abs(raw.data) < 100
    np.testing.assert_allclose(cal.std.value[weak], 2 * raw.std.value[weak], rtol=1e-5)
    np.testing.assert_allclose(cal.std.value[~weak], 5 * raw.std.value[~weak], rtol=1e-5)
    assert cal.meta["sruncal"] == "conformal N=4 sm=0px 0-100G:2 >100G:5"
    off = superresolve(
        mdi_cutout, model=model, samples=4, seed=2, calibrate_uncertainty=False, progress=False
    )
    np.testing.assert_array_equal(off.std.value, raw.std.value)
    assert off.meta["sruncal"] == "none"
    # Another sample count: the Student-t carry-over of the factors.
    two = superresolve(mdi_cutout, model=model, samples=2, seed=2, progress=False)
    two_raw = superresolve(
        mdi_cutout, model=model, samples=2, seed=2, calibrate_uncertainty=False, progress=False
    )
    ratio = model.uncertainty_calibration.factors(2)[0]
    w2 = np.abs(two.data) < 100
    np.testing.assert_allclose(two.std.value[w2], ratio * two_raw.std.value[w2], rtol=1e-5)
    assert superresolve(mdi_cutout, model=model, progress=False).meta.get("sruncal") is None
    # Factors fitted per noise level follow the level asked of the model (interpolated between them).
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0, 100.0),
        scales=((2.0, 5.0),),
        samples=(4,),
        noise_levels_gauss=(2.0, 4.0),
        noise_ratios=(((0.5, 1.0),), ((1.5, 1.0),)),
    )
    model.noise_level = 3.5
    level = superresolve(mdi_cutout, model=model, samples=4, seed=2, progress=False)
    np.testing.assert_allclose(level.std.value[weak], 1.25 * 2 * raw.std.value[weak], rtol=1e-5)
    np.testing.assert_allclose(level.std.value[~weak], 5 * raw.std.value[~weak], rtol=1e-5)
    assert level.meta["sruncal"] == "conformal N=4 sm=0px noise=3.5G 0-100G:2.5 >100G:5"


def test_antithetic_pairs_cancel_their_noise(mdi_cutout):
    """With ``antithetic=True`` sample 2k + 1 is sample 2k's noise negated: a linear model's pair means are exact."""
    model = NoisyNearest(device="cpu")
    kwargs = dict(model=model, samples=4, seed=5, consistency=False, keep_samples=True, progress=False)
    exact = superresolve(mdi_cutout, model="nearest", progress=False).data
    pairs = superresolve(mdi_cutout, antithetic=True, **kwargs)
    independent = superresolve(mdi_cutout, **kwargs)
    # Samples 0 and 2 keep their seeds; 1 and 3 are their mirror images about the noiseless output.
    s, t = pairs.samples.value, independent.samples.value
    np.testing.assert_array_equal(s[[0, 2]], t[[0, 2]])
    np.testing.assert_allclose(s[1] - exact, -(s[0] - exact), atol=1e-3)
    np.testing.assert_allclose(s[3] - exact, -(s[2] - exact), atol=1e-3)
    np.testing.assert_allclose(pairs.data, exact, atol=1e-3)
    noise = model.sigma * 3000  # G
    assert np.abs(independent.data - exact).std() > 0.3 * noise  # independent means keep noise / sqrt(4)
    # Each sample is still a draw of the model: the spread of a pair is that of the noise.
    assert 0.8 * noise < np.median(pairs.std.value) < 1.4 * noise
    assert pairs.meta["sranti"] is True and independent.meta["sranti"] is False
    # A single sample is what it always was, and says nothing about pairs.
    one = superresolve(mdi_cutout, model=model, seed=5, consistency=False, antithetic=True, progress=False)
    np.testing.assert_array_equal(one.data, t[0])
    assert "sranti" not in one.meta


def test_antithetic_auto_follows_the_calibration(mdi_cutout):
    """``"auto"`` draws the design the model's calibration was fitted on; the other design is not calibrated."""
    from sunpy_superres.conformal import StdCalibration

    model = NoisyNearest(device="cpu")
    run = dict(model=model, samples=4, seed=2, progress=False)
    assert superresolve(mdi_cutout, **run).meta["sranti"] is False  # no calibration: independent samples
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0,), scales=((2.0,),), samples=(4,), antithetic=True
    )
    auto = superresolve(mdi_cutout, **run)
    assert auto.meta["sranti"] is True
    assert auto.meta["sruncal"] == "conformal N=4 antithetic sm=0px >0G:2"
    raw = superresolve(mdi_cutout, calibrate_uncertainty=False, **run)
    np.testing.assert_allclose(auto.std.value, 2 * raw.std.value, rtol=1e-5)
    with pytest.warns(UserWarning, match=r"fitted on antithetic pairs, and these are independent samples"):
        other = superresolve(mdi_cutout, antithetic=False, **run)
    assert other.meta["sranti"] is False and other.meta["sruncal"] == "none"


@pytest.mark.parametrize("option", ["antithetic", "symmetric"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_sampling_design_refused(mdi_cutout, option, value):
    allowed = "True, False, 'auto' or 'polarity'" if option == "antithetic" else "True, False or 'auto'"
    with pytest.raises(ValueError, match=rf"^{option} must be {allowed}, got"):
        superresolve(mdi_cutout, model="nearest", **{option: value})


def test_polarity_is_no_design_of_symmetric(mdi_cutout):
    with pytest.raises(ValueError, match=r"^symmetric must be True, False or 'auto', got 'polarity'"):
        superresolve(mdi_cutout, model="nearest", symmetric="polarity")


class _OffsetNoisyNearest(NoisyNearest):
    """`NoisyNearest` with an error that does not reverse with the field's polarity: an offset."""

    offset = 0.01  # network units (30 G)

    def _forward(self, x, *, seeds, signs=None):
        return super()._forward(x, seeds=seeds, signs=signs) + self.offset


def test_polarity_pairs(mdi_cutout):
    """``antithetic="polarity"``: sample 2k + 1 is sample 2k's noise on the reversed input, reversed back."""
    kwargs = dict(samples=4, seed=5, consistency=False, keep_samples=True, progress=False)
    # A model whose samples reverse with the field, S(-x, z) = -S(x, -z): the pairs of negated noise.
    model = NoisyNearest(device="cpu")
    noise = superresolve(mdi_cutout, model=model, antithetic=True, **kwargs)
    polar = superresolve(mdi_cutout, model=model, antithetic="polarity", **kwargs)
    np.testing.assert_allclose(polar.samples.value, noise.samples.value, rtol=0, atol=1e-3)
    assert polar.meta["sranti"] == "polarity" and noise.meta["sranti"] is True
    # Each sample is still a draw of the model: a pair's spread is the noise's.
    assert 0.8 * model.sigma * 3000 < np.median(polar.std.value) < 1.4 * model.sigma * 3000
    # One whose error does not reverse: the pairs of negated noise keep it, those of reversed polarity
    # cancel it, and their second samples are the first ones' for the reversed input.
    biased = _OffsetNoisyNearest(device="cpu")
    exact = superresolve(mdi_cutout, model="nearest", progress=False).data
    bias = biased.offset * 3000  # G
    noise = superresolve(mdi_cutout, model=biased, antithetic=True, **kwargs)
    polar = superresolve(mdi_cutout, model=biased, antithetic="polarity", **kwargs)
    np.testing.assert_allclose(noise.data - exact, bias, atol=1e-2)
    np.testing.assert_allclose(polar.data, exact, atol=1e-2)
    reversed_first = superresolve(
        _flipped(mdi_cutout, 4), model=biased, seed=5, consistency=False, progress=False
    )
    np.testing.assert_allclose(polar.samples.value[0], noise.samples.value[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(polar.samples.value[1], -reversed_first.data, rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    ("antithetic", "symmetric", "numbers", "signs", "symmetries"),
    [
        (False, False, [0, 1, 2, 3, 4, 5, 6, 7], [1] * 8, [0] * 8),
        (True, False, [0, 0, 2, 2, 4, 4, 6, 6], [1, -1] * 4, [0] * 8),
        ("polarity", False, [0, 0, 2, 2, 4, 4, 6, 6], [1] * 8, [0, 4] * 4),
        (False, True, [0, 1, 2, 3, 4, 5, 6, 7], [1] * 8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (True, True, [0, 0, 2, 2, 4, 4, 6, 6], [1, -1] * 4, [0, 0, 1, 1, 2, 2, 3, 3]),
        ("polarity", True, [0, 0, 2, 2, 4, 4, 6, 6], [1] * 8, [0, 4, 1, 5, 2, 6, 3, 7]),
    ],
)
def test_sample_plan(antithetic, symmetric, numbers, signs, symmetries):
    """The seed number, noise sign and symmetry of each of 8 samples, per design (as documented)."""
    from sunpy_superres.superresolve import TILE_SYMMETRIES, sample_plan

    plan = [sample_plan(k, antithetic, symmetric) for k in range(8)]
    assert [p[0] for p in plan] == numbers
    assert [p[1] for p in plan] == signs
    assert [p[2] for p in plan] == symmetries
    # Under flips, pairs 4-7 (samples 8-15) are drawn as pairs 0-3 with the polarity reversed.
    if symmetric and antithetic:
        later = [TILE_SYMMETRIES[sample_plan(k, antithetic, True)[2]] for k in range(8, 16)]
        assert later == [(*TILE_SYMMETRIES[j][:2], not TILE_SYMMETRIES[j][2]) for j in symmetries]


def _flipped(smap, j):
    """``smap`` with its data under symmetry ``j`` of `TILE_SYMMETRIES` (same header)."""
    from sunpy_superres.superresolve import tile_symmetry

    return smap._new_instance(tile_symmetry(np.asarray(smap.data), j).copy(), smap.meta)


@pytest.mark.parametrize("antithetic", [True, False])
def test_symmetric_samples_are_samples_of_the_flipped_input(mdi_cutout, antithetic):
    """With ``symmetric=True`` group j of the samples is drawn for the input under symmetry j, undone."""
    from sunpy_superres.superresolve import tile_symmetry

    model = NoisyNearest(device="cpu")
    kwargs = dict(model=model, samples=8, seed=5, keep_samples=True, progress=False, antithetic=antithetic)
    kwargs["tile_size"] = 256  # one tile: a tile's symmetry is then the map's
    sym = superresolve(mdi_cutout, symmetric=True, **kwargs).samples.value
    for k in range(8):
        j = k // 2 if antithetic else k  # 8 independent samples reach the polarity reversals
        plain = superresolve(_flipped(mdi_cutout, j), symmetric=False, **kwargs).samples.value[k]
        np.testing.assert_allclose(sym[k], tile_symmetry(plain, j), rtol=0, atol=1e-3)
        if j:
            assert not np.allclose(sym[k], superresolve(mdi_cutout, **kwargs).samples.value[k], atol=1e-2)
    one = superresolve(mdi_cutout, model=model, seed=5, symmetric=True, progress=False)
    assert "srsymm" not in one.meta  # a single sample is what it always was
    # Many tiles: a sample does not depend on how the (tile, sample) pairs are batched.
    tiled = dict(kwargs, tile_size=48, symmetric=True)
    np.testing.assert_array_equal(
        superresolve(mdi_cutout, batch_size=1, **tiled).samples.value,
        superresolve(mdi_cutout, batch_size=64, **tiled).samples.value,
    )


def test_symmetric_auto_follows_the_calibration(mdi_cutout):
    """``"auto"`` draws under flips when the calibration was fitted so; a mismatch leaves the spread raw."""
    from sunpy_superres.conformal import StdCalibration

    model = NoisyNearest(device="cpu")
    run = dict(model=model, samples=4, seed=2, progress=False)
    assert superresolve(mdi_cutout, **run).meta["srsymm"] is False
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0,), scales=((2.0,),), samples=(4,), antithetic=True, symmetric=True
    )
    auto = superresolve(mdi_cutout, **run)
    assert auto.meta["sranti"] is True and auto.meta["srsymm"] is True
    assert auto.meta["sruncal"] == "conformal N=4 antithetic symmetric sm=0px >0G:2"
    assert StdCalibration.from_dict(model.uncertainty_calibration.to_dict()).symmetric is True
    with pytest.warns(
        UserWarning, match=r"fitted on antithetic pairs under the input's flips, and these are "
    ):
        other = superresolve(mdi_cutout, symmetric=False, **run)
    assert other.meta["srsymm"] is False and other.meta["sruncal"] == "none"


def test_polarity_pairs_auto_follow_the_calibration(mdi_cutout):
    """A calibration fitted on pairs by polarity reversal is drawn so by "auto", and only applied to them."""
    from sunpy_superres.conformal import StdCalibration

    model = NoisyNearest(device="cpu")
    run = dict(model=model, samples=4, seed=2, progress=False)
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0,), scales=((2.0,),), samples=(4,), antithetic="polarity", symmetric=True
    )
    auto = superresolve(mdi_cutout, **run)
    assert auto.meta["sranti"] == "polarity" and auto.meta["srsymm"] is True
    assert auto.meta["sruncal"] == "conformal N=4 antithetic=polarity symmetric sm=0px >0G:2"
    assert StdCalibration.from_dict(model.uncertainty_calibration.to_dict()).antithetic == "polarity"
    with pytest.warns(
        UserWarning,
        match=r"fitted on antithetic pairs by polarity reversal under the input's flips, and these are "
        r"antithetic pairs under the input's flips",
    ):
        other = superresolve(mdi_cutout, antithetic=True, **run)
    assert other.meta["sranti"] is True and other.meta["sruncal"] == "none"
    with pytest.raises(ValueError, match=r"antithetic must be True, False or 'polarity', got 'yes'"):
        StdCalibration(edges_gauss=(0.0,), scales=((2.0,),), samples=(4,), antithetic="yes")
