"""
Progressive: the progressive x2 -> x4 super-resolution CNN of Rahman et al. (2020), a deterministic
baseline of Ramunno et al. (2025).

Rahman et al. (2020) enhanced HMI magnetograms 4x (input: 4x4-binned HMI) with two models, a
residual attention network and a *progressive* GAN; Ramunno et al. (2025, section 3.4: "Figure 1 in
Rahman et al. (2020) for the Progressive model") train its generator from scratch with a pixel loss,
256x256 -> 1024x1024, and report it as the best deterministic model on PSNR/SSIM in their Table 1.
The progressive model follows ProSR/ProGanSR (Wang et al. 2018): an asymmetric pyramid with one
level per x2, each level made of residual dense blocks ("dense compression units"), a sub-pixel
(pixel-shuffle) x2 upsampler, and a reconstruction layer that outputs the image at that level's scale
as a residual added to the bicubically interpolated input. The x2 output supervises the first level
(curriculum: first x2, then x4), the x4 output is the result.

What we build, and why
----------------------
* **Generator only, deterministic.** The adversarial discriminator is a training device; Ramunno et
  al. use the network as a deterministic baseline trained on MSE, and so do we (`progressive_mse`).
* **Levels** (``blocks_per_level``): ``(4, 2)`` dense units by default, more at the coarse level where
  they are cheap, as ProSR's asymmetric pyramid does; ``channels=64``, ``growth_rate=16``,
  ``layers_per_block=4``: a CPU-sized version of ProSR (about 0.7 M parameters). Dense units are
  conv3x3-ReLU layers each seeing all previous features, compressed back by a 1x1 convolution and
  added with a residual scale of 0.2 (ProSR/ESRGAN), without batch norm.
* **Grid.** Pixel shuffle maps each coarse pixel onto the 2x2 finer pixels that tile it, and the
  bicubic skip uses ``align_corners=False``; both match `sunpy_superres.maps.finer_meta`.
* **Residual to bicubic**: as in ProSR, every level predicts the correction to bicubic interpolation
  of the input (``skip="nearest"`` or ``"none"`` are config options); see
  `sunpy_superres.models.enhance` for why residual learning suits a pixel-loss baseline.

The original figure of Rahman et al. was not available while writing this module; the layer plan
follows their description (progressive x2, x4 with residual blocks) and the ProSR design they build
on. The halo (receptive field) is computed from the layers: 25 input pixels for the default config.

References
----------
.. [1] Rahman, S., Moon, Y.-J., Park, E., et al. 2020, ApJL 897, L32, "Super-resolution of SDO/HMI
   magnetograms using novel deep learning methods", Fig. 1.
.. [2] Wang, Y., Perazzi, F., McWilliams, B., et al. 2018, CVPR Workshops, "A fully progressive
   approach to single-image super-resolution" (ProSR, ProGanSR).
.. [3] Ramunno, F. P. et al. 2025, A&A 698, A140, sections 3.4 and 7, Tables 1 and 2.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .conv import PaddedConv2d
from .enhance import (
    CNNSuperResolution,
    block_project,
    check_factor,
    check_skip,
    dependency_halo,
    init_residual_output,
    interpolate_input,
    skip_path,
)
from .manifest import register_kind
from .network import Network, register_to_config

__all__ = ["ProgressiveNet", "ProgressiveSuperResolution", "progressive_mse"]


class _DenseCompressionUnit(nn.Module):
    """Residual dense block: L conv3x3-ReLU layers on all previous features, 1x1 compression, scaled skip."""

    def __init__(self, channels, growth_rate, num_layers, residual_scale, padding_mode):
        super().__init__()
        self.layers = nn.ModuleList()
        c = channels
        for _ in range(num_layers):
            conv = PaddedConv2d(c, growth_rate, 3, padding=1, padding_mode=padding_mode)
            self.layers.append(nn.Sequential(conv, nn.ReLU(inplace=True)))
            c += growth_rate
        self.compress = nn.Conv2d(c, channels, 1)
        self.residual_scale = residual_scale

    def forward(self, x):
        feats = [x]
        for conv, act in self.layers:
            feats.append(act(conv(torch.cat(feats, dim=1))))
        return x + self.residual_scale * self.compress(torch.cat(feats, dim=1))


class _PyramidLevel(nn.Module):
    """One x2 level: dense units, a fusing conv with the level's long skip, pixel shuffle x2, output."""

    def __init__(self, channels, growth_rate, num_layers, num_blocks, residual_scale, padding_mode):
        super().__init__()
        pad = dict(padding=1, padding_mode=padding_mode)
        self.units = nn.Sequential(
            *[
                _DenseCompressionUnit(channels, growth_rate, num_layers, residual_scale, padding_mode)
                for _ in range(num_blocks)
            ]
        )
        self.fuse = PaddedConv2d(channels, channels, 3, **pad)
        self.upsample = nn.Sequential(
            PaddedConv2d(channels, 4 * channels, 3, **pad), nn.PixelShuffle(2), nn.ReLU(inplace=True)
        )
        self.reconstruct = PaddedConv2d(channels, 1, 3, **pad)

    def forward(self, feat, image=True):
        """The level's features and, if ``image``, its image (the last level's only, at inference)."""
        feat = self.upsample(feat + self.fuse(self.units(feat)))
        return feat, self.reconstruct(feat) if image else None


class ProgressiveNet(Network):
    """
    The progressive super-resolution network (a `~sunpy_superres.models.network.Network`: config + safetensors).

    Input and output are in network units (field / 3000 G): ``(B, 1, H, W)`` ->
    ``(B, 1, factor * H, factor * W)``; any ``H, W >= 2``.

    Parameters
    ----------
    channels : int
        Feature channels at every level.
    growth_rate : int
        Channels added by each layer of a dense unit.
    layers_per_block : int
        Conv layers per dense unit.
    blocks_per_level : tuple of int
        Dense units at each x2 level, coarsest first; ``len == log2(factor)``.
    factor : int
        Super-resolution factor, a power of two.
    skip : {"bicubic", "nearest", "none"}
        Interpolation of the input that every level's output is added to.
    residual_scale : float
        Scale of each dense unit's residual (stabilises deep residual stacks; ProSR: 0.2).
    padding_mode : {"reflect", "zeros", "replicate"}
        Convolution padding.

    Raises
    ------
    ValueError
        For a factor that is not a power of two, a ``blocks_per_level`` of the wrong length, an
        unknown skip or padding mode, or non-positive sizes.

    References
    ----------
    .. [1] Rahman et al. 2020, ApJL 897, L32, Fig. 1; Wang et al. 2018 (ProSR).
    """

    @register_to_config
    def __init__(
        self,
        channels=64,
        growth_rate=16,
        layers_per_block=4,
        blocks_per_level=(4, 2),
        factor=4,
        skip="bicubic",
        residual_scale=0.2,
        padding_mode="reflect",
    ):
        super().__init__()
        levels = check_factor(factor)
        check_skip(skip)
        blocks_per_level = tuple(int(b) for b in blocks_per_level)
        if len(blocks_per_level) != levels:
            raise ValueError(
                f"blocks_per_level needs one entry per x2 level ({levels} for factor {factor}), "
                f"got {blocks_per_level}"
            )
        if padding_mode not in ("reflect", "zeros", "replicate"):
            raise ValueError(f"padding_mode must be 'reflect', 'zeros' or 'replicate', got {padding_mode!r}")
        if min(channels, growth_rate, layers_per_block) < 1 or min(blocks_per_level) < 0:
            raise ValueError(
                "channels, growth_rate and layers_per_block must be positive, blocks_per_level >= 0"
            )
        self.head = PaddedConv2d(1, channels, 3, padding=1, padding_mode=padding_mode)
        self.levels = nn.ModuleList(
            [
                _PyramidLevel(channels, growth_rate, layers_per_block, n, residual_scale, padding_mode)
                for n in blocks_per_level
            ]
        )
        if skip != "none":
            for level in self.levels:
                init_residual_output(level.reconstruct)

    @property
    def halo(self):
        """Input pixels of context per side that an output pixel depends on (see `dependency_halo`)."""
        cfg = self.config
        main = [("conv", 3)]
        for n in cfg.blocks_per_level:
            # the longest path through a dense unit is its chain of 3x3 layers (then a 1x1)
            main += [("conv", 3)] * (n * cfg.layers_per_block) + [("conv", 3), ("conv", 3), ("up", 2)]
        main += [("conv", 3)]
        return dependency_halo([main, skip_path(cfg.skip, cfg.factor)], cfg.factor)

    def forward(self, x, *, all_levels=False):
        """
        Super-resolve ``x``.

        Parameters
        ----------
        x : `torch.Tensor`
            ``(B, 1, H, W)``, network units.
        all_levels : bool, optional
            Return the output of every level (``2H``, ``4H``, ...) instead of the last only.

        Returns
        -------
        `torch.Tensor` or list of `torch.Tensor`
        """
        feat = self.head(x)
        outputs = []
        for i, level in enumerate(self.levels):
            wanted = all_levels or i == len(self.levels) - 1
            feat, image = level(feat, image=wanted)
            if wanted:
                base = interpolate_input(x, self.config.skip, 2 ** (i + 1))
                outputs.append(image if base is None else image + base)
        return outputs if all_levels else outputs[-1]


def progressive_mse(network, lr, hr, *, level_weights=None, projected=False):
    """
    Pixel MSE of every pyramid level against the HR image averaged to that level's grid.

    The x2 output lies on the 2x-finer grid, whose pixel is the mean of 2x2 HR pixels; supervising it
    with that block mean trains the first level on its own task, ProSR's progressive curriculum
    (weight the last level only to train the x4 output alone).

    Parameters
    ----------
    network : `ProgressiveNet` or a wrapper of it with the same call signature
    lr : `torch.Tensor`
        ``(B, 1, H, W)`` input, network units.
    hr : `torch.Tensor`
        ``(B, 1, factor * H, factor * W)`` target, network units.
    level_weights : sequence of float, optional
        One weight per level, coarsest first; all ones by default.
    projected : bool, optional
        Take the last level's error after its output is projected onto the input's block means
        (`~sunpy_superres.models.diffusion.regression_base`): what a network trains for when it is the
        regression of a ``residual_base="regression"`` diffusion model, whose base is that
        projection. The error is then the within-block part alone; the block means are the input's.

    Returns
    -------
    `torch.Tensor`
        The weighted sum of the per-level MSEs (a scalar).

    Raises
    ------
    ValueError
        If the number of weights is not the number of levels or the shapes do not match.
    """
    outputs = network(lr, all_levels=True)
    weights = [1.0] * len(outputs) if level_weights is None else list(level_weights)
    if len(weights) != len(outputs):
        raise ValueError(f"got {len(weights)} level weights for {len(outputs)} levels")
    factor = 2 ** len(outputs)
    if tuple(hr.shape[-2:]) != (factor * lr.shape[-2], factor * lr.shape[-1]):
        raise ValueError(f"hr shape {tuple(hr.shape)} is not {factor} x lr shape {tuple(lr.shape)}")
    loss = 0.0
    for i, (out, w) in enumerate(zip(outputs, weights, strict=True)):
        target = F.avg_pool2d(hr, 2 ** (len(outputs) - 1 - i)) if i < len(outputs) - 1 else hr
        if projected and i == len(outputs) - 1:
            out = block_project(out, lr, factor)
        loss = loss + w * F.mse_loss(out, target)
    return loss


@register_kind("progressive")
class ProgressiveSuperResolution(CNNSuperResolution):
    """
    The progressive model (Rahman et al. 2020) as a deterministic `SuperResolutionModel`.

    Build it from a trained `ProgressiveNet` or a saved directory (`from_pretrained`); see
    `~sunpy_superres.models.enhance.CNNSuperResolution` for the parameters.

    Examples
    --------
    >>> import torch
    >>> from sunpy_superres.models.progressive import ProgressiveNet, ProgressiveSuperResolution
    >>> _ = torch.manual_seed(0)
    >>> net = ProgressiveNet(channels=8, growth_rate=4, layers_per_block=2, blocks_per_level=(1, 1))
    >>> model = ProgressiveSuperResolution(net, device="cpu")
    >>> model.predict(torch.zeros(1, 16, 16).numpy()).shape
    (1, 64, 64)
    >>> model.halo
    8
    """

    name = kind = "progressive"
    network_class = ProgressiveNet
