"""The package's U-Net against diffusers' ``UNet2DModel``, the independent implementation it follows."""

import pytest
import torch
from diffusers import UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from sunpy_superres.models.diffusion import ConditionalDenoiser, initial_noise
from sunpy_superres.models.unet import UNet2D

SETTINGS = dict(block_out_channels=(16, 32, 48, 48), attention_head_dim=8, norm_num_groups=8)
ATTENTION = [(False, False, False, False), (False, False, True, True), (True, False, True, False)]


def pair(attention, layers, seed=0):
    """diffusers' U-Net as `ConditionalDenoiser` configured it, and ours, each from ``seed``."""
    torch.manual_seed(seed)
    reference = UNet2DModel(
        in_channels=5,
        out_channels=3,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        layers_per_block=layers,
        add_attention=any(attention),
        **SETTINGS,
    )
    torch.manual_seed(seed)
    ours = UNet2D(5, 3, layers_per_block=layers, attention_levels=attention, **SETTINGS)
    return reference.eval(), ours.eval()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", ATTENTION)
def test_a_seeded_unet_has_diffusers_weights_in_diffusers_order(attention, layers):
    """Same names, same order (an optimizer's saved state follows it) and the same seeded values."""
    reference, ours = pair(attention, layers)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    theirs = reference.state_dict()
    assert sorted(ours.state_dict()) == sorted(theirs)
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", ATTENTION)
def test_the_unet_computes_what_diffusers_computes(attention, layers):
    reference, ours = pair(attention, layers, seed=3)
    with torch.no_grad():
        # Trained weights are not the initial ones: draw all of them, biases and norms included.
        state = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(i)) * 0.2
                 for i, (k, v) in enumerate(reference.state_dict().items())}  # fmt: skip
        reference.load_state_dict(state)
        ours.load_state_dict(state)
        x = torch.randn(3, 5, 32, 32, generator=torch.Generator().manual_seed(1))
        for t in (torch.tensor(999), torch.tensor([5, 500, 900]), 17, torch.tensor(250.5)):
            expected = reference(x, t).sample
            assert torch.equal(ours(x, t), expected), t
        assert expected.std() > 0.1  # not a vanishing output that any network would match


def test_a_seeded_denoiser_draws_the_weights_it_drew_with_diffusers_unet_inside():
    """Seeded training runs start where they started before the U-Net was written out."""
    torch.manual_seed(5)
    ours = ConditionalDenoiser(
        target_channels=2, cond_channels=3, block_out_channels=(8, 16), attention_levels=(False, True),
        norm_num_groups=4, layers_per_block=1,
    )  # fmt: skip
    torch.manual_seed(5)
    reference = UNet2DModel(
        in_channels=5, out_channels=2, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        attention_head_dim=8, norm_num_groups=4, add_attention=True,
    )  # fmt: skip
    assert isinstance(ours.unet, UNet2D)
    state = ours.unet.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in reference.state_dict().items())


@pytest.mark.parametrize("shape", [(3, 4, 6, 5), (5, 2, 160, 208)])  # the second drawn on threads
def test_initial_noise_is_diffusers_randn_tensor_draw_for_draw(shape, monkeypatch):
    from sunpy_superres.models import diffusion

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # threads even on a one-core runner
    pools = []
    pool = diffusion.ThreadPoolExecutor
    monkeypatch.setattr(diffusion, "ThreadPoolExecutor", lambda *a, **k: pools.append(a) or pool(*a, **k))
    seeds = range(1, shape[0] + 1)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    again = [torch.Generator().manual_seed(s) for s in seeds]
    expected = randn_tensor(shape, generator=again, device=torch.device("cpu"), dtype=torch.float32)
    assert torch.equal(initial_noise(shape, generators, torch.device("cpu")), expected)
    assert pools == ([] if shape[2] < 100 else [(4,)])


def test_initial_noise_needs_one_generator_per_item():
    generators = [torch.Generator().manual_seed(s) for s in range(2)]
    with pytest.raises(ValueError, match="got 2 generators for 3 items of noise"):
        initial_noise((3, 4, 6, 5), generators, torch.device("cpu"))
