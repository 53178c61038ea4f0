"""The space-to-depth latent: exact inverse, saved as a config, loaded by a diffusion model directory."""

import json

import numpy as np
import pytest
import torch

from sunpy_superres.models import load_model
from sunpy_superres.models.diffusion import ConditionalDenoiser, DiffusionSuperResolution, load_latent_space
from sunpy_superres.models.spacetodepth import SpaceToDepth

from .tiny import tiny_autoencoder


def test_round_trip_is_exact_and_blocks_become_channels():
    s2d = SpaceToDepth(factor=4)
    x = torch.randn(2, 1, 16, 12, generator=torch.Generator().manual_seed(0))
    z = s2d.encode_mean(x)
    assert z.shape == (2, 16, 4, 3) and s2d.latent_channels == 16
    torch.testing.assert_close(s2d.decode_latent(z), x, rtol=0, atol=0)
    # Channel i * 4 + j is pixel (i, j) of each 4x4 block, so the channel mean is the block mean.
    assert z[0, 1 * 4 + 2, 3, 2] == x[0, 0, 3 * 4 + 1, 2 * 4 + 2]
    torch.testing.assert_close(z.mean(dim=1, keepdim=True), torch.nn.functional.avg_pool2d(x, 4))


def test_no_weights_saved_and_config_round_trip(tmp_path):
    SpaceToDepth(factor=2).save_pretrained(tmp_path / "ae")
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["config.json"]
    assert json.loads((tmp_path / "ae" / "config.json").read_text())["_class_name"] == "SpaceToDepth"
    loaded = load_latent_space(tmp_path / "ae")
    assert isinstance(loaded, SpaceToDepth) and loaded.factor == 2


def test_learnt_autoencoder_still_loads(tmp_path):
    tiny_autoencoder().save_pretrained(tmp_path / "ae", safe_serialization=True)
    assert type(load_latent_space(tmp_path / "ae")).__name__ == "MagnetogramAutoencoder"


@pytest.mark.parametrize("factor", [1, 2.0, True])
def test_bad_factor_refused(factor):
    with pytest.raises(ValueError, match="factor must be an integer of at least 2"):
        SpaceToDepth(factor=factor)


def test_space_to_depth_diffusion_model_saves_loads_and_predicts(tmp_path):
    torch.manual_seed(0)
    den = ConditionalDenoiser(
        space="latent",
        residual=True,
        prediction_type="v_prediction",
        target_channels=16,
        cond_channels=16,
        target_scale=0.01,
        cond_scale=0.05,
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, False),
        norm_num_groups=4,
        beta_schedule="squaredcos_cap_v2",
    )
    model = DiffusionSuperResolution(den, SpaceToDepth(factor=4), tile_size=32, halo=4, steps=3, device="cpu")
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", device="cpu")
    assert isinstance(loaded.autoencoder, SpaceToDepth)
    x = np.random.default_rng(0).normal(0, 0.05, (1, 10, 14)).astype(np.float32)
    a, b = model.predict(x, seeds=[3]), loaded.predict(x, seeds=[3])
    assert a.shape == (1, 40, 56) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # The output is the input replicated plus a decoded residual: with the residual at its scale
    # (0.01 network units), the output stays close to the input's blocks.
    up = np.kron(x[0], np.ones((4, 4)))
    assert np.abs(a[0] - up).mean() < 0.2
