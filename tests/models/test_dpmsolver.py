"""The package's DPM-Solver++ against diffusers' ``DPMSolverMultistepScheduler``, step for step."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from sunpy_superres.models.diffusion import log_snr_timesteps, make_scheduler
from sunpy_superres.models.dpmsolver import DPMSolverPlusPlus, betas
from sunpy_superres.models.registry import load_model

# diffusers' DPM-Solver calls np.array() on a torch tensor, which torch flags under numpy 2 (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def run(scheduler, timesteps, network, x):
    """A whole chain of ``scheduler`` from ``x``; every intermediate sample."""
    if isinstance(timesteps, int):
        scheduler.set_timesteps(timesteps)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    states = []
    for t in scheduler.timesteps:
        x = scheduler.step(network(scheduler.scale_model_input(x, t), t), t, x).prev_sample
        states.append(x)
    return states


def network(x, t):
    # A smooth, nonlinear stand-in whose output depends on the sample and on the timestep.
    return torch.tanh(0.7 * x + 0.001 * t.float()) + 0.1 * torch.roll(x, 1, dims=-1)


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_the_beta_schedules_are_diffusers(schedule):
    ours = betas(schedule, 1000)
    assert torch.equal(ours, DPMSolverMultistepScheduler(beta_schedule=schedule).betas)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("timesteps", [10, 3, "log-snr", "from-700"])
def test_every_step_is_diffusers_to_the_bit(order, prediction, schedule, timesteps):
    settings = dict(beta_schedule=schedule, prediction_type=prediction, solver_order=order)
    reference = DPMSolverMultistepScheduler(
        **settings, algorithm_type="dpmsolver++", final_sigmas_type="zero"
    )
    ours = DPMSolverPlusPlus(**settings)
    assert torch.equal(ours.alphas_cumprod, reference.alphas_cumprod)
    if timesteps == "log-snr":
        timesteps = log_snr_timesteps(reference.alphas_cumprod.numpy(), 10, 999)
    elif timesteps == "from-700":
        timesteps = np.linspace(700, 0, 6)[:-1].round().astype(int).tolist()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = run(reference, timesteps, network, x)
    got = run(ours, timesteps, network, x)
    assert torch.equal(ours.timesteps, reference.timesteps) and torch.equal(ours.sigmas, reference.sigmas)
    assert len(got) == len(expected) >= 3
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    assert expected[-1].std() > 0.1


def test_the_default_models_teacher_samples_with_it_and_takes_its_steps():
    """The shipped default's teacher (``sampler="dpm-solver++"``) samples with this one, as shipped."""
    model = load_model("default", device="cpu").configure_sampler(sampler="dpm-solver++")
    assert (model.sampler, model.steps, model.spacing) == ("dpm-solver++", 10, "log-snr")
    scheduler = make_scheduler(model.sampler, model.denoiser.config)
    assert isinstance(scheduler, DPMSolverPlusPlus) and scheduler.config.solver_order == 2


def test_it_refuses_what_it_does_not_do():
    with pytest.raises(ValueError, match="solver_order must be 1 or 2"):
        DPMSolverPlusPlus(solver_order=3)
    with pytest.raises(ValueError, match="prediction_type must be"):
        DPMSolverPlusPlus(prediction_type="flow_prediction")
    with pytest.raises(ValueError, match="beta_schedule must be"):
        DPMSolverPlusPlus(beta_schedule="scaled_linear")
    with pytest.raises(ValueError, match="exactly one of"):
        DPMSolverPlusPlus().set_timesteps()
    with pytest.raises(ValueError, match=r"set_timesteps\(\) must be called"):
        DPMSolverPlusPlus().step(torch.zeros(1), 999, torch.zeros(1))
