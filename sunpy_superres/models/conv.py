"""
A 2-D convolution whose reflection or replication padding touches only the image's border.

``torch.nn.Conv2d`` with ``padding_mode="reflect"`` (or ``"replicate"``) first copies its whole
input into a padded tensor, then convolves that without padding. On a CPU the copy can cost more
than the convolution: profiled on the default's regression network (`progressive`, 256x256 in,
channels-last, 2 threads of an AMD EPYC), reflection padding and its copies took nearly half the
time in bfloat16, where torch's padding kernel is slow, and a tenth in float32. A convolution with
zero padding needs no copy (oneDNN skips the missing taps), and it differs from the reflected one
only in the ``p`` outermost rows and columns of the output (``p`` the padding). `PaddedConv2d`
computes those from thin strips of the input, padded the requested way, and writes them over the
zero-padded result. The interior is the same convolution of the same numbers: on the CPU where it
was measured (an AMD EPYC; both layouts, float32 and bfloat16) every output pixel came out equal to
``torch.nn.Conv2d``'s to the bit, and the default model's whole output too. oneDNN picks its kernels
by shape and CPU, so elsewhere a last-bit difference is possible.

Written here because neither torch nor oneDNN offers reflection padding inside the convolution.
"""

import torch.nn.functional as F
from torch import nn

__all__ = ["PaddedConv2d", "padded_conv2d"]


def padded_conv2d(x, weight, bias, padding, mode, groups=1):
    """
    ``F.conv2d(F.pad(x, (p, p, p, p), mode=mode), weight, bias, groups=groups)``, without padding
    the whole input.

    Parameters
    ----------
    x : `torch.Tensor`
        ``(B, C, H, W)``; ``H`` and ``W`` at least ``2 * padding``.
    weight, bias : `torch.Tensor`
        As for `torch.nn.functional.conv2d`; a square ``(2 p + 1)`` kernel, stride and dilation 1.
    padding : int
        ``p``, the same on every side.
    mode : {"reflect", "replicate"}
    groups : int, optional

    Returns
    -------
    `torch.Tensor`
        ``(B, C_out, H, W)``, in the memory format oneDNN gives the zero-padded convolution.
    """
    p = padding
    y = F.conv2d(x, weight, bias, padding=p, groups=groups)
    if p == 0:
        return y
    # Output rows 0..p-1 see input rows -p..2p-1 at most: a strip of 2p rows, padded, holds all of
    # them (its own far side's padding reaches only outputs that are dropped); likewise the others.
    s, pad = 2 * p, (p, p, p, p)

    def strip(part):
        return F.conv2d(F.pad(part, pad, mode=mode), weight, bias, groups=groups)

    y[:, :, :p] = strip(x[:, :, :s])[:, :, :p]
    y[:, :, -p:] = strip(x[:, :, -s:])[:, :, -p:]
    y[..., :p] = strip(x[..., :s])[..., :p]
    y[..., -p:] = strip(x[..., -s:])[..., -p:]
    return y


class PaddedConv2d(nn.Conv2d):
    """
    `torch.nn.Conv2d` that pads by reflection or replication at the border only (see the module notes).

    Same parameters, same weights' names and the same output (see the module notes); only faster.
    It takes the border path for a square odd kernel with ``padding=(k - 1) // 2``, stride and
    dilation 1, a non-zero padding mode, and an input of more than one channel at least ``2 p``
    pixels on a side; any other case is `torch.nn.Conv2d`'s own. (A one-channel tensor is
    channels-first and channels-last at once, and oneDNN may then sum its zero-padded convolution in
    another order: different in the last bit. Such a convolution is cheap anyway.)
    """

    def _conv_forward(self, input, weight, bias):
        k = self.kernel_size[0]
        p = k // 2
        if (
            self.padding_mode in ("reflect", "replicate")
            and self.kernel_size == (k, k)
            and k % 2 == 1
            and self.padding == (p, p)
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and input.dim() == 4
            and input.shape[1] > 1
            and min(input.shape[-2:]) >= 2 * p
        ):
            return padded_conv2d(input, weight, bias, p, self.padding_mode, self.groups)
        return super()._conv_forward(input, weight, bias)
