"""
A single-channel magnetogram autoencoder for latent diffusion (Ramunno et al. 2024, sections 3.3, 4).

The paper encodes magnetograms with a pre-trained RGB VQGAN (the one-channel image repeated to three
channels). We train our own one-channel `diffusers.AutoencoderKL` on HMI crops instead: it needs no
RGB weights, keeps the +-3000 G scaling of `sunpy_superres.calibration`, and the paper itself also
trains its LDM "on the non-quantized latent space" (section 4). The downsampling factor (4 or 8) is a
config choice made by measuring reconstruction quality (the paper's Fig. 4); see
`reconstruction_metrics`.

The encoder is used deterministically: latents are the mean of the posterior, not samples from it,
so the conditioning of the diffusion model does not change from call to call and the only randomness
of a super-resolved map is the sampler's (DESIGN.md rule 7). The paper's code samples instead.
"""

import math

import numpy as np
import torch
from diffusers import AutoencoderKL

__all__ = ["MagnetogramAutoencoder", "build_autoencoder", "reconstruction_metrics", "radial_log_power_loss",
           "autoencoder_loss"]


class MagnetogramAutoencoder(AutoencoderKL):
    """
    `diffusers.AutoencoderKL` for one-channel magnetograms in network units (B / 3000 G).

    The configuration is `AutoencoderKL`'s (saved as ``config.json``); the spatial downsampling
    factor is ``2 ** (len(block_out_channels) - 1)``. Build one with `build_autoencoder`.
    """

    @property
    def factor(self):
        """Spatial downsampling factor between image and latent grid."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode_mean(self, x):
        """
        Deterministic latents: the posterior mean of ``x``.

        Parameters
        ----------
        x : `torch.Tensor`
            ``(B, 1, H, W)`` in network units, ``H`` and ``W`` multiples of `factor`.

        Returns
        -------
        `torch.Tensor`
            ``(B, latent_channels, H / factor, W / factor)``.
        """
        return self.encode(x).latent_dist.mean

    def decode_latent(self, z):
        """Decode latents ``(B, C, h, w)`` to images ``(B, 1, factor * h, factor * w)``."""
        return self.decode(z).sample


def build_autoencoder(*, factor=8, latent_channels=4, base_channels=32, max_channels=128, layers_per_block=1,
                      norm_num_groups=8):
    """
    A freshly initialised one-channel `MagnetogramAutoencoder`.

    Parameters
    ----------
    factor : int
        Spatial downsampling factor, a power of 2 (4 or 8 in the paper's Fig. 4 range).
    latent_channels : int
        Channels of the latent grid.
    base_channels, max_channels : int
        Channels of the first resolution level; each further level doubles them up to
        ``max_channels``.
    layers_per_block : int
        ResNet layers per resolution level.
    norm_num_groups : int
        Group-norm groups; must divide every level's channel count.

    Raises
    ------
    ValueError
        If ``factor`` is not a power of 2 of at least 2.
    """
    levels = int(round(math.log2(factor))) + 1 if factor >= 2 else 0
    if levels < 2 or 2 ** (levels - 1) != factor:
        raise ValueError(f"factor must be a power of 2 (2, 4, 8, ...), got {factor!r}")
    channels = tuple(min(base_channels * 2 ** i, max_channels) for i in range(levels))
    return MagnetogramAutoencoder(
        in_channels=1, out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=channels, layers_per_block=layers_per_block, latent_channels=latent_channels,
        norm_num_groups=norm_num_groups, scaling_factor=1.0,
    )


def radial_log_power_loss(pred, target, *, nbins=None, eps=1e-12):
    """
    Mean absolute difference of the log azimuthally averaged power spectra of two image batches.

    The differentiable counterpart of `sunpy_superres.metrics.spectra.spectral_error` (Hann
    window, radial bins of one frequency step), over all frequencies. An MSE-trained autoencoder
    reproduces the large scales and drops the small-scale power of a magnetogram (its granulation,
    network and noise): this term asks the decoder for the right power at every scale without
    asking for the unpredictable phases. Written by hand: no maintained library offers a radial
    power loss for PyTorch.

    Parameters
    ----------
    pred, target : `torch.Tensor`
        ``(B, C, H, W)`` images.
    nbins : int, optional
        Radial bins; by default ``min(H, W) // 2``.
    eps : float, optional
        Added to the power before the logarithm.

    Returns
    -------
    `torch.Tensor`
        Scalar: the mean over images, channels and bins of ``|ln P_pred - ln P_target|``.
    """
    h, w = pred.shape[-2:]
    nbins = nbins or min(h, w) // 2
    window = torch.outer(torch.hann_window(h, periodic=False, device=pred.device),
                         torch.hann_window(w, periodic=False, device=pred.device))
    ky = torch.fft.fftfreq(h, device=pred.device)[:, None]
    kx = torch.fft.rfftfreq(w, device=pred.device)[None, :]
    radius = torch.sqrt(ky ** 2 + kx ** 2) * 2 * nbins  # 0 at DC, nbins at the Nyquist frequency
    index = radius.round().long().clamp(max=nbins).flatten()
    counts = torch.bincount(index, minlength=nbins + 1).clamp(min=1)

    def radial(x):
        power = torch.fft.rfft2(x.float() * window, norm="ortho").abs().square().flatten(-2)
        total = torch.zeros(*power.shape[:-1], nbins + 1, device=x.device).index_add_(-1, index, power)
        return (total / counts)[..., 1:nbins + 1]  # DC (the mean) and the corners beyond Nyquist excluded

    return torch.mean(torch.abs(torch.log(radial(pred) + eps) - torch.log(radial(target) + eps)))


def autoencoder_loss(autoencoder, hr, eps, *, kl_weight=1e-6, spectral_weight=0.0):
    """
    Training loss of the autoencoder: MSE of the reconstruction plus a weak KL term, and optionally a
    radial log-power term.

    The KL weight is the small value of Rombach et al. (2021) for a "KL-reg" autoencoder: it keeps
    the latent scale bounded without blurring. Reconstruction decodes a posterior sample, as there.
    With ``spectral_weight > 0`` the `radial_log_power_loss` of the reconstruction is added: the
    role that the perceptual and adversarial losses of the paper's VQGAN play for sharpness, for
    one-channel magnetograms whose small-scale statistics are their power spectrum.

    Parameters
    ----------
    hr : `torch.Tensor`
        ``(B, 1, H, W)`` images in network units.
    eps : `torch.Tensor`
        ``(B, latent_channels, H / factor, W / factor)`` standard normal draws for the posterior
        sample, passed in so that a training step is reproducible from its seed.
    """
    posterior = autoencoder.encode(hr).latent_dist
    z = posterior.mean + posterior.std * eps
    rec = autoencoder.decode(z).sample
    kl = posterior.kl().mean() / hr[0].numel()
    loss = torch.mean((rec.float() - hr.float()) ** 2) + kl_weight * kl
    if spectral_weight:
        loss = loss + spectral_weight * radial_log_power_loss(rec, hr)
    return loss


@torch.no_grad()
def reconstruction_metrics(autoencoder, hr, *, threshold=None):
    """
    How well ``autoencoder`` reconstructs magnetograms: PSNR and unsigned-flux error.

    Parameters
    ----------
    hr : `numpy.ndarray`
        ``(B, H, W)`` images in network units (B / 3000 G), ``H, W`` multiples of the factor.
    threshold : float, optional
        Only pixels with ``|B|`` above this (network units) count in the unsigned flux; all when
        `None`.

    Returns
    -------
    dict
        ``psnr`` (dB, data range 2 i.e. +-3000 G, mean over images), ``flux_error`` (mean relative
        error of the unsigned flux sum ``|B|`` per image, dimensionless), ``rmse_gauss`` (G).

    References
    ----------
    .. [1] Ramunno, F. P. et al. 2024, Fig. 4 (reconstruction vs downsampling factor).
    """
    device = next(autoencoder.parameters()).device
    x = torch.from_numpy(np.asarray(hr, dtype=np.float32))[:, None].to(device)
    rec = autoencoder.decode_latent(autoencoder.encode_mean(x))[:, 0].cpu().numpy().astype(np.float64)
    ref = np.asarray(hr, dtype=np.float64)
    mse = np.mean((rec - ref) ** 2, axis=(1, 2))
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-20))
    sel = np.ones_like(ref, dtype=bool) if threshold is None else np.abs(ref) > threshold
    flux_ref = np.sum(np.abs(ref) * sel, axis=(1, 2))
    flux_rec = np.sum(np.abs(rec) * sel, axis=(1, 2))
    flux_err = np.abs(flux_rec - flux_ref) / np.maximum(flux_ref, 1e-12)
    return {"psnr": float(np.mean(psnr)), "flux_error": float(np.mean(flux_err)),
            "rmse_gauss": float(3000 * np.sqrt(np.mean(mse)))}
