"""Tiny seeded diffusion models (a few ten thousand parameters) for fast tests."""

import torch

from sunpy_superres.models.autoencoder import build_autoencoder
from sunpy_superres.models.diffusion import ConditionalDenoiser, DiffusionSuperResolution
from sunpy_superres.models.progressive import ProgressiveNet


def tiny_autoencoder(factor=4, seed=0):
    torch.manual_seed(seed)
    return build_autoencoder(
        factor=factor, latent_channels=2, base_channels=8, max_channels=16, norm_num_groups=4
    )


def tiny_model(space="latent", residual=True, seed=0, noise_conditioning=False, residual_base="lr", **kwargs):
    ae = tiny_autoencoder(seed=seed) if space == "latent" else None
    ch = 2 if space == "latent" else 1
    torch.manual_seed(seed)
    den = ConditionalDenoiser(
        space=space,
        residual=residual,
        target_channels=ch,
        cond_channels=ch,
        target_scale=0.5,
        cond_scale=0.1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, True),
        attention_head_dim=8,
        norm_num_groups=4,
        noise_conditioning=noise_conditioning,
        residual_base=residual_base,
    )
    if residual_base == "regression":
        kwargs.setdefault(
            "regression",
            ProgressiveNet(channels=8, growth_rate=4, layers_per_block=2, blocks_per_level=(1, 1)),
        )
        kwargs.setdefault("regression_revision", "tiny-progressive")
    kwargs.setdefault("steps", 4)
    return DiffusionSuperResolution(den, ae, tile_size=32, halo=4, device="cpu", **kwargs)
