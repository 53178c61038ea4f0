"""CNN baselines (Enhance, Progressive): shapes, halo, weights, superresolve, seams, training."""

import json

import astropy.units as u
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sunpy_superres import superresolve
from sunpy_superres.calibration import MDI_TO_HMI
from sunpy_superres.consistency import project_block_means
from sunpy_superres.models.enhance import EnhanceNet, EnhanceSuperResolution, dependency_halo
from sunpy_superres.models.interpolation import BicubicModel, NearestModel
from sunpy_superres.models.manifest import ChecksumError
from sunpy_superres.models.progressive import ProgressiveNet, ProgressiveSuperResolution, progressive_mse

# Values recorded on CPU (torch 2.13) from tiny_net(kind, seed=0) on lr_input(); they guard the layer
# order, initialisation and skip against silent change.
EXPECTED_SLICE = {
    "enhance": [-0.03083334, -0.05371771, -0.06193317, -0.06174133],
    "progressive": [-0.03265735, -0.05543251, -0.06369309, -0.06506697],
}


def tiny_net(kind, seed=0, **overrides):
    torch.manual_seed(seed)
    if kind == "enhance":
        return EnhanceNet(**{"channels": 8, "num_residual_blocks": 1, "upsample_channels": 8, **overrides})
    return ProgressiveNet(
        **{"channels": 8, "growth_rate": 4, "layers_per_block": 2, "blocks_per_level": (1, 1), **overrides}
    )


def tiny_model(kind, seed=0, **kwargs):
    cls = EnhanceSuperResolution if kind == "enhance" else ProgressiveSuperResolution
    kwargs.setdefault("tile_size", 32)
    return cls(tiny_net(kind, seed), device="cpu", **kwargs)


def lr_input(seed=0, shape=(2, 12, 20)):
    return np.random.default_rng(seed).normal(0, 0.1, shape).astype(np.float32)


def receptive_radius(net, n=40):
    """Largest reach (input pixels beyond its own) of any output pixel of one input pixel, by autograd."""
    net = net.double().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, n, n, dtype=torch.float64, generator=gen, requires_grad=True)
    y = net(x)
    f, p = net.config.factor, n // 2
    # The gradient of the sum of the f x f outputs of input pixel p is non-zero on the union of their
    # supports (random weights and inputs: no exact cancellation).
    (g,) = torch.autograd.grad(y[0, 0, f * p : f * (p + 1), f * p : f * (p + 1)].sum(), x)
    return int((torch.nonzero(g[0, 0]) - p).abs().max())


KINDS = ["enhance", "progressive"]


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_attributes(kind):
    model = tiny_model(kind)
    assert model.name == kind and model.factor == 4
    assert not model.stochastic and model.clip_input and model.revision == "untrained"
    x = lr_input()
    out = model.predict(x)
    assert out.shape == (2, 48, 80) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, model.predict(x))  # deterministic
    # A tile's output does not depend on the rest of the batch (eval-mode batch norm).
    np.testing.assert_allclose(model.predict(x[1:])[0], out[1], atol=1e-6)
    # The factor is a config field: a x2 network has one upsampling stage / pyramid level.
    two = tiny_net(kind, factor=2, **({} if kind == "enhance" else {"blocks_per_level": (1,)}))
    assert two(torch.zeros(1, 1, 8, 8)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("skip", ["bicubic", "nearest", "none"])
def test_halo_is_the_receptive_field(kind, skip):
    """The halo computed from the layers equals the reach measured by autograd, exactly."""
    net = tiny_net(kind, skip=skip)
    assert net.halo == receptive_radius(net)


def test_default_configs():
    """The paper-sized defaults (section 3.4): size, halo, and the layer plan of each network."""
    enhance, progressive = EnhanceNet(), ProgressiveNet()
    assert sum(p.numel() for p in enhance.parameters()) == 482177
    assert sum(p.numel() for p in progressive.parameters()) == 725122
    assert (enhance.halo, progressive.halo) == (13, 25)
    assert len(enhance.blocks) == 5 and enhance.config.channels == 64
    assert [len(level.units) for level in progressive.levels] == [4, 2]
    model = EnhanceSuperResolution(enhance, device="cpu")
    assert model.tile_size == 256 and model.halo == 13


def test_dependency_halo_arithmetic():
    # bicubic x4 reads 2 input pixels beyond its own (BicubicModel.halo); nearest none.
    assert dependency_halo([[("bicubic", 4)]], 4) == BicubicModel.halo == 2
    assert dependency_halo([[("up", 4)]], 4) == NearestModel.halo == 0
    # A 3x3 conv after a x2 doubling reaches a whole input pixel at the block edge, not half of one.
    assert dependency_halo([[("up", 2), ("conv", 3), ("up", 2)]], 4) == 1
    with pytest.raises(ValueError, match="upsamples by 2"):
        dependency_halo([[("up", 2)]], 4)


@pytest.mark.parametrize(("skip", "oracle"), [("bicubic", BicubicModel), ("nearest", NearestModel)])
@pytest.mark.parametrize("kind", KINDS)
def test_skip_is_on_the_finer_grid(kind, skip, oracle):
    """With the network's own output zeroed, what remains is exactly the interpolation baseline."""
    net = tiny_net(kind, skip=skip)
    last = net.tail if kind == "enhance" else net.levels[-1].reconstruct
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = lr_input()
    model = (
        EnhanceSuperResolution(net, device="cpu")
        if kind == "enhance"
        else ProgressiveSuperResolution(net, device="cpu")
    )
    np.testing.assert_allclose(model.predict(x), oracle(device="cpu").predict(x), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_exact_seeded_slice(kind):
    out = tiny_model(kind).predict(lr_input())
    np.testing.assert_allclose(out[0, 20, 20:24], EXPECTED_SLICE[kind], rtol=1e-4, atol=1e-6)


def test_inference_skips_the_images_of_the_coarser_levels(monkeypatch):
    net = tiny_net("progressive").eval()
    calls = []
    for level in net.levels:
        monkeypatch.setattr(
            level.reconstruct, "forward", lambda t, f=level.reconstruct.forward: calls.append(1) or f(t)
        )
    x = torch.from_numpy(lr_input())[:, None]
    last = net(x)
    assert len(calls) == 1
    every = net(x, all_levels=True)
    assert len(calls) == 1 + len(net.levels) and torch.equal(every[-1], last)


@pytest.mark.parametrize("kind", KINDS)
def test_the_network_runs_channels_last_with_the_plain_layouts_output(kind):
    """NHWC is a speed choice only (1.4x for both CNNs on the 2-core CPU): same output as NCHW."""
    model = tiny_model(kind)
    conv = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = lr_input()
    plain = tiny_net(kind).eval()  # the same seeded weights, NCHW
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)[:, None]).numpy()[:, 0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_save_pretrained_round_trip(kind, tmp_path):
    model = tiny_model(kind, revision="r1")
    path = model.save_pretrained(tmp_path / kind)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert files == ["network/config.json", "network/diffusion_pytorch_model.safetensors", "superres.json"]
    config = json.loads((path / "network" / "config.json").read_text())
    assert config["_class_name"] == type(model.network).__name__ and config["factor"] == 4
    manifest = json.loads((path / "superres.json").read_text())
    assert manifest["kind"] == kind and manifest["inference"] == {"tile_size": 32, "halo": model.halo}

    loaded = type(model).from_pretrained(path, device="cpu")
    assert (loaded.name, loaded.revision, loaded.tile_size, loaded.halo) == (kind, "r1", 32, model.halo)
    fields = json.loads(json.dumps({k: v for k, v in model.network.config.items() if not k.startswith("_")}))
    assert {k: loaded.network.config[k] for k in fields} == fields  # (tuples come back as lists)
    x = lr_input()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # The same directory through the registry's path (what superresolve(model="dir") uses).
    from sunpy_superres.models import load_model

    via_registry = load_model(str(path), device="cpu")
    assert type(via_registry) is type(model)
    np.testing.assert_array_equal(via_registry.predict(x), model.predict(x))

    other = ProgressiveSuperResolution if kind == "enhance" else EnhanceSuperResolution
    with pytest.raises(ValueError, match="not"):
        other.from_pretrained(path, device="cpu")
    weights = path / "network" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ChecksumError):
        type(model).from_pretrained(path, device="cpu")


@pytest.fixture
def mdi_piece(mdi_cutout):
    """64x64 pixels of the real MDI cut-out, around its active region."""
    return mdi_cutout.submap([32, 32] * u.pix, top_right=[95, 95] * u.pix)


@pytest.mark.parametrize("kind", KINDS)
def test_superresolve_map_and_wcs(kind, mdi_piece):
    model = tiny_model(kind, tile_size=64)
    out = superresolve(mdi_piece, model=model, progress=False)
    assert out.data.shape == (256, 256) and np.isfinite(out.data).all()
    assert out.meta["srmodel"] == kind and out.meta["srmodrev"] == "untrained"
    assert u.allclose(out.scale.axis1, mdi_piece.scale.axis1 / 4)
    # The outer edge of the grid and the centre do not move (rule 2 of docs/dev/design.rst).
    for (px, py), (qx, qy) in [
        ((-0.5, -0.5), (-0.5, -0.5)),
        ((63.5, 63.5), (255.5, 255.5)),
        ((31.5, 31.5), (127.5, 127.5)),
    ]:
        sep = mdi_piece.pixel_to_world(px * u.pix, py * u.pix).separation(
            out.pixel_to_world(qx * u.pix, qy * u.pix)
        )
        assert sep < 1 * u.mas
    back = out.superpixel((4, 4) * u.pix, func=np.mean)
    assert back.data.shape == mdi_piece.data.shape
    # A deterministic baseline stays as the paper compares it unless the consistency step is asked for.
    assert not out.meta["srconsis"]
    projected = superresolve(mdi_piece, model=model, consistency=True, progress=False)
    assert projected.meta["srconsis"] and not np.allclose(projected.data, out.data)
    np.testing.assert_allclose(
        projected.superpixel((4, 4) * u.pix, func=np.mean).data,
        mdi_piece.data * MDI_TO_HMI,
        rtol=1e-4,
        atol=1e-2,
    )
    with pytest.raises(ValueError, match="deterministic"):
        superresolve(mdi_piece, model=model, samples=2, progress=False)


@pytest.mark.parametrize("kind", KINDS)
def test_tiled_equals_untiled(kind, mdi_piece, mdi_limb_cutout):
    """The seam test: with the halo from the layers, tiles blend to the untiled result."""
    model = tiny_model(kind)
    whole = superresolve(mdi_piece, model=model, tile_size=64, progress=False)
    # 3 x 3 tiles whose blend ramps are only 2 pixels wide: every kept output pixel is next to the
    # zero-weight band of the halo, where a too-small halo would show.
    tiled = superresolve(
        mdi_piece,
        model=model,
        tile_size=2 * model.halo + 20,
        overlap=2 * model.halo + 2,
        batch_size=4,
        progress=False,
    )
    assert tiled.meta["srmodel"] == kind
    np.testing.assert_allclose(tiled.data, whole.data, rtol=0, atol=2e-4)  # G: float32 rounding only
    # Guard the test: with a third of the halo, padding-contaminated outputs enter the blend and show.
    # (The outermost pixels of the receptive field have a tiny effect in these untrained nets, so the
    # halo from the layers is an upper bound the seam alone could not pin down: test_halo_* does.)
    short = tiny_model(kind)
    short.halo //= 3
    seamed = superresolve(
        mdi_piece,
        model=short,
        tile_size=2 * model.halo + 20,
        overlap=2 * model.halo + 2,
        batch_size=4,
        progress=False,
    )
    assert np.abs(seamed.data - whole.data).max() > 10 * 2e-4
    # Off-disk NaNs stay NaN, tiled or not.
    limb = superresolve(mdi_limb_cutout, model=model, tile_size=40, progress=False)
    off_disk = np.kron(np.isnan(mdi_limb_cutout.data), np.ones((4, 4)))
    np.testing.assert_array_equal(np.isnan(limb.data), off_disk)


def hmi_crops(hmi_cutout, n=8, size=48, seed=0):
    """HR crops of the real HMI cut-out in network units, and their 4x4 block means (the paper's LR)."""
    data = np.clip(np.asarray(hmi_cutout.data, np.float32) / 3000, -1, 1)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, data.shape[0] - size, (n, 2))
    hr = torch.from_numpy(np.stack([data[y : y + size, x : x + size] for y, x in starts]))[:, None]
    return F.avg_pool2d(hr, 4), hr


@pytest.mark.parametrize("kind", KINDS)
def test_pixel_mse_training_reduces_loss(kind, hmi_cutout):
    """A few Adam steps on real HMI crops lower the pixel MSE (the baselines' training objective)."""
    lr, hr = hmi_crops(hmi_cutout)
    net = tiny_net(kind).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(net(lr), hr)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.95 * losses[0]
    if kind == "enhance":  # it already beats bicubic here (recorded: 8.1e-5 -> 4.2e-5; bicubic 6.2e-5)
        bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        bicubic = F.mse_loss(bicubic, hr).item()
        assert np.mean(losses[-3:]) < bicubic
    # The trained network goes straight into the wrapper (batch norm switched to running stats).
    model = (
        EnhanceSuperResolution(net, device="cpu")
        if kind == "enhance"
        else ProgressiveSuperResolution(net, device="cpu")
    )
    assert model.predict(lr[:1, 0].numpy()).shape == (1, 48, 48) and not net.training


def test_progressive_mse_supervises_every_level(hmi_cutout):
    lr, hr = hmi_crops(hmi_cutout, n=2)
    net = tiny_net("progressive")
    x2, x4 = net(lr, all_levels=True)
    assert x2.shape[-1] == 24 and x4.shape[-1] == 48
    torch.testing.assert_close(net(lr), x4)
    expected = F.mse_loss(x2, F.avg_pool2d(hr, 2)) + 0.5 * F.mse_loss(x4, hr)
    torch.testing.assert_close(progressive_mse(net, lr, hr, level_weights=(1, 0.5)), expected)
    with pytest.raises(ValueError, match="level weights"):
        progressive_mse(net, lr, hr, level_weights=(1,))
    with pytest.raises(ValueError, match="not 4 x"):
        progressive_mse(net, lr, hr[..., :24])


def test_projected_progressive_mse_scores_the_output_after_projection_onto_the_input(hmi_cutout):
    """``projected``: the x4 error after the block-mean projection the diffusion default's base makes."""
    lr, hr = hmi_crops(hmi_cutout, n=2)
    offsets = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))

    class Fake(torch.nn.Module):
        """The truth plus a constant per 4x4 block (x4); the truth's 2x2 means (x2)."""

        def forward(self, x, all_levels=False):
            return [F.avg_pool2d(hr, 2), hr + F.interpolate(offsets, scale_factor=4, mode="nearest")]

    # Block constants are what the projection removes: nothing is left of the error.
    assert progressive_mse(Fake(), lr, hr, projected=True) < 1e-12
    assert torch.isclose(progressive_mse(Fake(), lr, hr), (offsets**2).mean())
    # On a real network: the MSE of the output projected as `regression_base` and
    # `project_block_means(method="block")` (NumPy and OpenCV, an independent implementation) do it.
    net = tiny_net("progressive")
    x2, x4 = net(lr, all_levels=True)
    projected = np.stack(
        [
            project_block_means(o[0].detach().numpy(), t[0].numpy(), 4, method="block")
            for o, t in zip(x4, lr, strict=True)
        ]
    )
    expected = F.mse_loss(x2, F.avg_pool2d(hr, 2)) + F.mse_loss(torch.from_numpy(projected), hr[:, 0])
    torch.testing.assert_close(progressive_mse(net, lr, hr, projected=True), expected)


def test_invalid_configs():
    with pytest.raises(ValueError, match="power of two"):
        EnhanceNet(factor=3)
    with pytest.raises(ValueError, match="skip"):
        EnhanceNet(skip="lanczos")
    with pytest.raises(ValueError, match="one entry per x2 level"):
        ProgressiveNet(blocks_per_level=(1, 1, 1))
    with pytest.raises(ValueError, match="padding_mode"):
        ProgressiveNet(padding_mode="circularish")
    with pytest.raises(TypeError, match="needs a EnhanceNet"):
        EnhanceSuperResolution(tiny_net("progressive"), device="cpu")
    with pytest.raises(ValueError, match="tile_size"):
        EnhanceSuperResolution(tiny_net("enhance"), tile_size=8, device="cpu")
