"""The magnetogram autoencoder: factors, shapes, round trip, reconstruction metrics."""

import numpy as np
import pytest
import torch

from sunpy_superres.models.autoencoder import (
    MagnetogramAutoencoder,
    build_autoencoder,
    reconstruction_metrics,
)

from .tiny import tiny_autoencoder


@pytest.mark.parametrize("factor", [4, 8])
def test_factor_and_shapes(factor):
    ae = tiny_autoencoder(factor)
    assert ae.factor == factor
    x = torch.zeros(2, 1, 32, 32)
    with torch.no_grad():
        z = ae.encode_mean(x)
        assert z.shape == (2, 2, 32 // factor, 32 // factor)
        assert ae.decode_latent(z).shape == x.shape


def test_bad_factor():
    with pytest.raises(ValueError, match="power of 2"):
        build_autoencoder(factor=6)


def test_round_trip(tmp_path):
    ae = tiny_autoencoder(4)
    ae.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    back = MagnetogramAutoencoder.from_pretrained(tmp_path, use_safetensors=True)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(back.encode_mean(x), ae.encode_mean(x), rtol=0, atol=0)


def test_reconstruction_metrics_of_an_exact_decoder():
    class Identity:  # an ideal autoencoder: metrics must say "perfect"
        def parameters(self):
            return iter([torch.zeros(1)])

        def encode_mean(self, x):
            return x

        def decode_latent(self, z):
            return z

    hr = np.random.default_rng(0).normal(0, 0.1, (3, 16, 16)).astype(np.float32)
    m = reconstruction_metrics(Identity(), hr)
    assert m["flux_error"] == 0 and m["rmse_gauss"] == 0 and m["psnr"] > 150


def test_radial_log_power_loss_analytic_cases():
    import math

    from sunpy_superres.models.autoencoder import radial_log_power_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, generator=g)
    assert float(radial_log_power_loss(x, x)) == 0.0
    # Scaling an image by a scales its power by a**2 in every bin: the loss is |ln a**2| exactly.
    assert math.isclose(float(radial_log_power_loss(3 * x, x)), math.log(9), rel_tol=1e-5)
    # A smoothed copy has too little small-scale power: a positive loss, with finite gradients.
    smooth = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1).requires_grad_(True)
    loss = radial_log_power_loss(smooth, x)
    loss.backward()
    assert loss.item() > 0.5 and torch.isfinite(smooth.grad).all()


def test_local_texture_loss_analytic_cases():
    from sunpy_superres.models.autoencoder import _bands, local_texture_loss, radial_log_power_loss

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 64, 64, generator=g)
    pool = torch.nn.functional.avg_pool2d
    assert float(local_texture_loss(x, x)) == 0.0
    # The bands are below 4 pixels: a uniform offset leaves them unchanged, and only the unsigned-flux
    # term sees it.
    flux_shift = float(torch.mean(torch.abs(pool((x + 7).abs(), 8) - pool(x.abs(), 8))))
    assert np.isclose(float(local_texture_loss(x + 7.0, x)), flux_shift, rtol=1e-5)
    # Bands and |x| are homogeneous, so scaling by c scales every block's rms and mean |x| by c: the
    # loss is |c - 1| times the target's mean block rms over bands plus its mean block |x|.
    rms = sum(float(torch.sqrt(pool(b**2, 8) + 1e-12).mean()) for b in _bands(x))
    flux = float(pool(x.abs(), 8).mean())
    assert np.isclose(float(local_texture_loss(2.5 * x, x)), 1.5 * (rms + flux), rtol=1e-5)
    # Texture in the wrong place: the same noise moved from the left half to the right half has the
    # same power spectrum to within a few per cent, but the local term sees the misplacement.
    left = x.clone()
    left[..., 32:] = 0
    right = torch.flip(left, dims=[-1])
    assert float(radial_log_power_loss(right, left)) < 0.05
    assert float(local_texture_loss(right, left)) > 0.9 * (rms + flux)
    # Gradients are finite where a band is exactly zero.
    pred = torch.zeros(1, 1, 32, 32, requires_grad=True)
    local_texture_loss(pred, x[:1, :, :32, :32]).backward()
    assert torch.isfinite(pred.grad).all()


def test_freeze_encoder_leaves_the_decoder_trainable():
    from sunpy_superres.models.autoencoder import freeze_encoder

    ae = freeze_encoder(tiny_autoencoder())
    trainable = {n for n, p in ae.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("decoder.", "post_quant_conv.")) for n in trainable)
    assert all(not p.requires_grad for p in ae.encoder.parameters())
