"""
An invertible, training-free latent space: space-to-depth (pixel unshuffle).

`SpaceToDepth` takes the place of the learnt autoencoder of a latent diffusion model. It moves every
``factor x factor`` block of pixels into ``factor ** 2`` channels on the coarse grid and back, so
``decode_latent(encode_mean(x)) == x`` exactly: nothing below 2" is lost, and it costs no network
evaluation. Pixel-space diffusion models for high resolution use such invertible downsampling stems
instead of an autoencoder (Hoogeboom et al. 2023, "simple diffusion", sec. 3.2; Saharia et al.
2022). For a factor of 4 on the 0.5" HMI grid the latent grid is the 2" MDI grid: one latent
"pixel" holds the 16 HR values that one MDI pixel averages.

Why not the learnt autoencoder: the one trained here kept almost none of the sub-2" field (decoding
the true latent of a held-out crop instead of its LR latent moved the output by 6.6 G rms against a
29 G HR - LR residual; the model card and ``docs/dev/design.rst``, measurements), which capped both the spectrum
and the spread of the samples. The paper's `ldm-res` structure is kept: a U-Net on the latent
residual ``E(HR) - E(LR)``, conditioned on ``E(LR)`` by concatenation.
"""

import torch.nn.functional as F

from .network import Network, register_to_config

__all__ = ["SpaceToDepth"]


class SpaceToDepth(Network):
    """
    Space-to-depth "autoencoder": ``(B, 1, H, W) <-> (B, factor**2, H / factor, W / factor)``.

    It has the interface of `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder` that
    latent diffusion uses (`factor`, `latent_channels`, `encode_mean`, `decode_latent`) and
    no weights; it is saved as a ``config.json`` alone so that a model directory says which
    latent space its denoiser works in.

    Parameters
    ----------
    factor : int
        Block side in pixels (the latent grid is ``factor`` times coarser).

    Raises
    ------
    ValueError
        If ``factor`` is not an integer of at least 2.
    """

    has_weights = False

    @register_to_config
    def __init__(self, factor=4):
        super().__init__()
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 2:
            raise ValueError(f"factor must be an integer of at least 2, got {factor!r}")

    @property
    def latent_channels(self):
        """Channels of the latent grid: ``factor ** 2``."""
        return self.factor**2

    @property
    def factor(self):
        """Spatial downsampling factor between image and latent grid."""
        return int(self.config.factor)

    def encode_mean(self, x):
        """
        Blocks of ``x`` as channels: ``(B, 1, H, W)`` -> ``(B, factor**2, H / factor, W / factor)``.

        Channel ``i * factor + j`` holds pixel ``(i, j)`` of every block
        (`torch.nn.functional.pixel_unshuffle`).
        """
        return F.pixel_unshuffle(x, self.factor)

    def decode_latent(self, z):
        """The inverse of `encode_mean` (`torch.nn.functional.pixel_shuffle`)."""
        return F.pixel_shuffle(z, self.factor)
