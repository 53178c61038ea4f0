"""`PaddedConv2d`: border-only reflection/replication padding, the same numbers as `torch.nn.Conv2d`."""

import pytest
import torch
from torch import nn

from sunpy_superres.models.conv import PaddedConv2d, padded_conv2d
from sunpy_superres.models.enhance import EnhanceNet
from sunpy_superres.models.progressive import ProgressiveNet


def _pair(cin, cout, k, mode, groups=1, seed=0):
    """An `nn.Conv2d` and a `PaddedConv2d` with the same (seeded) weights."""
    torch.manual_seed(seed)
    ref = nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode=mode, groups=groups)
    ours = PaddedConv2d(cin, cout, k, padding=k // 2, padding_mode=mode, groups=groups)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("cin", "cout", "k", "groups", "hw"), [(8, 5, 3, 1, (11, 13)), (6, 4, 5, 2, (9, 12))]
)
def test_padded_conv_equals_torchs(mode, memory_format, dtype, cin, cout, k, groups, hw):
    ref, ours = (c.to(dtype=dtype, memory_format=memory_format) for c in _pair(cin, cout, k, mode, groups))
    x = torch.randn(2, cin, *hw, generator=torch.Generator().manual_seed(1)).to(dtype)
    x = x.contiguous(memory_format=memory_format)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    # Equal to the bit where measured (an AMD EPYC, both layouts and both types, and the default's
    # whole output: tests/test_reference_output.py). oneDNN chooses its kernel by shape and CPU, and
    # another kernel may sum in another order, so elsewhere this allows a difference in the last bit.
    last_bit = {torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(got, expected, rtol=last_bit, atol=last_bit)


def test_the_border_is_not_the_zero_padded_convolution():
    # The test above could pass with both sides zero-padded: the border must carry the reflection,
    # far beyond rounding, and the interior be the zero-padded convolution's.
    ref, ours = _pair(4, 3, 3, "reflect")
    x = torch.randn(1, 4, 7, 9, generator=torch.Generator().manual_seed(2)) + 3.0
    with torch.no_grad():
        zero = nn.functional.conv2d(x, ref.weight, ref.bias, padding=1)
        got = ours(x)
    assert (got[..., 0, :] - zero[..., 0, :]).abs().max() > 0.1
    assert torch.equal(got[..., 1:-1, 1:-1], zero[..., 1:-1, 1:-1])


def test_gradients_are_torchs():
    ref, ours = _pair(5, 3, 3, "reflect")
    x = torch.randn(2, 5, 8, 10, generator=torch.Generator().manual_seed(3), requires_grad=True)
    (gx_ref, gw_ref) = torch.autograd.grad(ref(x).square().sum(), (x, ref.weight))
    (gx, gw) = torch.autograd.grad(ours(x).square().sum(), (x, ours.weight))
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"padding_mode": "zeros"}, (1, 4, 8, 8)),  # zeros: torch's own path
        ({"padding_mode": "reflect", "stride": 2}, (1, 4, 8, 8)),
        ({"padding_mode": "reflect", "dilation": 2, "padding": 2}, (1, 4, 9, 9)),
        ({"padding_mode": "reflect"}, (1, 1, 8, 8)),  # one channel: both layouts at once
        ({"padding_mode": "reflect"}, (1, 4, 8, 1)),  # narrower than two pads: no strip to take
    ],
)
def test_other_cases_take_torchs_own_path(monkeypatch, kwargs, shape):
    import sunpy_superres.models.conv as conv

    calls = []
    monkeypatch.setattr(conv, "padded_conv2d", lambda *a, **k: calls.append(1) or padded_conv2d(*a, **k))
    kwargs = {"padding": 1, **kwargs}
    torch.manual_seed(0)
    ours = PaddedConv2d(shape[1], 2, 3, **kwargs)
    ref = nn.Conv2d(shape[1], 2, 3, **kwargs)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    if kwargs["padding_mode"] == "reflect" and shape[-1] == 1:
        for conv2d in (ref, ours):  # torch cannot reflect by as much as the size: nor can ours
            with pytest.raises(RuntimeError):
                conv2d(x)
        return
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    assert calls == []


@pytest.mark.parametrize("network", [EnhanceNet, ProgressiveNet])
def test_the_cnns_pad_at_the_border_only(network):
    net = network(
        channels=8,
        factor=4,
        **(
            {"growth_rate": 4, "layers_per_block": 2, "blocks_per_level": (1, 1)}
            if network is ProgressiveNet
            else {"num_residual_blocks": 1, "upsample_channels": 8}
        ),
    )
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(isinstance(m, PaddedConv2d) for m in convs)
