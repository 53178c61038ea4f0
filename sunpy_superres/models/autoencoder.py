"""
A single-channel magnetogram autoencoder for latent diffusion (Ramunno et al. 2025, sections 3.3, 4).

The paper encodes magnetograms with a pre-trained RGB VQGAN (the one-channel image repeated to three
channels). We train our own one-channel `diffusers.AutoencoderKL` on HMI crops instead: it needs no
RGB weights, keeps the +-3000 G scaling of `sunpy_superres.calibration`, and the paper itself also
trains its LDM "on the non-quantized latent space" (section 4). The downsampling factor (4 or 8) is a
config choice made by measuring reconstruction quality (the paper's Fig. 4); see
`reconstruction_metrics`.

The encoder is used deterministically: latents are the mean of the posterior, not samples from it,
so the conditioning of the diffusion model does not change from call to call and the only randomness
of a super-resolved map is the sampler's (rule 7 of docs/dev/design.rst). The paper's code samples instead.
"""

import math

import numpy as np
import torch
from diffusers import AutoencoderKL

__all__ = [
    "MagnetogramAutoencoder",
    "build_autoencoder",
    "reconstruction_metrics",
    "radial_log_power_loss",
    "local_texture_loss",
    "autoencoder_loss",
    "freeze_encoder",
]


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

    @property
    def latent_channels(self):
        """Channels of the latent grid."""
        return int(self.config.latent_channels)

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


def build_autoencoder(
    *, factor=8, latent_channels=4, base_channels=32, max_channels=128, layers_per_block=1, norm_num_groups=8
):
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
    channels = tuple(min(base_channels * 2**i, max_channels) for i in range(levels))
    return MagnetogramAutoencoder(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        scaling_factor=1.0,
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
    window = torch.outer(
        torch.hann_window(h, periodic=False, device=pred.device),
        torch.hann_window(w, periodic=False, device=pred.device),
    )
    ky = torch.fft.fftfreq(h, device=pred.device)[:, None]
    kx = torch.fft.rfftfreq(w, device=pred.device)[None, :]
    radius = torch.sqrt(ky**2 + kx**2) * 2 * nbins  # 0 at DC, nbins at the Nyquist frequency
    index = radius.round().long().clamp(max=nbins).flatten()
    counts = torch.bincount(index, minlength=nbins + 1).clamp(min=1)

    def radial(x):
        power = torch.fft.rfft2(x.float() * window, norm="ortho").abs().square().flatten(-2)
        total = torch.zeros(*power.shape[:-1], nbins + 1, device=x.device).index_add_(-1, index, power)
        return (total / counts)[..., 1 : nbins + 1]  # DC (the mean) and the corners beyond Nyquist excluded

    return torch.mean(torch.abs(torch.log(radial(pred) + eps) - torch.log(radial(target) + eps)))


def _bands(x):
    """The two octaves below the 4-pixel (2" on HMI) scale: ``x - L2(x)`` and ``L2(x) - L4(x)``."""

    def low(y, f):  # block mean, then bilinear back: a smooth low-pass that keeps constants exactly
        return torch.nn.functional.interpolate(
            torch.nn.functional.avg_pool2d(y, f), scale_factor=f, mode="bilinear", align_corners=False
        )

    l2, l4 = low(x, 2), low(x, 4)
    return x - l2, l2 - l4


def local_texture_loss(pred, target, *, window=8, eps=1e-12):
    """
    Mismatch of the local amplitude of the small scales and of the local unsigned flux.

    Each image is split into the two octaves below 4 pixels (the 2" MDI scale on the 0.5" HMI
    grid): ``x - L2(x)`` and ``L2(x) - L4(x)``, where ``Lf`` is an ``f x f`` block mean interpolated
    back bilinearly. In every ``window x window`` block the rms of each band is compared, and so is
    the mean of ``|x|``, the block's unsigned flux; the loss is the sum of the three mean absolute
    differences. Unlike `radial_log_power_loss`, which only asks for the right power per scale over
    a whole crop, this asks for it *where* the target has it: granulation-level texture in the quiet
    Sun, strong small-scale structure in active regions. The flux term asks for texture whose
    amplitude distribution adds the right unsigned flux: at equal rms a regular pattern has a larger
    mean ``|B|`` than noise-like texture (a square wave by 25 %), so rms alone lets the decoder add
    flux in the quiet Sun. Neither term asks for phases, which a decoder cannot know. Written by hand:
    no maintained library offers this for PyTorch.

    Parameters
    ----------
    pred, target : `torch.Tensor`
        ``(B, C, H, W)`` images, ``H`` and ``W`` multiples of ``window`` and of 4.
    window : int, optional
        Side of the blocks over which rms and unsigned flux are taken, pixels.
    eps : float, optional
        Added under the square root (keeps the gradient finite where a band is zero).

    Returns
    -------
    `torch.Tensor`
        Scalar, in the units of the images.
    """
    pool = torch.nn.functional.avg_pool2d
    pred, target = pred.float(), target.float()
    total = torch.mean(torch.abs(pool(pred.abs(), window) - pool(target.abs(), window)))
    for a, b in zip(_bands(pred), _bands(target), strict=True):
        total = total + torch.mean(
            torch.abs(torch.sqrt(pool(a**2, window) + eps) - torch.sqrt(pool(b**2, window) + eps))
        )
    return total


def freeze_encoder(autoencoder):
    """
    Freeze the encoder half (``encoder``, ``quant_conv``) of an autoencoder, in place; returns it.

    Fine-tuning only the decoder keeps the latent space, so a denoiser trained on it stays valid.
    """
    for module in (autoencoder.encoder, autoencoder.quant_conv):
        if module is not None:
            module.requires_grad_(False)
    return autoencoder


def autoencoder_loss(
    autoencoder,
    hr,
    eps,
    *,
    kl_weight=1e-6,
    spectral_weight=0.0,
    texture_weight=0.0,
    texture_window=8,
    sample_posterior=True,
):
    """
    Training loss of the autoencoder: MSE of the reconstruction plus a weak KL term, and optionally a
    radial log-power term and a local texture term.

    The KL weight is the small value of Rombach et al. (2021) for a "KL-reg" autoencoder: it keeps
    the latent scale bounded without blurring. Reconstruction decodes a posterior sample, as there.
    With ``spectral_weight > 0`` the `radial_log_power_loss` of the reconstruction is added, and with
    ``texture_weight > 0`` the `local_texture_loss`: the role that the perceptual and adversarial
    losses of the paper's VQGAN play for sharpness, for one-channel magnetograms whose small-scale
    statistics are their power spectrum and its local amplitude.

    Parameters
    ----------
    hr : `torch.Tensor`
        ``(B, 1, H, W)`` images in network units.
    eps : `torch.Tensor`
        ``(B, latent_channels, H / factor, W / factor)`` standard normal draws for the posterior
        sample, passed in so that a training step is reproducible from its seed.
    sample_posterior : bool, optional
        Decode a posterior sample (default) or the posterior mean, the latents the diffusion model
        works with (for fine-tuning the decoder of a frozen encoder; the KL term is then left out,
        as the encoder does not train).
    """
    posterior = autoencoder.encode(hr).latent_dist
    z = posterior.mean + posterior.std * eps if sample_posterior else posterior.mean
    rec = autoencoder.decode(z).sample
    loss = torch.mean((rec.float() - hr.float()) ** 2)
    if sample_posterior:
        loss = loss + kl_weight * posterior.kl().mean() / hr[0].numel()
    if spectral_weight:
        loss = loss + spectral_weight * radial_log_power_loss(rec, hr)
    if texture_weight:
        loss = loss + texture_weight * local_texture_loss(rec, hr, window=texture_window)
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
    .. [1] Ramunno, F. P. et al. 2025, A&A 698, A140, Fig. 4 (reconstruction vs downsampling factor).
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
    return {
        "psnr": float(np.mean(psnr)),
        "flux_error": float(np.mean(flux_err)),
        "rmse_gauss": float(3000 * np.sqrt(np.mean(mse))),
    }
