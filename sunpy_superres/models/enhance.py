"""
Enhance: the deep residual CNN of Díaz Baso & Asensio Ramos (2018), adapted to 4x magnetogram
super-resolution, and the deterministic-CNN wrapper shared with `sunpy_superres.models.progressive`.

Enhance is one of the two deterministic baselines of Ramunno et al. (2025, section 3.4, Tables 1 and
2; "Figure 3 in Díaz Baso & Asensio Ramos (2018)"). Their network ("keepsize" in the authors' code,
Fig. 3 of the paper) is, at the input resolution:

* a 3x3 convolution to 64 channels and a ReLU;
* ``n`` residual blocks, each conv3x3 - batch norm - ReLU - conv3x3 - batch norm plus the block input;
* a 3x3 convolution and batch norm, added to the output of the first convolution (a long skip);

then one upsampling stage (nearest-neighbour x2, conv3x3, ReLU) and a 1x1 convolution to one
channel. Convolutions use reflection padding. The paper upsamples 2x (HMI to a telescope twice its
size); Ramunno et al. (2025) use it for 4x (256x256 input, 1024x1024 output).

What we adapt, and why
----------------------
* **x4 by two x2 stages.** The upsampling stage is repeated ``log2(factor)`` times, as in the SRResNet
  family that Enhance belongs to (Ledig et al. 2017), rather than one x4 stage: each stage refines at
  its own scale with a 3x3 kernel. Nearest-neighbour doubling replicates every pixel onto exactly the
  grid of `sunpy_superres.maps.finer_meta` (each input pixel becomes the f x f output pixels that
  tile it), so the output is on the correct WCS without any half-pixel shift.
* **Residual to an interpolated input** (``skip``, default ``"bicubic"``). The original predicts the
  image itself. Here the network adds its output to the input interpolated onto the output grid
  (bicubic, ``align_corners=False``), so it only learns the correction to interpolation (residual
  learning of VDSR, Kim et al. 2016; ProSR does the same). The large scales, and with them the flux
  of strong regions, are carried by the skip from the first step of training, and the CNN's capacity
  goes to the small scales that interpolation misses. ``"nearest"`` (the paper's replicated input,
  whose 4x4 block means equal the input exactly) and ``"none"`` (the original) are config options.
* **No Gaussian-noise input layer and no L2 weight penalty in the network**: both are training-time
  regularisers (data augmentation and optimiser weight decay belong to the training loop).
* Upsampling stages have ``upsample_channels`` (64 by default, the authors' "keepsize" network; their
  256-channel variant costs 4x more at the output resolution on a CPU).

Receptive field and tiling
--------------------------
Tiled inference is exact when every output pixel kept by the blend depends only on input pixels of
its own tile. `EnhanceNet.halo` is computed from the layers (see `dependency_halo`): for the default
config, 12 input pixels from the 12 convolutions at the input resolution plus one from the two 3x3
convolutions after the doublings, i.e. 13 input pixels (26" of MDI) on each side.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. 2018, A&A 614, A5, "Enhancing SDO/HMI images using deep
   learning", Fig. 3; code: https://github.com/cdiazbas/enhance (architecture only; not copied).
.. [2] Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent
   diffusion model approach", A&A 698, A140, sections 3.4 and 7, Tables 1 and 2.
.. [3] Kim, J., Lee, J. K. & Lee, K. M. 2016, CVPR, "Accurate image super-resolution using very deep
   convolutional networks" (residual learning on the interpolated input).
.. [4] Ledig, C. et al. 2017, CVPR, "Photo-realistic single image super-resolution using a generative
   adversarial network" (SRResNet: two x2 upsampling stages for x4).
"""

import math
import numbers
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import SuperResolutionModel, load_network
from .conv import PaddedConv2d
from .manifest import register_kind, write_manifest
from .network import Network, register_to_config

__all__ = [
    "EnhanceNet",
    "EnhanceSuperResolution",
    "CNNSuperResolution",
    "dependency_halo",
    "init_residual_output",
    "SKIPS",
]

#: Interpolations of the input that a network's output can be added to.
SKIPS = ("bicubic", "nearest", "none")


def check_factor(factor):
    """
    Number of x2 stages for ``factor``.

    Raises
    ------
    ValueError
        If ``factor`` is not a power of two of at least 2.
    """
    if (
        not isinstance(factor, numbers.Integral)
        or isinstance(factor, bool)
        or factor < 2
        or factor & (factor - 1)
    ):
        raise ValueError(f"factor must be a power of two (2, 4, 8, ...), got {factor!r}")
    return int(math.log2(factor))


def check_skip(skip):
    """Raise `ValueError` unless ``skip`` is one of `SKIPS`."""
    if skip not in SKIPS:
        raise ValueError(f"skip must be one of {', '.join(map(repr, SKIPS))}, got {skip!r}")


def skip_path(skip, factor):
    """The `dependency_halo` operations of the interpolated-input skip."""
    if skip == "bicubic":
        return [("bicubic", factor)]
    if skip == "nearest":
        return [("up", factor)]
    return []


def interpolate_input(x, skip, factor):
    """
    The input on the ``factor``-times finer grid, for the residual skip.

    ``align_corners=False``: output pixel centres sit at ``(i + 0.5) / factor - 0.5`` input pixels,
    the grid of `sunpy_superres.maps.finer_meta`. Returns `None` for ``skip="none"``.
    """
    if skip == "bicubic":
        return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    if skip == "nearest":
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    return None


def block_project(image, lr, factor):
    """
    ``image`` with each ``factor x factor`` block shifted so that its mean is the input pixel ``lr``.

    The projection onto the images whose block means are the input, as a constant per block: the
    tensor form of `sunpy_superres.consistency.project_block_means` with ``method="block"``, differentiable.
    ``image`` is ``(B, C, factor H, factor W)``, ``lr`` ``(B, C, H, W)``, in the same units.
    """
    return image + F.interpolate(lr - F.avg_pool2d(image, factor), scale_factor=factor, mode="nearest")


def dependency_halo(paths, factor):
    """
    Input pixels of context an output pixel depends on, per side, from the layers of a network.

    Every path from input to output is a list of operations, from the input side:

    * ``("conv", k)``: a k x k convolution (stride 1, any padding) at the current resolution;
    * ``("up", s)``: nearest-neighbour or pixel-shuffle upsampling by ``s`` (output pixel ``j`` comes
      from input pixel ``j // s``);
    * ``("bicubic", s)``: bicubic upsampling by ``s`` with ``align_corners=False`` (4 taps around
      ``(j + 0.5) / s - 0.5``).

    The interval of input pixels each output pixel reads is propagated back exactly in integers, for
    the ``factor`` output pixels of one input pixel ``p``; the halo is the largest reach beyond ``p``
    over all paths. A tile edge inside the image changes an output pixel only through this interval
    (zero or reflection padding included), so outputs farther than the halo from an interior tile
    edge equal the untiled ones: what the blend of `sunpy_superres.tiling` relies on.

    Parameters
    ----------
    paths : list of list of tuple
        The network's input-to-output paths (a residual block contributes its longest one).
    factor : int
        Output pixels per input pixel; each path must upsample by exactly this.

    Returns
    -------
    int
        The halo in input pixels.

    Raises
    ------
    ValueError
        If a path's upsampling does not multiply to ``factor`` or an operation is unknown.
    """
    p = 10 * factor  # any pixel far from the array edges: the map is translation invariant
    halo = 0
    for path in paths:
        if not path:  # a skipped connection reads nothing
            continue
        total = math.prod(s for op, s in path if op in ("up", "bicubic"))
        if total != factor:
            raise ValueError(f"a path upsamples by {total}, not by the factor {factor}: {path}")
        for j in range(factor * p, factor * (p + 1)):
            lo, hi = j, j
            for op, arg in reversed(path):
                if op == "conv":
                    lo, hi = lo - (arg - 1) // 2, hi + arg // 2
                elif op == "up":
                    lo, hi = lo // arg, hi // arg
                elif op == "bicubic":
                    lo = math.floor((lo + 0.5) / arg - 0.5) - 1
                    hi = math.floor((hi + 0.5) / arg - 0.5) + 2
                else:
                    raise ValueError(f"unknown operation {op!r}")
            halo = max(halo, p - lo, hi - p)
    return halo


def init_residual_output(conv, scale=0.1):
    """
    Start a residual output layer near zero: weights scaled by ``scale``, bias zero.

    With PyTorch's default initialisation an untrained network adds an offset of order 0.1 network
    units (300 G) to the interpolated input; starting near zero makes the untrained model the
    interpolation baseline plus a small correction, from which pixel-loss training departs smoothly
    (the 0.1 scaling of residual branches of ESRGAN, Wang et al. 2018).
    """
    with torch.no_grad():
        conv.weight.mul_(scale)
        conv.bias.zero_()


class _ResidualBlock(nn.Module):
    """conv3x3 - [BN] - ReLU - conv3x3 - [BN] + input (Díaz Baso & Asensio Ramos 2018, Fig. 3)."""

    def __init__(self, channels, batch_norm, padding_mode):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        pad = dict(padding=1, padding_mode=padding_mode)
        self.body = nn.Sequential(
            PaddedConv2d(channels, channels, 3, **pad),
            norm(),
            nn.ReLU(inplace=True),
            PaddedConv2d(channels, channels, 3, **pad),
            norm(),
        )

    def forward(self, x):
        return x + self.body(x)


class EnhanceNet(Network):
    """
    The Enhance network for ``factor``-times super-resolution (a `~sunpy_superres.models.network.Network`:
    config + safetensors).

    Input and output are in network units (field / 3000 G), shapes ``(B, 1, H, W)`` and
    ``(B, 1, factor * H, factor * W)``; any ``H, W >= 2`` work (no downsampling inside).

    Parameters
    ----------
    channels : int
        Feature channels at the input resolution (the paper: 64).
    num_residual_blocks : int
        Residual blocks (the authors' default depth: 5).
    upsample_channels : int
        Channels of the 3x3 convolution of each x2 upsampling stage.
    factor : int
        Super-resolution factor, a power of two: ``log2(factor)`` nearest-x2 + conv3x3 + ReLU stages.
    skip : {"bicubic", "nearest", "none"}
        Interpolation of the input that the network output is added to (see the module notes).
    batch_norm : bool
        Batch normalisation in the residual blocks, as in the paper (per-channel affine at inference).
    padding_mode : {"reflect", "zeros", "replicate"}
        Convolution padding; the authors chose reflection to reduce border artefacts.

    Raises
    ------
    ValueError
        For a factor that is not a power of two, an unknown skip or padding, or non-positive sizes.

    References
    ----------
    .. [1] Díaz Baso & Asensio Ramos 2018, A&A 614, A5, Fig. 3.
    """

    @register_to_config
    def __init__(
        self,
        channels=64,
        num_residual_blocks=5,
        upsample_channels=64,
        factor=4,
        skip="bicubic",
        batch_norm=True,
        padding_mode="reflect",
    ):
        super().__init__()
        stages = check_factor(factor)
        check_skip(skip)
        if padding_mode not in ("reflect", "zeros", "replicate"):
            raise ValueError(f"padding_mode must be 'reflect', 'zeros' or 'replicate', got {padding_mode!r}")
        if min(channels, upsample_channels) < 1 or num_residual_blocks < 0:
            raise ValueError("channels and upsample_channels must be positive, num_residual_blocks >= 0")
        pad = dict(padding=1, padding_mode=padding_mode)
        self.head = nn.Sequential(PaddedConv2d(1, channels, 3, **pad), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *[_ResidualBlock(channels, batch_norm, padding_mode) for _ in range(num_residual_blocks)]
        )
        self.body_end = nn.Sequential(
            PaddedConv2d(channels, channels, 3, **pad),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
        )
        ups = []
        c = channels
        for _ in range(stages):
            ups += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                PaddedConv2d(c, upsample_channels, 3, **pad),
                nn.ReLU(inplace=True),
            ]
            c = upsample_channels
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(c, 1, 1)
        if skip != "none":
            init_residual_output(self.tail)

    @property
    def halo(self):
        """Input pixels of context per side that an output pixel depends on (see `dependency_halo`)."""
        cfg = self.config
        main = (
            [("conv", 3)] * (2 + 2 * cfg.num_residual_blocks)
            + [("up", 2), ("conv", 3)] * check_factor(cfg.factor)
            + [("conv", 1)]
        )
        return dependency_halo([main, skip_path(cfg.skip, cfg.factor)], cfg.factor)

    def forward(self, x):
        """``(B, 1, H, W)`` -> ``(B, 1, factor * H, factor * W)``, network units."""
        feat = self.head(x)
        # The long skip of Fig. 3: the residual blocks refine the first-layer features.
        feat = feat + self.body_end(self.blocks(feat))
        out = self.tail(self.upsample(feat))
        base = interpolate_input(x, self.config.skip, self.config.factor)
        return out if base is None else out + base


class CNNSuperResolution(SuperResolutionModel):
    """
    A trained deterministic CNN behind the `SuperResolutionModel` interface.

    Subclasses set `network_class` and the registry `name`. The network sees inputs clipped to
    [-1, 1] (``clip_input``, as in training, Ramunno et al. 2025, section 2); `sunpy_superres.superresolve`
    adds the clipped excess back. The halo comes from the network's layers, so tiled output equals
    untiled output.

    Parameters
    ----------
    network : `torch.nn.Module`
        A `network_class` instance (trained).
    name : str, optional
        Registry name written into output headers; the class default when not given.
    revision : str, optional
        Weights revision written into output headers.
    tile_size : int, optional
        Default tile side in input pixels (256: the paper's 256x256 MDI crops, a 1024x1024 output).
    device : str, optional
        Torch device.

    Raises
    ------
    TypeError
        If ``network`` is not a `network_class`.
    ValueError
        If ``tile_size`` leaves no room inside the halo.
    """

    stochastic = False
    clip_input = True
    # A trained network: superresolve(consistency="auto") projects its output onto the input's block
    # means. The paper's Tables 1 and 2 score these baselines without that step (consistency=False).
    network_class = None

    def __init__(self, network, *, name=None, revision="untrained", tile_size=256, device="auto"):
        super().__init__(device=device)
        if not isinstance(network, self.network_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.network_class.__name__}, got {type(network).__name__}"
            )
        # NHWC on every device: on the 2-core CPU both CNNs ran 1.4 times faster so (256x256 in:
        # progressive 1.9 s against 2.8 s, enhance 0.8 s against 1.1 s), as progressive does inside the
        # default (`sunpy_superres.models.diffusion.regression_base`). The conversion is in place.
        self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        self.name = str(name or type(self).name)
        self.revision = str(revision)
        self.factor = int(network.config.factor)
        self.halo = int(network.halo)
        self.tile_size = int(tile_size)
        if self.tile_size < 2 * self.halo + 2:
            raise ValueError(
                f"tile_size {tile_size} must exceed twice the network's halo ({self.halo}) plus one"
            )

    def _forward(self, x, *, seeds):
        if self.network.training:  # a network trained after wrapping: batch norm must use running stats
            self.network.eval()
        return self.network(x.contiguous(memory_format=torch.channels_last)).contiguous()

    def save_pretrained(self, path):
        """
        Write the model directory: ``network/`` (diffusers ``config.json`` + safetensors, never a
        pickle) and a ``superres.json`` manifest with the sha256 of every file (rules 5 and 6 of
        ``docs/dev/design.rst``).

        Returns
        -------
        `pathlib.Path`
        """
        path = Path(path)
        self.network.save_pretrained(path / "network", safe_serialization=True)
        write_manifest(
            path,
            {
                "kind": type(self).kind,
                "name": self.name,
                "revision": self.revision,
                "inference": {"tile_size": self.tile_size, "halo": self.halo},
            },
        )
        return path

    @classmethod
    def from_verified(cls, path, manifest, *, device="auto", revision=None):
        """Build the model from a directory whose files were checked (see `from_pretrained`)."""
        network = load_network(cls.network_class, path / "network")
        inference = manifest.get("inference", {})
        return cls(
            network,
            name=manifest.get("name"),
            revision=revision or manifest.get("revision", "untrained"),
            tile_size=inference.get("tile_size", 256),
            device=device,
        )

    def __repr__(self):
        n = sum(p.numel() for p in self.network.parameters())
        return (
            f"<{type(self).__name__} {self.name!r} revision={self.revision!r} params={n} "
            f"halo={self.halo} device={self.device}>"
        )


@register_kind("enhance")
class EnhanceSuperResolution(CNNSuperResolution):
    """
    Enhance (Díaz Baso & Asensio Ramos 2018) as a deterministic `SuperResolutionModel`.

    Build it from a trained `EnhanceNet` (``EnhanceSuperResolution(net)``) or a saved directory
    (`from_pretrained`). See `CNNSuperResolution` for the parameters.

    Examples
    --------
    >>> import torch
    >>> from sunpy_superres.models.enhance import EnhanceNet, EnhanceSuperResolution
    >>> _ = torch.manual_seed(0)
    >>> model = EnhanceSuperResolution(EnhanceNet(channels=8, num_residual_blocks=1, upsample_channels=8),
    ...                                device="cpu")
    >>> model.predict(torch.zeros(1, 16, 16).numpy()).shape
    (1, 64, 64)
    >>> model.halo
    5
    """

    name = kind = "enhance"
    network_class = EnhanceNet
