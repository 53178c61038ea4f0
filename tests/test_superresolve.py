"""superresolve(): WCS oracle against sunpy, calibration, range, NaNs, provenance, tiling seams."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from sunpy.map.sources import HMIMap, MDIMap

import sunpy_superres
from sunpy_superres import superresolve
from sunpy_superres.calibration import MDI_TO_HMI
from sunpy_superres.models import available_models, load_model
from sunpy_superres.models.interpolation import NearestModel
from sunpy_superres.superresolve import TILE_SYMMETRIES, _run_tiled, sample_plan
from sunpy_superres.tiling import plan_tiles, tile_seed

from .helpers import NoisyNearest, synthetic_map


def corners_and_centre(smap):
    ny, nx = smap.data.shape
    return [(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1), ((nx - 1) / 2, (ny - 1) / 2)]


@pytest.mark.parametrize("fixture", ["mdi_cutout", "hmi_cutout"])
def test_wcs_matches_sunpy_resample(fixture, request):
    """The oracle: sunpy's own resample() defines the 4x finer grid (rule 2 of docs/dev/design.rst)."""
    smap = request.getfixturevalue(fixture)
    if fixture == "hmi_cutout":  # 0.5"/px and CROTA2 ~ 180: exercise the grid arithmetic all the same
        smap = smap.superpixel((4, 4) * u.pix, func=np.mean)
    out = superresolve(smap, model="bicubic", progress=False)
    oracle = smap.resample(u.Quantity(out.data.shape[::-1], u.pix))
    assert out.data.shape == tuple(4 * n for n in smap.data.shape)
    for px, py in corners_and_centre(out):
        sep = out.pixel_to_world(px * u.pix, py * u.pix).separation(
            oracle.pixel_to_world(px * u.pix, py * u.pix)
        )
        assert sep < 1 * u.mas
    # The outer edges of the grids coincide too: the input's corner pixel edge is the output's.
    edge_in = smap.pixel_to_world(-0.5 * u.pix, -0.5 * u.pix)
    edge_out = out.pixel_to_world(-0.5 * u.pix, -0.5 * u.pix)
    assert edge_in.separation(edge_out) < 1 * u.mas
    # Superpixel (4x4 mean) of the output restores the input grid exactly.
    back = out.superpixel((4, 4) * u.pix, func=np.mean)
    assert back.data.shape == smap.data.shape
    for px, py in corners_and_centre(smap):
        sep = back.pixel_to_world(px * u.pix, py * u.pix).separation(
            smap.pixel_to_world(px * u.pix, py * u.pix)
        )
        assert sep < 1 * u.mas
    assert u.allclose(back.scale.axis1, smap.scale.axis1, rtol=1e-12)
    np.testing.assert_allclose(back.rotation_matrix, smap.rotation_matrix, atol=1e-12)


def test_naive_crpix_would_be_wrong(mdi_cutout):
    """Guard the test itself: CRPIX*4 (the common mistake) moves the corners by about 0.75"."""
    out = superresolve(mdi_cutout, model="nearest", progress=False)
    naive = out.meta.copy()
    naive["crpix1"] = 4 * mdi_cutout.meta["crpix1"]
    naive["crpix2"] = 4 * mdi_cutout.meta["crpix2"]
    wrong = sunpy.map.Map(out.data, naive)
    sep = wrong.pixel_to_world(0 * u.pix, 0 * u.pix).separation(out.pixel_to_world(0 * u.pix, 0 * u.pix))
    assert sep > 0.5 * u.arcsec


def test_nearest_keeps_block_means(mdi_cutout):
    out = superresolve(mdi_cutout, model="nearest", progress=False)
    back = out.superpixel((4, 4) * u.pix, func=np.mean)
    np.testing.assert_allclose(back.data, mdi_cutout.data * MDI_TO_HMI, rtol=1e-6, atol=1e-3)


def test_map_class_observer_date_kept(mdi_cutout, hmi_cutout):
    out = superresolve(mdi_cutout, progress=False)
    assert isinstance(out, MDIMap)
    assert out.date == mdi_cutout.date
    assert out.observer_coordinate.separation_3d(mdi_cutout.observer_coordinate) < 1 * u.m
    assert out.rsun_obs == mdi_cutout.rsun_obs
    assert out.rsun_meters == mdi_cutout.rsun_meters
    lowres_hmi = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    assert isinstance(superresolve(lowres_hmi, progress=False), HMIMap)


def test_provenance_header(mdi_cutout):
    out = superresolve(mdi_cutout, model="bicubic", progress=False)
    meta = out.meta
    assert meta["srfactor"] == 4
    assert meta["srmodel"] == "bicubic"
    assert meta["srmodrev"] == "none"
    assert meta["srseed"] == -1
    assert meta["srsample"] == 1
    assert meta["srvers"] == sunpy_superres.__version__
    assert meta["srcalfac"] == pytest.approx(1 / 1.4)
    assert "Liu" in meta["srcalref"]
    assert meta["srnorm"] == 3000
    assert "4x super-resolution with model 'bicubic'" in meta["history"]
    # The input's own history is kept.
    assert "test cut-out" in meta["history"]


def test_default_model_is_recorded_by_its_real_name(mdi_cutout):
    out = superresolve(mdi_cutout, progress=False)
    assert out.meta["srmodel"] in available_models()
    assert out.meta["srmodel"] != "default"


def test_input_is_not_modified(mdi_limb_cutout):
    data = mdi_limb_cutout.data.copy()
    meta = dict(mdi_limb_cutout.meta)
    superresolve(mdi_limb_cutout, progress=False)
    np.testing.assert_array_equal(mdi_limb_cutout.data, data)
    assert dict(mdi_limb_cutout.meta) == meta


@pytest.mark.parametrize(("calibrate", "factor"), [(True, MDI_TO_HMI), (False, 1.0), (0.8, 0.8)])
def test_mdi_calibration(mdi_cutout, calibrate, factor):
    out = superresolve(mdi_cutout, model="nearest", calibrate=calibrate, progress=False)
    np.testing.assert_allclose(out.data[::4, ::4], mdi_cutout.data * factor, rtol=1e-6, atol=1e-3)
    assert out.meta["srcalfac"] == pytest.approx(factor)


def test_hmi_is_not_calibrated(hmi_cutout):
    lowres = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    out = superresolve(lowres, model="nearest", progress=False)
    assert out.meta["srcalfac"] == 1.0
    np.testing.assert_allclose(out.data[::4, ::4], lowres.data, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("calibrate", [-1.0, np.nan, "yes"])
def test_bad_calibration_factor(mdi_cutout, calibrate):
    with pytest.raises(ValueError, match="calibrate"):
        superresolve(mdi_cutout, calibrate=calibrate, progress=False)


class ClippingNearest(NearestModel):
    """A stand-in for a network that only accepts [-1, 1]: it truncates whatever it is given."""

    name = "clipping-nearest"
    clip_input = True

    def _forward(self, x, *, seeds):
        assert float(x.abs().max()) <= 1.0, "superresolve must clip before a clip_input model"
        return super()._forward(x, seeds=seeds).clamp(-1, 1)


@pytest.mark.parametrize("model", ["bicubic", "nearest", ClippingNearest(device="cpu")])
def test_strong_field_not_truncated(model):
    """A 3500 G spot is beyond the +-3000 G network range; it must come out at full strength."""
    smap = synthetic_map(shape=(32, 32), value=0.0)
    smap.data[10:16, 10:16] = 3500.0
    smap.data[18:24, 18:24] = -3600.0
    out = superresolve(smap, model=model, progress=False)
    # The spot's core (whose interpolation support lies inside the spot) keeps its full strength.
    np.testing.assert_allclose(out.data[4 * 12 : 4 * 14, 4 * 12 : 4 * 14], 3500.0, rtol=1e-6)
    np.testing.assert_allclose(out.data[4 * 20 : 4 * 22, 4 * 20 : 4 * 22], -3600.0, rtol=1e-6)
    assert np.nanmax(out.data) >= 3500.0 * (1 - 1e-6)
    if isinstance(model, ClippingNearest):
        assert out.meta["srnclip"] == 36 + 36
        block_means = out.superpixel((4, 4) * u.pix, func=np.mean).data
        np.testing.assert_allclose(block_means, smap.data, atol=1e-2)


def test_off_limb_nans_stay_nan(mdi_limb_cutout):
    out = superresolve(mdi_limb_cutout, model="bicubic", progress=False)
    expected = np.kron(np.isnan(mdi_limb_cutout.data), np.ones((4, 4), dtype=bool))
    np.testing.assert_array_equal(np.isnan(out.data), expected)
    assert 0.2 < expected.mean() < 0.6  # the cut-out really straddles the limb


def test_masked_pixels_become_nan(mdi_cutout):
    mask = np.zeros(mdi_cutout.data.shape, dtype=bool)
    mask[5:9, 7:11] = True
    masked = sunpy.map.Map(mdi_cutout.data, mdi_cutout.meta, mask=mask)
    out = superresolve(masked, model="nearest", progress=False)
    assert np.isnan(out.data[20:36, 28:44]).all()
    assert np.isfinite(out.data).sum() == out.data.size - 16 * 16


@pytest.mark.parametrize("model", ["bicubic", "nearest"])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 6), (40, 12), (64, 20)])
def test_tiled_equals_untiled(mdi_limb_cutout, mdi_cutout, model, tile, overlap):
    """The seam test: for a deterministic model tiles must not show, to float precision."""
    for smap in (mdi_cutout, mdi_limb_cutout):
        whole = superresolve(smap, model=model, tile_size=1024, progress=False)
        tiled = superresolve(smap, model=model, tile_size=tile, overlap=overlap, batch_size=3, progress=False)
        np.testing.assert_allclose(tiled.data, whole.data, rtol=1e-6, atol=1e-3, equal_nan=True)


def test_tiling_options_checked(mdi_cutout):
    with pytest.raises(ValueError, match="tile_size=16 and overlap=16"):
        superresolve(mdi_cutout, model="bicubic", tile_size=16, overlap=16, progress=False)
    with pytest.raises(ValueError, match="overlap > 4"):
        superresolve(mdi_cutout, model="bicubic", tile_size=64, overlap=3, progress=False)


def test_unknown_model_lists_names(mdi_cutout):
    with pytest.raises(ValueError, match=r"unknown model 'sr3'.*'bicubic'.*'nearest'"):
        superresolve(mdi_cutout, model="sr3")


def test_registry_loads_every_name():
    for name in available_models():
        model = load_model(name, device="cpu")
        assert model.factor == 4
        assert name == "default" or model.name == name


def test_samples_for_deterministic_model(mdi_cutout):
    with pytest.raises(ValueError, match="deterministic.*samples=1"):
        superresolve(mdi_cutout, model="bicubic", samples=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 0}, "samples must be a positive integer"),
        ({"seed": -3}, r"seed must be an integer from 0 to 2\*\*63 - 1"),
        ({"seed": 1.5}, r"seed must be an integer from 0 to 2\*\*63 - 1"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"device": "tpu9"}, "unknown device"),
    ],
)
def test_bad_options(mdi_cutout, kwargs, match):
    with pytest.raises(ValueError, match=match):
        superresolve(mdi_cutout, **kwargs)


def test_cuda_request_without_gpu(mdi_cutout):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU.*device='cpu'"):
        superresolve(mdi_cutout, device="cuda")


def test_output_is_float32_and_saves(mdi_cutout, tmp_path):
    out = superresolve(mdi_cutout, progress=False)
    assert out.data.dtype == np.float32
    path = tmp_path / "out.fits"
    out.save(path)
    back = sunpy.map.Map(path)
    np.testing.assert_array_equal(back.data, out.data)
    assert back.meta["srmodel"] == out.meta["srmodel"]
    for px, py in corners_and_centre(out):
        assert (
            back.pixel_to_world(px * u.pix, py * u.pix).separation(out.pixel_to_world(px * u.pix, py * u.pix))
            < 1 * u.mas
        )


def test_sampler_options_rejected_for_deterministic_model(mdi_cutout):
    with pytest.raises(ValueError, match="deterministic and has no sampler"):
        superresolve(mdi_cutout, model="bicubic", steps=20)
    with pytest.raises(ValueError, match="deterministic and has no sampler"):
        superresolve(mdi_cutout, model="nearest", sampler="ddim")
    with pytest.raises(ValueError, match="deterministic and has no sampler"):
        superresolve(mdi_cutout, model="bicubic", start_timestep=999)


@pytest.mark.parametrize("model", ["bicubic", "noisy"])
def test_consistency_keeps_block_means(mdi_cutout, model):
    from .helpers import NoisyNearest

    sr_model = NoisyNearest(device="cpu") if model == "noisy" else model
    out = superresolve(mdi_cutout, model=sr_model, consistency=True, seed=0, progress=False)
    assert out.meta["srconsis"] is True
    block_means = out.superpixel((4, 4) * u.pix, func=np.mean).data
    np.testing.assert_allclose(block_means, mdi_cutout.data * MDI_TO_HMI, rtol=1e-5, atol=1e-2)
    # Without it, bicubic (and the noise) move the block means.
    raw = superresolve(mdi_cutout, model=sr_model, consistency=False, seed=0, progress=False)
    assert raw.meta["srconsis"] is False
    raw_means = raw.superpixel((4, 4) * u.pix, func=np.mean).data
    assert np.abs(raw_means - mdi_cutout.data * MDI_TO_HMI).max() > 1.0


def test_consistency_auto_spares_interpolation(mdi_cutout):
    assert superresolve(mdi_cutout, model="bicubic", progress=False).meta["srconsis"] is False
    with pytest.raises(ValueError, match="consistency must be"):
        superresolve(mdi_cutout, consistency="yes", progress=False)
    assert (
        superresolve(mdi_cutout, model="bicubic", consistency="block", progress=False).meta["srconmet"]
        == "block"
    )


def test_seed_used_is_recorded_and_repeats_the_run(mdi_cutout):
    """Issue 15, case 6: without a seed, the seed drawn is recorded, and giving it back repeats the run."""
    from .helpers import NoisyNearest

    model = NoisyNearest(device="cpu")
    first = superresolve(mdi_cutout, model=model, progress=False)
    seed = first.meta["srseed"]
    assert isinstance(seed, int) and 0 <= seed < 2**63
    again = superresolve(mdi_cutout, model=model, seed=seed, progress=False)
    np.testing.assert_array_equal(again.data, first.data)
    other = superresolve(mdi_cutout, model=model, progress=False)
    assert other.meta["srseed"] != seed
    # Deterministic models draw nothing.
    assert superresolve(mdi_cutout, model="bicubic", progress=False).meta["srseed"] == -1


@pytest.mark.parametrize("seed", [2**63, -1, 1.5, True])
def test_seeds_a_fits_header_cannot_hold_are_refused(mdi_cutout, seed):
    with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*63 - 1"):
        superresolve(mdi_cutout, model="bicubic", seed=seed, progress=False)


def test_a_map_that_names_no_instrument_is_announced(mdi_cutout):
    """Issue 15, case 7: an MDI file without its instrument keys came out 1.4x too strong, unannounced."""
    import warnings

    from sunpy_superres.superresolve import UncalibratedInputWarning

    from .helpers import synthetic_map

    bare = synthetic_map(shape=(32, 32), value=700.0, instrument=None)
    assert "instrume" not in bare.meta and "telescop" not in bare.meta
    with pytest.warns(UncalibratedInputWarning, match="names no instrument"):
        out = superresolve(bare, model="bicubic", progress=False)
    assert out.meta["srcalfac"] == 1.0 and out.meta["srcalref"] == "none (instrument unknown)"
    assert "WARNING the map's header names no instrument" in out.meta["history"]
    np.testing.assert_allclose(out.data, 700.0, rtol=1e-5)
    # Named as MDI, it is calibrated as usual; named as another instrument, nothing is said.
    assert superresolve(mdi_cutout, model="bicubic", progress=False).meta["srcalfac"] == pytest.approx(
        1 / 1.4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        superresolve(synthetic_map(shape=(32, 32), instrument="GONG"), model="bicubic", progress=False)


class NoiseEcho(NoisyNearest):
    """A stochastic stand-in that gives its initial noise as the sample: a tiled map shows each tile's noise."""

    name = "noise-echo"
    noise_grid = 4  # one noise point per output pixel

    def draw_noise(self, seed, tile_shape):
        rng = np.random.default_rng(seed)
        return rng.standard_normal((1, 4 * tile_shape[0], 4 * tile_shape[1])).astype(np.float32)

    def predict_samples(self, batch, seeds, *, signs=None, noise_levels=None, noise=None):
        if noise is None:
            noise = [[self.draw_noise(s, batch.shape[1:]) for s in row] for row in seeds]
        noise = np.asarray(noise)[:, :, 0]
        return noise if signs is None else noise * np.asarray(signs)[:, :, None, None]


@pytest.mark.parametrize("antithetic, symmetric", [(False, False), ("polarity", True), (True, True)])
def test_overlapping_tiles_start_from_one_noise(antithetic, symmetric):
    """Where tiles overlap they get one noise (the first tile's draw), flipped with the sample's symmetry."""
    x = np.zeros((40, 52), dtype=np.float32)
    tiles = plan_tiles(x.shape, 24, 10)
    assert len(tiles) == 9  # 3 x 3, overlapping unevenly
    model = NoiseEcho(device="cpu")
    samples = list(range(6))
    runs = [
        _run_tiled(
            model,
            x,
            tile=24,
            overlap=10,
            seed=3,
            samples=samples,
            batch_size=size,
            progress=False,
            finish=np.copy,
            antithetic=antithetic,
            symmetric=symmetric,
        )
        for size in (1, 5)
    ]
    for k, out, again in zip(samples, *runs, strict=True):
        number, sign, j = sample_plan(k, antithetic, symmetric)
        rows, cols, polarity = TILE_SYMMETRIES[j]
        field = np.zeros((160, 208), dtype=np.float32)
        for t in reversed(tiles):  # the first tile that covers a point gives its noise there
            own = model.draw_noise(tile_seed(3, number, t), (t.size_y, t.size_x))[0]
            field[t.scaled_slices(4)] = own[:: -1 if rows else 1, :: -1 if cols else 1]
        # The blend of one noise is that noise: no seam; the sign and the polarity as the design says.
        np.testing.assert_allclose(out, field * sign * (-1 if polarity else 1), atol=1e-5)
        np.testing.assert_array_equal(out, again)  # whatever the batch


def test_the_progress_bar_says_which_samples_a_group_runs(monkeypatch, capsys):
    """Samples run in several groups (memory) show one bar per group, labelled with its samples."""
    import sys

    sr_module = sys.modules["sunpy_superres.superresolve"]
    m = synthetic_map((32, 32), value=10.0)
    one_map = 128 * 128 * 4  # a float32 map on the output grid
    monkeypatch.setattr(sr_module, "SAMPLE_GROUP_BYTES", 2 * one_map)
    superresolve(m, model=NoisyNearest(), samples=3, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "noisy-nearest, samples 1-2 of 3" in err and "noisy-nearest, sample 3 of 3" in err
    monkeypatch.setattr(sr_module, "SAMPLE_GROUP_BYTES", 8 * one_map)
    superresolve(m, model=NoisyNearest(), samples=3, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "noisy-nearest:" in err and "of 3" not in err  # one group: the model's name alone


@pytest.mark.parametrize(
    ("antithetic", "symmetric", "batch_size", "sizes"),
    [
        ("polarity", True, 2, [10]),  # the calibrated design on a CPU: one group, 2 samples a call
        (True, True, 2, [10]),
        (False, True, 1, [8, 2]),  # sample 8 would share symmetry 0's call with sample 0
        (True, False, 2, [2] * 5),  # every sample in one call: as many as the batch holds
        (False, False, 4, [4, 4, 2]),
        (False, False, 16, [10]),
    ],
)
def test_a_group_of_samples_is_as_large_as_its_calls_and_memory_allow(
    monkeypatch, antithetic, symmetric, batch_size, sizes
):
    """The samples that run together (each symmetry's in a call of its own): limited by the calls
    fitting the batch, and by the memory of the maps blended at once."""
    import sys
    from types import SimpleNamespace

    sr_module = sys.modules["sunpy_superres.superresolve"]
    run = SimpleNamespace(
        x=np.zeros((32, 32)), model=SimpleNamespace(factor=4), batch_size=batch_size,
        antithetic=antithetic, symmetric=symmetric,
    )  # fmt: skip
    groups = sr_module._sample_groups(run, SimpleNamespace(samples=10))
    assert [len(g) for g in groups] == sizes and [k for g in groups for k in g] == list(range(10))
    monkeypatch.setattr(sr_module, "SAMPLE_GROUP_BYTES", 3 * 128 * 128 * 4)  # room for 3 maps
    groups = sr_module._sample_groups(run, SimpleNamespace(samples=10))
    assert len(groups[0]) == min(3, sizes[0]) and max(map(len, groups)) <= 3
    assert [k for g in groups for k in g] == list(range(10))
