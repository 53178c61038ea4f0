"""
The denoising U-Net of the diffusion models (Ho et al. 2020), as diffusers' ``UNet2DModel`` builds it.

`UNet2D` is the subset of ``diffusers.UNet2DModel`` that
`~sunpy_superres.models.diffusion.ConditionalDenoiser` configures: sinusoidal timestep embedding,
ResNet blocks with the embedding added after the first convolution, strided-convolution
downsampling, nearest-neighbour upsampling and a convolution, self-attention (one residual
attention block after each ResNet block) at the levels asked for and, then, in the bottleneck.
Its modules carry diffusers' names, so the weights of one load into the other unchanged, and its
output is diffusers' to float rounding (``tests/models/test_unet.py`` compares them on random
weights).

Written here rather than imported: diffusers' import costs about a second (it imports
``torch._dynamo``), which loading the default model must not pay (issue 18, cold start).
Training keeps diffusers for its schedulers; the network is this one everywhere.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet2D"]


def timestep_embedding(timesteps, dim):
    """
    Sinusoidal embedding of ``(B,)`` timesteps: ``(B, dim)``, cosines first.

    diffusers' ``get_timestep_embedding`` with ``flip_sin_to_cos=True, downscale_freq_shift=0``
    (``UNet2DModel``'s defaults): frequencies ``10000 ** (-k / (dim / 2))``.
    """
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    """Two linear layers with a SiLU between: the timestep's sinusoid to the blocks' embedding."""

    def __init__(self, in_channels, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added between, a 1x1 shortcut where channels change."""

    def __init__(self, in_channels, out_channels, temb_channels, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """Self-attention over the grid's pixels, after a GroupNorm, with a residual connection."""

    def __init__(self, channels, head_dim, groups, eps):
        super().__init__()
        self.heads, self.head_dim = channels // head_dim, head_dim
        inner = self.heads * head_dim
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        # diffusers' to_out is (Linear, Dropout): index 0 keeps its weights' names.
        self.to_out = nn.ModuleList([nn.Linear(inner, channels)])

    def forward(self, x):
        b, c, h, w = x.shape
        seq = self.group_norm(x.view(b, c, h * w)).transpose(1, 2)

        def heads(t):
            return t.view(b, -1, self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.to_q(seq)), heads(self.to_k(seq)), heads(self.to_v(seq))
        )
        out = self.to_out[0](out.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class Downsample2D(nn.Module):
    """A 3x3 convolution of stride 2."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour doubling, then a 3x3 convolution."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """ResNet blocks, each followed by self-attention where the level has it: one level of the U-Net."""

    def _make_layers(self, in_channels, out_channels, temb_channels, attention, head_dim, groups, eps):
        # Made in diffusers' order (ResNet, its attention, the next ResNet, ...), so that a seeded
        # initialisation draws the same weights; ``in_channels`` holds each ResNet block's input channels.
        resnets, attentions = [], []
        for channels in in_channels:
            resnets.append(ResnetBlock2D(channels, out_channels, temb_channels, groups, eps))
            if attention:
                attentions.append(Attention(out_channels, head_dim, groups, eps))
        if attention:  # registered first, as diffusers does: parameters() in its order
            self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(resnets)

    def _layers(self):
        """(ResNet block, its attention or `None`) pairs."""
        return zip(self.resnets, getattr(self, "attentions", [None] * len(self.resnets)), strict=True)


class DownBlock(_Level):
    """One level on the way down: ResNet blocks (each followed by attention if asked), then halving."""

    def __init__(
        self, in_channels, out_channels, temb_channels, layers, attention, head_dim, groups, eps, down
    ):
        super().__init__()
        ins = [in_channels] + [out_channels] * (layers - 1)
        self._make_layers(ins, out_channels, temb_channels, attention, head_dim, groups, eps)
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if down else None

    def forward(self, x, temb):
        skips = []
        for resnet, attn in self._layers():
            x = resnet(x, temb)
            if attn is not None:
                x = attn(x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(_Level):
    """One level on the way up: ResNet blocks on the input and a skip each, then doubling."""

    def __init__(
        self,
        in_channels,
        prev_channels,
        out_channels,
        temb_channels,
        layers,
        attention,
        head_dim,
        groups,
        eps,
        up,
    ):
        super().__init__()
        # Layer i takes the previous output (the level below's for the first) and a skip (the level
        # above's output for the last).
        ins = [
            (prev_channels if i == 0 else out_channels) + (in_channels if i == layers - 1 else out_channels)
            for i in range(layers)
        ]
        self._make_layers(ins, out_channels, temb_channels, attention, head_dim, groups, eps)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if up else None

    def forward(self, x, skips, temb):
        for resnet, attn in self._layers():
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if attn is not None:
                x = attn(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """The bottleneck: ResNet, attention (where any level has it), ResNet."""

    def __init__(self, channels, temb_channels, attention, head_dim, groups, eps):
        super().__init__()
        first = ResnetBlock2D(channels, channels, temb_channels, groups, eps)
        self.attentions = nn.ModuleList([Attention(channels, head_dim, groups, eps)] if attention else [])
        self.resnets = nn.ModuleList([first, ResnetBlock2D(channels, channels, temb_channels, groups, eps)])

    def forward(self, x, temb):
        x = self.resnets[0](x, temb)
        if len(self.attentions):
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet2D(nn.Module):
    """
    The U-Net: ``(B, in_channels, H, W)`` and a timestep to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    block_out_channels : tuple of int
        Channels per resolution level; the grid halves between levels, so ``H`` and ``W`` must be
        multiples of ``2 ** (levels - 1)``.
    layers_per_block : int
        ResNet blocks per level on the way down (one more on the way up).
    attention_levels : tuple of bool
        Self-attention per level; the bottleneck has attention when any level has.
    attention_head_dim : int
        Channels per attention head.
    norm_num_groups : int
        Group-norm groups; divides every level's channels.
    norm_eps : float, optional
        Group-norm epsilon.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        block_out_channels,
        layers_per_block,
        attention_levels,
        attention_head_dim,
        norm_num_groups,
        norm_eps=1e-5,
    ):
        super().__init__()
        channels = list(block_out_channels)
        temb = 4 * channels[0]
        levels = len(channels)
        common = dict(head_dim=attention_head_dim, groups=norm_num_groups, eps=norm_eps)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList(
            DownBlock(
                channels[max(i - 1, 0)], channels[i], temb, layers_per_block, attention_levels[i],
                down=i < levels - 1, **common,
            )
            for i in range(levels)
        )  # fmt: skip
        mid_block = MidBlock(channels[-1], temb, any(attention_levels), **common)
        rev = channels[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(
                rev[min(i + 1, levels - 1)], rev[max(i - 1, 0)], rev[i], temb, layers_per_block + 1,
                attention_levels[levels - 1 - i], up=i < levels - 1, **common,
            )
            for i in range(levels)
        )  # fmt: skip
        # diffusers makes the bottleneck before the way up but registers it after.
        self.mid_block = mid_block
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps)
        self.conv_out = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    def forward(self, sample, timestep):
        """
        The network's output for ``sample`` at ``timestep``.

        Parameters
        ----------
        sample : `torch.Tensor`
            ``(B, in_channels, H, W)``.
        timestep : `torch.Tensor` or number
            One timestep for the batch, or ``(B,)``.
        """
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(sample.shape[0]) if t.numel() == 1 else t
        emb = self.time_embedding(
            timestep_embedding(t, self.conv_in.out_channels).to(self.conv_in.weight.dtype)
        )
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, out = block(x, emb)
            skips.extend(out)
        x = self.mid_block(x, emb)
        for block in self.up_blocks:
            x = block(x, skips, emb)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
