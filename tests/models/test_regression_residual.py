"""A diffusion residual taken to a regression's output (``residual_base="regression"``, CorrDiff-style)."""

import json

import astropy.units as u
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sunpy_superres import superresolve
from sunpy_superres.models import load_model
from sunpy_superres.models.diffusion import ConditionalDenoiser, DiffusionSuperResolution, regression_base
from sunpy_superres.models.progressive import ProgressiveNet, ProgressiveSuperResolution


def tiny_regression(seed=0):
    torch.manual_seed(seed)
    return ProgressiveNet(channels=8, growth_rate=4, layers_per_block=2, blocks_per_level=(1, 1))


def tiny_denoiser(seed=0, prediction_type="v_prediction", residual_base="regression"):
    torch.manual_seed(seed)
    return ConditionalDenoiser(
        space="pixel",
        residual=True,
        residual_base=residual_base,
        prediction_type=prediction_type,
        target_scale=0.05,
        cond_scale=0.1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, False),
        norm_num_groups=4,
    )


def tiny_model(seed=0, **kwargs):
    kwargs.setdefault("steps", 3)
    return DiffusionSuperResolution(
        tiny_denoiser(seed),
        regression=tiny_regression(seed),
        regression_revision="tiny-progressive",
        tile_size=40,
        halo=2,
        device="cpu",
        **kwargs,
    )


def lr_map(hmi_cutout, side=40):
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    return lr.submap([0, 0] * u.pix, top_right=[side - 1, side - 3] * u.pix)


def test_the_base_is_the_regression_projected_onto_the_input():
    lr = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 1, 10, 12)).astype(np.float32))
    lr_up = F.interpolate(lr, scale_factor=4, mode="nearest")
    net = tiny_regression()
    base = regression_base(net, lr_up, 4)
    # Block means are the input's exactly (up to float32 rounding), and the base differs from the
    # regression's own output only by one constant per block.
    torch.testing.assert_close(F.avg_pool2d(base, 4), lr, rtol=0, atol=1e-6)
    shift = base - net(lr)
    torch.testing.assert_close(
        shift, F.interpolate(F.avg_pool2d(shift, 4), scale_factor=4), rtol=0, atol=1e-6
    )
    assert not torch.allclose(shift, torch.zeros_like(shift))
    assert regression_base(None, lr_up, 4) is lr_up  # the paper's residual: to the input itself


def test_a_zero_residual_gives_the_regression_back_projected(hmi_cutout):
    # A denoiser whose x0-estimate is always 0 (sample prediction, output layer zeroed) leaves the
    # base alone, so the diffusion model returns what the regression's own model returns after a
    # constant-per-block projection onto the input (`sunpy_superres.consistency`, on maps): an
    # independent implementation of the projection, through several tiles with uneven edges.
    den = tiny_denoiser(prediction_type="sample")
    with torch.no_grad():
        den.unet.conv_out.weight.zero_()
        den.unet.conv_out.bias.zero_()
    net = tiny_regression()
    model = DiffusionSuperResolution(den, regression=net, tile_size=40, halo=2, device="cpu", steps=3)
    assert model.halo == net.halo > 2  # tiling must not change the regression's output
    lr = lr_map(hmi_cutout, side=64)
    out = superresolve(lr, model=model, seed=0, progress=False)
    ref = superresolve(
        lr,
        model=ProgressiveSuperResolution(net, tile_size=40, device="cpu"),
        consistency="block",
        progress=False,
    )
    assert out.data.shape == ref.data.shape == (248, 256)
    np.testing.assert_allclose(out.data, ref.data, rtol=0, atol=1e-3)  # G, of fields of hundreds of G
    assert np.abs(ref.data).max() > 100


def test_save_load_round_trip_carries_the_regression(tmp_path, hmi_cutout):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    files = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert "regression/diffusion_pytorch_model.safetensors" in files
    manifest = json.loads((tmp_path / "m" / "superres.json").read_text())
    assert manifest["regression"] == {"revision": "tiny-progressive"}
    assert "regression/config.json" in manifest["files"]
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert isinstance(loaded.regression, ProgressiveNet) and loaded.halo == model.halo
    lr = lr_map(hmi_cutout, side=20)
    a = superresolve(lr, model=loaded, seed=2, progress=False)
    b = superresolve(lr, model=model, seed=2, progress=False)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.meta["srregrev"] == "tiny-progressive"
    # The residual is the regression's: the same denoiser on the replicated input gives another map.
    other = DiffusionSuperResolution(
        tiny_denoiser(residual_base="lr"), tile_size=24, halo=2, device="cpu", steps=3
    )
    c = superresolve(lr, model=other, seed=2, progress=False)
    assert "srregrev" not in c.meta and not np.allclose(a.data, c.data)


def test_regression_and_residual_base_must_agree():
    with pytest.raises(ValueError, match="needs its regression network"):
        DiffusionSuperResolution(tiny_denoiser(), device="cpu")
    with pytest.raises(ValueError, match="only such a denoiser takes one"):
        DiffusionSuperResolution(
            tiny_denoiser(residual_base="lr"), regression=tiny_regression(), device="cpu"
        )
    with pytest.raises(ValueError, match="residual_base must be one of 'lr', 'regression'"):
        tiny_denoiser(residual_base="bicubic")
    with pytest.raises(ValueError, match="for a residual denoiser"):
        ConditionalDenoiser(space="pixel", residual=False, residual_base="regression")
