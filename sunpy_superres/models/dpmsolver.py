"""
DPM-Solver++ (Lu et al. 2022), multistep, first or second order: the default model's sampler.

`DPMSolverPlusPlus` is diffusers' ``DPMSolverMultistepScheduler`` with ``algorithm_type="dpmsolver++"``,
``solver_type="midpoint"``, ``lower_order_final=True`` and ``final_sigmas_type="zero"`` (diffusers'
defaults and the package's settings: `~sunpy_superres.models.diffusion.make_scheduler`), on a
``"linear"`` or ``"squaredcos_cap_v2"`` beta schedule, with the part of its interface the sampler
uses (``set_timesteps``, ``timesteps``, ``alphas_cumprod``, ``init_noise_sigma``,
``scale_model_input``, ``step``). It takes the same steps with the same float32 arithmetic, so its
samples are diffusers' to the bit (``tests/models/test_dpmsolver.py`` runs both).

Written here rather than imported: diffusers' import costs about 1.5 s on the 2-core reference
machine (``torch._dynamo``, and ``scipy.stats`` for this scheduler's module), which the default's
first sample should not pay (issue 18, cold start). The other samplers (DDPM, DDIM, the SDE
DPM-Solver, LCM) stay diffusers'.
"""

import math
from types import SimpleNamespace

import numpy as np
import torch

__all__ = ["DPMSolverPlusPlus", "betas"]


def betas(schedule, num_train_timesteps, beta_start=1e-4, beta_end=0.02):
    """
    The forward process's betas, float32, as diffusers' schedulers make them.

    Parameters
    ----------
    schedule : {"linear", "squaredcos_cap_v2"}
        Linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020), or the cosine schedule of
        Nichol & Dhariwal (2021), each beta capped at 0.999.
    num_train_timesteps : int
    beta_start, beta_end : float, optional
        Ends of the linear schedule.

    Raises
    ------
    ValueError
        If ``schedule`` is neither.
    """
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if schedule == "squaredcos_cap_v2":

        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        n = num_train_timesteps
        return torch.tensor(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=torch.float32
        )
    raise ValueError(f"beta_schedule must be 'linear' or 'squaredcos_cap_v2', got {schedule!r}")


def _alpha_sigma(sigma):
    """``alpha_t`` and ``sigma_t`` of the noise-to-signal ratio ``sigma`` (variance preserving)."""
    alpha = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha, sigma * alpha


class DPMSolverPlusPlus:
    """
    The multistep DPM-Solver++ in its data-prediction form, ending at the clean image.

    Parameters
    ----------
    num_train_timesteps, beta_start, beta_end, beta_schedule
        The forward process (`betas`).
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts.
    solver_order : {1, 2}
        1: DDIM (eta = 0) in data-prediction form; 2: the second-order multistep update, with a
        first-order first and last step.

    Raises
    ------
    ValueError
        If ``prediction_type`` or ``solver_order`` is not one of those.
    """

    def __init__(
        self,
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        solver_order=2,
    ):
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(
                f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got {prediction_type!r}"
            )
        if solver_order not in (1, 2):
            raise ValueError(f"solver_order must be 1 or 2, got {solver_order!r}")
        self.config = SimpleNamespace(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            solver_order=solver_order,
        )
        self.alphas_cumprod = torch.cumprod(
            1.0 - betas(beta_schedule, num_train_timesteps, beta_start, beta_end), 0
        )
        self.init_noise_sigma = 1.0
        self.timesteps = self.sigmas = self.num_inference_steps = None

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        """
        Set the timesteps: ``num_inference_steps`` spread linearly over the whole schedule, or ``timesteps``.

        Raises
        ------
        ValueError
            Unless exactly one of ``num_inference_steps`` and ``timesteps`` is given.
        """
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("give exactly one of num_inference_steps and timesteps")
        if timesteps is None:
            last = self.config.num_train_timesteps
            ts = np.linspace(0, last - 1, num_inference_steps + 1).round()[::-1][:-1].copy().astype(np.int64)
        else:
            ts = np.array(timesteps).astype(np.int64)
        # sigma of every training timestep (float32), interpolated at ts; the last step goes to sigma 0.
        sigmas = (((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).numpy()
        sigmas = np.interp(ts, np.arange(0, len(sigmas)), sigmas)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        self._outputs, self._index = [], None

    def scale_model_input(self, sample, timestep=None):
        """The network's input at ``timestep``: ``sample`` itself (DPM-Solver does not rescale it)."""
        return sample

    def _start_index(self, timestep):
        # Where a chain begins: the first timestep equal to ``timestep`` (the second if it occurs
        # twice, the last if never), as diffusers' index_for_timestep.
        matches = (self.timesteps == torch.as_tensor(timestep).to(self.timesteps.device)).nonzero()
        if len(matches) == 0:
            return len(self.timesteps) - 1
        return matches[1 if len(matches) > 1 else 0].item()

    def step(self, model_output, timestep, sample, generator=None):
        """
        One solver step from ``sample`` at ``timestep`` given the network's ``model_output``.

        ``generator`` is accepted for the samplers' common call and not used: the solver is
        deterministic. Returns an object whose ``prev_sample`` is the sample at the next timestep.
        """
        if self.timesteps is None:
            raise ValueError("set_timesteps() must be called before step()")
        if self._index is None:
            self._index = self._start_index(timestep)
        i = self._index
        alpha_s, sigma_s = _alpha_sigma(self.sigmas[i])
        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - sigma_s * model_output) / alpha_s
        elif kind == "v_prediction":
            x0 = alpha_s * sample - sigma_s * model_output
        else:
            x0 = model_output
        self._outputs = [*self._outputs, x0][-self.config.solver_order :]
        sample = sample.to(torch.float32)
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[i + 1])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = lambda_t - lambda_s
        # First order at the first step, at the last (to sigma 0) and throughout for order 1.
        if len(self._outputs) < 2 or i == len(self.timesteps) - 1:
            prev = (sigma_t / sigma_s) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * x0
        else:
            alpha_r, sigma_r = _alpha_sigma(self.sigmas[i - 1])
            lambda_r = torch.log(alpha_r) - torch.log(sigma_r)
            m0, m1 = self._outputs[-1], self._outputs[-2]
            r0 = (lambda_s - lambda_r) / h
            d0, d1 = m0, (1.0 / r0) * (m0 - m1)
            prev = (
                (sigma_t / sigma_s) * sample
                - (alpha_t * (torch.exp(-h) - 1.0)) * d0
                - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1
            )
        self._index += 1
        return SimpleNamespace(prev_sample=prev.to(model_output.dtype))
