"""The noise-level conditioning of a diffusion model (issue 13) and the quiet-Sun noise estimate."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch
from astropy.io import fits

from sunpy_superres.calibration import hmi_noise_clv
from sunpy_superres.metrics.physics import quiet_noise_gauss, quiet_sun_noise
from sunpy_superres.models.diffusion import (
    DEFAULT_NOISE_LEVEL,
    DiffusionSuperResolution,
    add_noise_conditioning,
    encode_pair,
)
from sunpy_superres.models.manifest import load_directory
from sunpy_superres.training.data import CropDataset

from .tiny import tiny_autoencoder, tiny_model


def _noisy_field(sigma, shape=(256, 256), seed=0):
    """White noise of ``sigma`` G on a quiet background, plus one strong bipole (not quiet)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    bipole = 800 * (
        np.exp(-((y - 60) ** 2 + (x - 60) ** 2) / 200) - np.exp(-((y - 60) ** 2 + (x - 90) ** 2) / 200)
    )
    return bipole + rng.normal(0, sigma, shape)


@pytest.mark.parametrize("sigma", [2.0, 3.5, 6.0])
def test_quiet_sun_noise_recovers_white_noise(sigma):
    # 65536 pixels: the MAD estimate's relative error is about 0.5 %; the bipole's blocks are excluded.
    data = _noisy_field(sigma)
    header = sunpy.map.make_fitswcs_header(data, _centre(), scale=[0.5, 0.5] * u.arcsec / u.pix, unit=u.G)
    estimate = quiet_sun_noise(sunpy.map.Map(data, header))
    assert estimate.unit == u.G
    assert estimate.value == pytest.approx(sigma, rel=0.03)


def _centre():
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames

    return SkyCoord(
        0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime="2019-06-21")
    )


def test_quiet_sun_noise_needs_quiet_sun():
    with pytest.raises(ValueError, match="quiet"):
        quiet_noise_gauss(np.full((64, 64), 500.0) + np.random.default_rng(0).normal(0, 3, (64, 64)))


def test_added_channel_changes_nothing_until_trained():
    model = tiny_model()
    conditioned = add_noise_conditioning(model.denoiser)
    assert conditioned.config.noise_conditioning and not model.denoiser.config.noise_conditioning
    new = DiffusionSuperResolution(
        conditioned, model.autoencoder, tile_size=32, halo=4, steps=4, device="cpu"
    )
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, (1, 1, 8, 8)).astype(np.float32))
    reference = model._forward(x, seeds=[3])
    outputs = [new.configure_sampler(noise_level=level)._forward(x, seeds=[3]) for level in (2.0, 3.5, 9.0)]
    # The level's channel meets zero weights: every level gives the same numbers to the bit. Against
    # the network without that channel only to rounding: a convolution with one more input channel
    # may block its sums differently (oneDNN on an AMD EPYC does; on a Xeon it summed alike).
    assert all(torch.equal(out, outputs[0]) for out in outputs)
    torch.testing.assert_close(outputs[0], reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="already conditioned"):
        add_noise_conditioning(conditioned)


def _conditioned(**kwargs):
    """A tiny model whose denoiser is conditioned on the noise level from the start."""
    return tiny_model(noise_conditioning=True, steps=3, **kwargs)


def test_channel_reaches_the_network_and_header(tmp_path):
    model = _conditioned()
    assert model.noise_level == DEFAULT_NOISE_LEVEL and model.provenance()["srnoise"] == DEFAULT_NOISE_LEVEL
    x = torch.zeros(1, 1, 8, 8)
    low, high = (model.configure_sampler(noise_level=v)._forward(x, seeds=[0]) for v in (2.0, 8.0))
    assert not torch.equal(low, high)
    # The level travels through the manifest.
    path = model.configure_sampler(noise_level=4.25 * u.G).save_pretrained(tmp_path / "m")
    assert load_directory(path, device="cpu").noise_level == 4.25


@pytest.mark.parametrize("level", [0.0, -1.0, 51.0, float("nan"), "3", True])
def test_bad_noise_levels_are_refused(level):
    den = add_noise_conditioning(tiny_model().denoiser)
    model = DiffusionSuperResolution(den, tiny_autoencoder(), tile_size=32, halo=4, device="cpu")
    with pytest.raises(ValueError, match="noise_level"):
        model.configure_sampler(noise_level=level)


def test_unconditioned_models_refuse_a_noise_level():
    model = tiny_model()
    with pytest.raises(ValueError, match="not conditioned"):
        model.configure_sampler(noise_level=3.0)
    lr = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="not conditioned"):
        encode_pair(model.denoiser, model.autoencoder, lr, noise_level=3.0)
    conditioned = add_noise_conditioning(model.denoiser)
    with pytest.raises(ValueError, match="give noise_level"):
        encode_pair(conditioned, model.autoencoder, lr)


def test_dataset_labels_and_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "patch.fits"
    fits.PrimaryHDU(
        rng.normal(0, 3.0, (200, 200)).astype(np.float32),
        fits.Header({"BUNIT": "G", "DATE-OBS": "2019-06-21"}),
    ).writeto(path)
    common = dict(crop_size=64, patches=[path], patch_fraction=1.0, augment=True, seed=4)
    plain = CropDataset([], **common)
    labelled = CropDataset([], noise_labels=True, **common)
    augmented = CropDataset(
        [], noise_labels=True, noise_augment_gauss=6.0, noise_augment_fraction=0.5, **common
    )
    crops, labels = labelled.batch(0, 16, with_noise=True)
    # Labels change nothing about the crops, and measure the patch's own noise.
    np.testing.assert_array_equal(crops, plain.batch(0, 16))
    np.testing.assert_allclose(labels, 3.0, rtol=0.03)
    noisy, noisy_labels = augmented.batch(0, 16, with_noise=True)
    raised = noisy_labels > labels[0] + 1e-6
    assert 0 < raised.sum() < 16  # about half the crops get added noise
    np.testing.assert_array_equal(noisy[~raised], crops[~raised])
    # Added noise of s G raises the label to hypot(3, s) and the crop's residual rms with it.
    for crop, label in zip(noisy[raised], noisy_labels[raised], strict=True):
        residual = crop * 3000 - crop.reshape(16, 4, 16, 4).mean(axis=(1, 3)).repeat(4, 0).repeat(4, 1) * 3000
        assert residual.std() / np.sqrt(15 / 16) == pytest.approx(label, rel=0.1)
    with pytest.raises(ValueError, match="noise_labels=True"):
        plain.sample(0, with_noise=True)


def test_superresolve_records_the_level(hmi_cutout):
    from sunpy_superres import superresolve

    den = add_noise_conditioning(tiny_model().denoiser)
    model = DiffusionSuperResolution(den, tiny_autoencoder(), tile_size=32, halo=4, steps=2, device="cpu")
    small = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    out = superresolve(small, model=model, seed=1, noise_level=4.5 * u.G, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (4.5, "asked")
    out = superresolve(small, model=model.configure_sampler(noise_level=4.0), seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (4.0, "asked")
    # Not told: an HMI map takes the noise of HMI's data at the time (2011: one camera, mod-C) and
    # place (this corner of the cut-out lies a third of the way to the limb: 0.91 of the frame's), ...
    clv = hmi_noise_clv(small)
    assert 0.9 < clv < 0.92
    out = superresolve(small, model=model, seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (round(4.8 * clv, 2), "HMI mod-C")
    assert out.meta["srnoiclv"] == round(clv, 4)
    combined = sunpy.map.Map(small.data, {**small.meta, "camera": 3, "instrume": "HMI_COMBINED"})
    out = superresolve(combined, model=model, seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (round(3.5 * clv, 2), "HMI mod-L")
    # An MDI map takes the model's own level (today's HMI) at its place, as HMI would have seen it ...
    mdi = sunpy.map.Map(small.data, {**small.meta, "telescop": "SOHO", "instrume": "MDI"})
    out = superresolve(mdi, model=model, seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (round(DEFAULT_NOISE_LEVEL * clv, 2), "model")
    assert out.meta["srnoiclv"] == round(clv, 4)
    # ... and any other map the model's own level.
    other = sunpy.map.Map(small.data, {**small.meta, "telescop": "SOLIS", "instrume": "VSM"})
    out = superresolve(other, model=model, seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (DEFAULT_NOISE_LEVEL, "model")
    assert "srnoiclv" not in out.meta
    assert model.noise_level == DEFAULT_NOISE_LEVEL and not model.noise_level_asked  # the model unchanged
    # A model that cannot make the level of the HMI data makes the nearest it can.
    mapped = _conditioned(noise_label_map=LABEL_MAP, noise_level=3.5)
    out = superresolve(small, model=mapped, seed=1, progress=False)
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (round(4.8 * clv, 2), "HMI mod-C")
    out = superresolve(
        combined,
        model=_conditioned(noise_label_map=LABEL_MAP | {"output_gauss": [4, 5, 6]}, noise_level=4.5),
        seed=1,
        progress=False,
    )
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (4.0, "HMI mod-L (nearest made)")
    with pytest.raises(ValueError, match="noise_level"):
        superresolve(small, model="bicubic", noise_level=4.5 * u.G, progress=False)


def test_an_hmi_map_of_another_cadence_is_warned_of(hmi_cutout, recwarn):
    import warnings

    from sunpy_superres import superresolve
    from sunpy_superres.calibration import hmi_noise_level

    model = _conditioned()
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    assert lr.meta["cadence"] == 720.0  # the 720 s series: HMI_NOISE_LEVELS hold its noise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        superresolve(lr, model=model, seed=1, progress=False)
        superresolve(
            sunpy.map.Map(lr.data, {k: v for k, v in lr.meta.items() if k != "cadence"}),
            model=model,
            seed=1,
            progress=False,
        )
    fast = sunpy.map.Map(lr.data, {**lr.meta, "cadence": 45.0})
    with pytest.warns(UserWarning, match="CADENCE is 45 s.*Give noise_level") as caught:
        out = superresolve(fast, model=model, seed=1, progress=False)
    assert caught[0].filename == __file__  # it points at the call
    assert out.meta["srnoisrc"] == "HMI mod-C"  # the output is still made, at the 720 s level
    with pytest.warns(UserWarning, match="hmi.M_720s"):
        hmi_noise_level(fast)
    superresolve(fast, model=model, seed=1, noise_level=9 * u.G, progress=False)  # a level given: no warning
    assert not [w for w in recwarn if "CADENCE" in str(w.message)]


def test_each_tile_of_a_map_gets_the_noise_of_its_place(hmi_cutout, monkeypatch):
    from sunpy_superres import superresolve
    from sunpy_superres.conformal import StdCalibration
    from sunpy_superres.tiling import plan_tiles

    model = _conditioned()
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)  # 128x128: 49 tiles of 32, overlap 16
    tiles = plan_tiles(lr.data.shape, 32, 16)
    expected = [round(4.8 * clv, 2) for clv in hmi_noise_clv(lr, [t.slices for t in tiles])]
    assert len(tiles) > 1 and max(expected) - min(expected) > 0.1  # 0.2-0.45 solar radii out
    calls = []
    original = DiffusionSuperResolution.predict_samples

    def spy(self, batch, seeds, **kwargs):
        calls.append(kwargs.get("noise_levels"))
        return original(self, batch, seeds, **kwargs)

    monkeypatch.setattr(DiffusionSuperResolution, "predict_samples", spy)
    out = superresolve(lr, model=model, seed=1, progress=False)
    assert [v for levels in calls for v in levels] == expected
    assert (out.meta["srnoise"], out.meta["srnoisrc"]) == (round(4.8 * hmi_noise_clv(lr), 2), "HMI mod-C")
    assert (out.meta["srnoilo"], out.meta["srnoihi"]) == (min(expected), max(expected))
    # A map of one tile takes the map's level, as before; so does any map given a level.
    calls.clear()
    one = superresolve(lr, model=model, seed=1, tile_size=128, progress=False)
    assert calls == [None] and "srnoilo" not in one.meta and one.meta["srnoise"] == out.meta["srnoise"]
    calls.clear()
    asked = superresolve(lr, model=model, seed=1, noise_level=4 * u.G, progress=False)
    assert set(calls) == {None} and "srnoilo" not in asked.meta
    # The uncertainty's calibration takes each pixel's level: here the ratio is the level itself.
    model.uncertainty_calibration = StdCalibration(
        edges_gauss=(0.0,), samples=(2,), scales=((1.0,),), antithetic="polarity", symmetric=True,
        noise_levels_gauss=(1.0, 10.0), noise_ratios=(((1.0,),), ((10.0,),)),
    )  # fmt: skip
    calls.clear()
    raw = superresolve(lr, model=model, seed=1, samples=2, calibrate_uncertainty=False, progress=False)
    cal = superresolve(lr, model=model, seed=1, samples=2, progress=False)
    ratio = cal.std.value / raw.std.value
    ok = np.isfinite(ratio)
    assert ratio[ok].min() == pytest.approx(min(expected), abs=0.01)
    assert ratio[ok].max() == pytest.approx(max(expected), abs=0.01)


def test_a_model_takes_a_noise_level_per_tile():
    model = _conditioned()
    x = np.random.default_rng(2).normal(0, 0.05, (2, 8, 8)).astype(np.float32)
    both = model.predict_samples(x, [[3, 4], [5, 6]], noise_levels=[2.0, 6.0])
    for i, level in enumerate((2.0, 6.0)):
        alone = model.configure_sampler(noise_level=level).predict_samples(
            x[i : i + 1], [[3, 4], [5, 6]][i : i + 1]
        )
        # A batch of two sums in other blocks than one tile alone: equal to float32 rounding.
        np.testing.assert_allclose(both[i], alone[0], rtol=1e-4, atol=1e-4)
    assert np.abs(both[0] - model.predict_samples(x[:1], [[3, 4]], noise_levels=[6.0])[0]).max() > 1e-2
    with pytest.raises(ValueError, match="one noise level per tile"):
        model.predict_samples(x, [[3], [5]], noise_levels=[2.0])
    with pytest.raises(ValueError, match="noise_level"):
        model.predict_samples(x, [[3], [5]], noise_levels=[2.0, 99.0])
    with pytest.raises(ValueError, match="not conditioned on a noise level"):
        tiny_model().predict_samples(x, [[3], [5]], noise_levels=[2.0, 3.0])


LABEL_MAP = {"output_gauss": [3.0, 4.0, 5.0], "label_gauss": [2.0, 3.5, 4.5], "source": "test"}


def test_label_map_makes_the_level_the_outputs_noise(tmp_path):
    mapped = _conditioned(noise_label_map=LABEL_MAP, noise_level=3.5)
    assert mapped.noise_label == pytest.approx(2.75)  # halfway between 3 and 4 G of output: label 2.75
    assert mapped.configure_sampler(noise_level=4.5).noise_label == pytest.approx(4.0)
    raw = _conditioned(noise_level=2.75)
    assert raw.noise_label == 2.75  # without a map the label is the level
    x = torch.zeros(1, 1, 8, 8)
    assert torch.equal(mapped._forward(x, seeds=[1]), raw._forward(x, seeds=[1]))
    assert mapped.provenance()["srnoise"] == 3.5  # the header records the level asked for
    loaded = load_directory(mapped.save_pretrained(tmp_path / "m"), device="cpu")
    assert loaded.noise_label_map == LABEL_MAP and loaded.noise_label == pytest.approx(2.75)


@pytest.mark.parametrize("level", [2.9, 5.1])
def test_levels_outside_the_measured_map_are_refused(level):
    with pytest.raises(ValueError, match="outside what .* makes with its sampler: 3.00-5.00 G"):
        _conditioned(noise_label_map=LABEL_MAP).configure_sampler(noise_level=level)


@pytest.mark.parametrize(
    "bad",
    [
        {"output_gauss": [3.0], "label_gauss": [2.0]},
        {"output_gauss": [3.0, 3.0], "label_gauss": [2.0, 3.0]},
        {"output_gauss": [3.0, 4.0], "label_gauss": [3.0, 2.0]},
        {"output_gauss": [3.0, 4.0]},
    ],
)
def test_bad_label_maps_are_refused(bad):
    with pytest.raises(ValueError, match="noise_label_map"):
        _conditioned(noise_label_map=bad)
