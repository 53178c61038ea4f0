"""
Conditional diffusion super-resolution: {pixel, latent} x {residual, direct} (Ramunno et al. 2025).

The four variants of the paper's Table 1 are one class with two switches:

======== ========= ========== =====================================================================
name     space     residual   what the network denoises
======== ========= ========== =====================================================================
ldm-res  latent    yes        ``(E(HR) - E(LR)) / s``, the latent residual (the paper's model)
ldm      latent    no         ``E(HR) / s``
ddpm-res pixel     yes        ``(HR - LR) / s``, the pixel residual
ddpm     pixel     no         ``HR / s``
======== ========= ========== =====================================================================

``LR`` is the input replicated 4x (nearest), ``E`` the posterior mean of a
`~sunpy_superres.models.autoencoder.MagnetogramAutoencoder`, ``s`` the stored ``target_scale``.
A residual denoiser with ``residual_base="regression"`` takes its residual to a deterministic
regression's output instead of ``LR`` (`regression_base`, as CorrDiff does: Mardani et al. 2023):
the regression, trained on the squared error, carries the posterior mean, and the diffusion model
only the part of the field that the input does not determine.
Conditioning is channel concatenation of the (encoded) LR input with the noisy target, Palette-style
(section 3.2, Fig. 2). The backbone is diffusers' `UNet2DModel` (`~sunpy_superres.models.unet.UNet2D`,
its subset written out so that inference does not import diffusers) with self-attention at the low
resolutions (Fig. 3), trained with epsilon-prediction and MSE on a linear beta schedule of 1000
steps (section 4, Ho et al. 2020).

Why the scale factors: in [-1, 1] units the pixel residual of real HMI crops has a standard deviation
of about 0.008 (docs/dev/design.rst, "Measurements the code relies on"); against unit-variance noise it is invisible and
the model diverges. Dividing the target (and the conditioning) by a stored standard deviation makes
both unit-variance, as latent diffusion does with its ``scale_factor`` (Rombach et al. 2021, sec. 4.3.2).
The factors are config fields measured on training data, frozen into the checkpoint.
"""

import copy
import json
import math
import numbers
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import astropy.units as u
import numpy as np
import torch
import torch.nn.functional as F

from ..calibration import HMI_NOISE_LEVELS, NORMALISATION_RANGE
from ..options import renamed_sampler
from .accel import CPU_BATCH_SIZE, CompiledForward, autocast, resolve_precision
from .base import SuperResolutionModel, load_network
from .dpmsolver import DPMSolverPlusPlus
from .enhance import EnhanceNet, block_project
from .manifest import register_kind, write_manifest
from .network import Network, register_to_config
from .progressive import ProgressiveNet
from .spacetodepth import SpaceToDepth
from .unet import UNet2D

__all__ = [
    "ConditionalDenoiser",
    "DiffusionSuperResolution",
    "SAMPLERS",
    "CONSISTENCY",
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "SPACINGS",
    "log_snr_timesteps",
    "variant_name",
    "add_noise_conditioning",
    "noise_channel",
    "make_scheduler",
    "set_sampler_timesteps",
    "encode_pair",
    "decode_sample",
    "diffusion_loss",
    "consistency_loss",
    "consistency_boundary",
    "trajectory_loss",
    "student_sample",
    "band_log_power",
    "block_cancellation",
    "cancellation_loss",
    "CANCELLATION_EDGES_GAUSS",
    "CANCELLATION_FLOOR",
    "TRAJECTORY_WEIGHTINGS",
    "teacher_states",
    "sampler_schedule",
    "STUDENT_SAMPLERS",
    "estimate_scales",
    "load_latent_space",
    "regression_base",
    "load_regression",
    "RESIDUAL_BASES",
]

#: Target quiet-Sun noise level (G) of a noise-conditioned model when neither its manifest nor the
#: call gives one: that of HMI's 720 s magnetograms since the observing-sequence change of April
#: 2016 (3.5 G, `sunpy_superres.calibration.HMI_NOISE_LEVELS`).
DEFAULT_NOISE_LEVEL = float(HMI_NOISE_LEVELS["mod-L"].to_value(u.G))
#: One network unit in G (`sunpy_superres.calibration.NORMALISATION_RANGE`).
NORMALISATION_GAUSS = float(NORMALISATION_RANGE.to_value(u.G))
#: Largest target noise level accepted, G (ten times any HMI level).
MAX_NOISE_LEVEL = 50.0
#: Sampler names accepted by ``superresolve(..., sampler=...)``. ``"lcm"`` is the multistep sampler of a
#: consistency-distilled denoiser (`CONSISTENCY`), and only of one; ``"distilled"`` the few DDIM steps
#: of a trajectory-distilled one (`trajectory_loss`), on the timesteps it was distilled for.
SAMPLERS = ("ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++", "lcm", "distilled")
#: Steps used when ``steps`` is not given: the paper's full DDPM chain, and the usual fast settings.
DEFAULT_STEPS = {
    "ddpm": 1000,
    "ddim": 50,
    "dpm-solver++": 20,
    "sde-dpm-solver++": 20,
    "lcm": 4,
    "distilled": 4,
}
#: The samplers of a distilled student, each run only by a denoiser distilled for it (or, for a
#: teacher that ships one, by its student).
STUDENT_SAMPLERS = ("lcm", "distilled")
#: Samplers that are deterministic given the initial noise: a trajectory-distilled student learns
#: such a sampler's map from noise to sample.
DETERMINISTIC_SAMPLERS = ("ddim", "dpm-solver++")
#: Samplers that draw fresh noise at every step, not only the initial noise.
STEP_NOISE_SAMPLERS = ("ddpm", "sde-dpm-solver++", "lcm")
#: Most steps of the ``"lcm"`` sampler: a consistency model is made for a few.
MAX_CONSISTENCY_STEPS = 8
#: The discretisation a consistency-distilled denoiser is trained and sampled on (Luo et al. 2023,
#: "Latent Consistency Models", sec. 4.3): ``original_steps`` DDIM timesteps ``k - 1, 2k - 1, ...,
#: 999`` with ``k = 1000 / original_steps``, and the boundary scalings ``c_skip`` and ``c_out`` of
#: diffusers' `LCMScheduler` at ``timestep_scaling``. The training task and the sampler read them here.
CONSISTENCY = {"original_steps": 50, "timestep_scaling": 10.0}
#: Sampler of a model when none is chosen: 20 network evaluations instead of 1000 (50x fewer).
DEFAULT_SAMPLER = "dpm-solver++"
# The old names (0.1) of the two above.
SCHEDULERS, DEFAULT_SCHEDULER = SAMPLERS, DEFAULT_SAMPLER
#: Timestep spacings of the DPM-Solver samplers: ``"linear"`` in t (diffusers' default), or
#: ``"log-snr"``, uniform in log signal-to-noise ratio (`log_snr_timesteps`).
SPACINGS = ("linear", "log-snr")
#: Range of the half log signal-to-noise ratio ``log(alpha / sigma)`` over which ``"log-snr"`` spaces
#: the steps after the first: from noise 55 times the signal (e**4) to signal 55 times the noise.
LOG_SNR_RANGE = (-4.0, 4.0)

#: What a residual denoiser's residual is taken to (``ConditionalDenoiser(residual_base=...)``): the
#: replicated input (the paper's), or a regression's back-projected output (`regression_base`).
RESIDUAL_BASES = ("lr", "regression")

VARIANTS = {
    ("latent", True): "ldm-res",
    ("latent", False): "ldm",
    ("pixel", True): "ddpm-res",
    ("pixel", False): "ddpm",
}


def variant_name(space, residual):
    """Registry name of a variant: ``"ldm-res"``, ``"ldm"``, ``"ddpm-res"`` or ``"ddpm"``."""
    return VARIANTS[(space, bool(residual))]


class ConditionalDenoiser(Network):
    """
    The denoising U-Net with its diffusion settings, saved and loaded as one network directory.

    Parameters
    ----------
    space : {"latent", "pixel"}
        Whether diffusion runs on autoencoder latents or on pixels.
    residual : bool
        Whether the target is the residual to the (encoded) LR input or the HR image itself.
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts (the paper: epsilon).
    target_channels, cond_channels : int
        Channels of the target and of the conditioning (1 in pixel space, the latent channels in
        latent space).
    target_scale, cond_scale : float
        Standard deviations (network units) by which target and conditioning are divided so that
        both are about unit-variance.
    block_out_channels : tuple of int
        U-Net channels per resolution level.
    layers_per_block : int
        ResNet layers per level.
    attention_levels : tuple of bool
        Self-attention per level (the paper: only at the low resolutions); the bottleneck has
        attention when any level has.
    attention_head_dim : int
        Channels per attention head.
    norm_num_groups : int
        Group-norm groups; divides every level's channels.
    num_train_timesteps, beta_start, beta_end, beta_schedule
        Forward process of Ho et al. (2020): linear betas 1e-4 to 0.02 over 1000 steps.
    factor : int
        Super-resolution factor (output pixels per input pixel per axis).
    noise_conditioning : bool
        Whether the conditioning carries one more channel: the target's quiet-Sun noise level
        (`sunpy_superres.metrics.physics.quiet_sun_noise`), as ``(level - noise_level_center) /
        noise_level_scale``, constant over the tile. HMI's noise changed over the mission (about
        4.8 G in 2011 and 3.5 G in 2019 within 0.9 solar radii); a model conditioned on it makes
        the small-scale texture, and with it the weak-field unsigned flux, of the level asked for
        instead of an average of its training frames'.
    noise_level_center, noise_level_scale : float
        Offset and scale of that channel, G.
    residual_base : {"lr", "regression"}
        What the residual, and the conditioning, start from: the LR input replicated (the paper's),
        or the back-projected output of a deterministic regression network that the model carries
        (`regression_base`; `DiffusionSuperResolution` ``regression``). Residual denoisers only.
    """

    @register_to_config
    def __init__(
        self,
        space="latent",
        residual=True,
        prediction_type="epsilon",
        target_channels=1,
        cond_channels=1,
        target_scale=1.0,
        cond_scale=1.0,
        block_out_channels=(32, 64, 128, 128),
        layers_per_block=2,
        attention_levels=(False, False, True, True),
        attention_head_dim=8,
        norm_num_groups=32,
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        factor=4,
        noise_conditioning=False,
        noise_level_center=4.0,
        noise_level_scale=2.0,
        residual_base="lr",
    ):
        super().__init__()
        if space not in ("latent", "pixel"):
            raise ValueError(f"space must be 'latent' or 'pixel', got {space!r}")
        if residual_base not in RESIDUAL_BASES:
            raise ValueError(
                f"residual_base must be one of {', '.join(map(repr, RESIDUAL_BASES))}, got {residual_base!r}"
            )
        if residual_base == "regression" and not residual:
            raise ValueError("residual_base='regression' is for a residual denoiser (residual=True)")
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(
                f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got {prediction_type!r}"
            )
        attention_levels = tuple(bool(a) for a in attention_levels)
        if len(attention_levels) != len(block_out_channels):
            raise ValueError("attention_levels needs one entry per level of block_out_channels")
        self.unet = UNet2D(
            in_channels=target_channels + cond_channels + int(bool(noise_conditioning)),
            out_channels=target_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            attention_levels=attention_levels,
            attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups,
        )

    @property
    def unet_multiple(self):
        """Spatial size multiple the U-Net needs (it halves the grid at every level but the last)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, sample, cond, timestep):
        """Network output for the noisy ``sample`` given the conditioning ``cond`` at ``timestep``."""
        return self.unet(torch.cat([sample, cond], dim=1), timestep)


#: Most threads that draw initial noise at once, and the smallest draw (values per tile) worth a thread.
MAX_NOISE_THREADS = 16
THREADED_NOISE_SIZE = 2**16


def initial_noise(shape, generators, device):
    """
    Standard normal noise of ``shape``, item ``i`` drawn on the CPU from ``generators[i]``.

    diffusers' ``randn_tensor`` for a list of CPU generators, draw for draw (so a seed gives the
    same samples on every device): item ``i`` is ``generators[i]``'s draw of one item (``randn`` is
    ``normal_`` on a new tensor, so filling the item in place draws the same values), then the
    whole moves to ``device``. The items are filled in place in one tensor, page-locked when it goes
    to a GPU (one asynchronous copy, no concatenation), and large draws run on threads, one
    generator each (a CPU draw is single-threaded: on an H200's host a full disk's 25 tiles took
    0.28 s a sample, drawn and concatenated one after the other).
    """
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for {shape[0]} items of noise")
    device = torch.device(device)
    pinned = device.type == "cuda"
    z = torch.empty(shape, dtype=torch.float32, pin_memory=pinned)

    def draw(i):
        z[i].normal_(generator=generators[i])

    workers = min(len(generators), torch.get_num_threads(), MAX_NOISE_THREADS)
    if workers < 2 or math.prod(shape[1:]) < THREADED_NOISE_SIZE:
        for i in range(shape[0]):
            draw(i)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="initial-noise") as pool:
            list(pool.map(draw, range(shape[0])))
    return z.to(device, non_blocking=pinned)


def noise_channel(config, noise_level, like):
    """
    The noise-level conditioning channel of a denoiser with ``config``: ``(B, 1, h, w)`` like ``like``.

    Parameters
    ----------
    config : dict-like
        A `ConditionalDenoiser` config with ``noise_conditioning``.
    noise_level : `torch.Tensor` or float
        ``(B,)`` levels, or one for the whole batch, in G.
    like : `torch.Tensor`
        ``(B, C, h, w)``: the conditioning whose batch, grid, dtype and device the channel takes.
    """
    level = torch.as_tensor(noise_level, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    value = (level - config["noise_level_center"]) / config["noise_level_scale"]
    return value.expand(like.shape[0], 1, *like.shape[2:])


def add_noise_conditioning(denoiser):
    """
    A copy of ``denoiser`` with the noise-level channel (`ConditionalDenoiser`), behaving as before.

    The first convolution gains one input channel with zero weights, so the network's output does
    not depend on the new channel until training gives it weights.
    """
    if denoiser.config.noise_conditioning:
        raise ValueError("this denoiser is already conditioned on the noise level")
    new = ConditionalDenoiser.from_config(denoiser.config, noise_conditioning=True)
    state = denoiser.state_dict()
    weight = state["unet.conv_in.weight"]
    state["unet.conv_in.weight"] = torch.cat([weight, torch.zeros_like(weight[:, :1])], dim=1)
    new.load_state_dict(state)
    return new


def load_latent_space(path):
    """
    The latent space of a latent diffusion model from its ``autoencoder/`` directory.

    Parameters
    ----------
    path : path-like
        A directory written by the ``save_pretrained`` of a
        `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder` or of a
        `~sunpy_superres.models.spacetodepth.SpaceToDepth` (told apart by ``_class_name`` in its
        ``config.json``).

    Returns
    -------
    `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder` or `~sunpy_superres.models.spacetodepth.SpaceToDepth`
    """
    path = Path(path)
    if json.loads((path / "config.json").read_text()).get("_class_name") == SpaceToDepth.__name__:
        return SpaceToDepth.from_pretrained(path)
    from .autoencoder import MagnetogramAutoencoder  # diffusers' AutoencoderKL: imported when a model has one

    return load_network(MagnetogramAutoencoder, path)


def load_regression(path):
    """
    The regression network of a ``residual_base="regression"`` model from its ``regression/`` directory.

    Parameters
    ----------
    path : path-like
        A directory written by the ``save_pretrained`` of an
        `~sunpy_superres.models.enhance.EnhanceNet` or a
        `~sunpy_superres.models.progressive.ProgressiveNet` (told apart by ``_class_name`` in its
        ``config.json``).

    Returns
    -------
    `~sunpy_superres.models.enhance.EnhanceNet` or `~sunpy_superres.models.progressive.ProgressiveNet`
    """
    path = Path(path)
    classes = {c.__name__: c for c in (EnhanceNet, ProgressiveNet)}
    name = json.loads((path / "config.json").read_text()).get("_class_name")
    if name not in classes:
        raise ValueError(f"{path} holds a {name}, not a regression network ({', '.join(classes)})")
    return load_network(classes[name], path)


def make_scheduler(name, config):
    """
    A fresh scheduler (diffusers' name for a sampler's state and update) for a denoiser's forward process.

    The DPM-Solver++ samplers of the default (``"dpm-solver++"``, ``"distilled"``) are the package's
    `~sunpy_superres.models.dpmsolver.DPMSolverPlusPlus`, diffusers' to the bit; the others are
    diffusers' own, imported here, at the first one made, not with the package (diffusers' import
    costs about 1.5 s: `~sunpy_superres.models.dpmsolver`).

    Parameters
    ----------
    name : {"ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++", "lcm"}
        ``"ddpm"`` is ancestral sampling (Ho et al. 2020), stochastic at every step; ``"ddim"`` is
        DDIM with eta = 0 (Song et al. 2021) and ``"dpm-solver++"`` the second-order multistep
        DPM-Solver++ (Lu et al. 2022), both deterministic given the initial noise;
        ``"sde-dpm-solver++"`` is its stochastic (SDE) form, which adds fresh noise at every step
        like ancestral sampling and so keeps more small-scale texture at few steps. ``"lcm"`` is
        the multistep consistency sampler (Song et al. 2023; diffusers' `LCMScheduler`) of a
        consistency-distilled denoiser, on the discretisation of `CONSISTENCY`.
    config : dict-like
        A `ConditionalDenoiser` config.

    Raises
    ------
    ValueError
        If ``name`` is not one of `SAMPLERS`.
    """
    if name not in SAMPLERS:
        raise ValueError(
            f"unknown sampler {name!r}; available samplers are {', '.join(map(repr, SAMPLERS))}."
        )
    common = dict(
        num_train_timesteps=config["num_train_timesteps"],
        beta_start=config["beta_start"],
        beta_end=config["beta_end"],
        beta_schedule=config["beta_schedule"],
        prediction_type=config["prediction_type"],
    )
    if name == "dpm-solver++":
        return DPMSolverPlusPlus(**common, solver_order=2)
    if name == "distilled":
        # First-order DPM-Solver++ is DDIM (eta = 0) in its data-prediction form (Lu et al. 2022,
        # DPM-Solver++, sec. 4), on any timesteps and with a last step to the clean end: the update a
        # trajectory-distilled student was trained to take (`trajectory_loss`).
        return DPMSolverPlusPlus(**common, solver_order=1)
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler

    # The targets are unit-variance, not images in [-1, 1]: the diffusers default clip_sample=True of
    # DDPM/DDIM would clip their x0 estimates to +-1 and truncate strong residuals.
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False)
    if name == "sde-dpm-solver++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="sde-dpmsolver++", solver_order=2)
    if name == "lcm":
        return LCMScheduler(
            **common,
            clip_sample=False,
            original_inference_steps=CONSISTENCY["original_steps"],
            timestep_scaling=CONSISTENCY["timestep_scaling"],
        )


_DPM_SOLVERS = ("dpm-solver++", "sde-dpm-solver++")


def _check_spacing(spacing, sampler):
    """``spacing``, if ``sampler`` can take it (log-SNR: DPM-Solver only)."""
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; one of {', '.join(map(repr, SPACINGS))}")
    if spacing != "linear" and sampler not in _DPM_SOLVERS:
        raise ValueError(f"spacing {spacing!r} is for the DPM-Solver samplers, not {sampler!r}")
    return spacing


def log_snr_timesteps(alphas_cumprod, steps, start, lam_range=LOG_SNR_RANGE):
    """
    ``steps`` timesteps: ``start``, then ``steps - 1`` uniformly spaced in half log-SNR.

    The half log signal-to-noise ratio of timestep ``t`` is ``lambda = log(sqrt(abar) / sqrt(1 -
    abar))``. DPM-Solver's error per step depends on the step in ``lambda`` (Lu et al. 2022, DPM-Solver++,
    which also proposes uniform ``lambda`` steps); diffusers' ``use_lu_lambdas`` spans the schedule's
    whole range, which on the cosine schedule (``lambda`` = -9.9 at t = 999) puts five of twelve
    steps at t >= 970, where the sample is still noise. Here the first step is at ``start`` (the
    paper's whole chain from 999) and the others span ``lam_range`` (clipped to the timesteps below
    ``start``), so that the steps go where the field's small scales are decided. Written here: no
    library spaces a fixed number of steps over a chosen log-SNR range.

    Parameters
    ----------
    alphas_cumprod : array-like
        ``abar`` of every training timestep.
    steps : int
        Number of timesteps (at least 2).
    start : int
        First timestep.
    lam_range : tuple of float, optional
        ``(low, high)`` half log-SNR of the second and the last timestep.

    Returns
    -------
    list of int
        Strictly decreasing timesteps.
    """
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    lam = 0.5 * np.log(abar / (1.0 - abar))  # decreasing in t
    lo, hi = (
        max(lam_range[0], float(lam[start - 1]) if start >= 1 else lam_range[0]),
        min(lam_range[1], float(lam[0])),
    )
    targets = np.linspace(lo, hi, steps - 1)
    # The timestep whose lambda is nearest each target (np.interp needs increasing x: reverse t).
    ts = np.interp(targets, lam[::-1], np.arange(len(lam))[::-1]).round().astype(int)
    out = [int(start)]
    for t in ts:  # strictly decreasing, below start
        t = min(int(t), out[-1] - 1)
        if t < 0:
            break
        out.append(t)
    return out


def set_sampler_timesteps(scheduler, name, steps, start=None, device=None, spacing="linear", timesteps=None):
    """
    Give a sampler its timesteps: ``steps`` of them from ``start`` down towards 0.

    Parameters
    ----------
    scheduler : diffusers scheduler
        Made by `make_scheduler` for the sampler ``name``.
    name : {"ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++", "lcm", "distilled"}
    steps : int
        Sampler steps (network evaluations). The DDPM chain has one step per timestep, so from a
        ``start`` below 999 it runs at most ``start + 1`` of them.
    spacing : {"linear", "log-snr"}, optional
        How the steps of a DPM-Solver sampler are spaced (`SPACINGS`, `log_snr_timesteps`).
    start : int, optional
        Timestep at which the reverse process starts; `None` or the last training timestep (999):
        the whole chain, with the scheduler's own spacing. A later start begins from the
        forward-process marginal of a zero target, ``sqrt(1 - alpha_bar[start]) * noise``: where
        ``alpha_bar[start]`` is small (0.0072 at 700 on the paper's linear schedule) this is almost
        exactly the marginal of the data, and it skips the steps at which a network that has not
        learnt the highest noise levels well would inject large errors (see `DiffusionSuperResolution`).
    timesteps : list of int, optional
        The ``"distilled"`` sampler's own timesteps, those its student was distilled for (``steps``
        of them; ``start`` and ``spacing`` do not apply); no other sampler takes them.

    Returns
    -------
    float
        Standard deviation of the initial noise.

    Raises
    ------
    ValueError
        If ``start`` is not an integer from ``steps - 1`` to 999 (DDPM: from 0), DDIM cannot
        space ``steps`` evenly from ``start``, or ``timesteps`` do not fit the sampler.
    """
    last = scheduler.config.num_train_timesteps - 1
    _check_spacing(spacing, name)
    if name == "lcm":
        if start is not None and start != last:
            raise ValueError(
                f"the lcm sampler starts at the last timestep, {last}: leave start_timestep out, got {start!r}"
            )
        scheduler.set_timesteps(steps, device=device)
        return float(scheduler.init_noise_sigma)
    with warnings.catch_warnings():
        # diffusers' DPM-Solver calls np.array() on a torch tensor, which torch 2.13 flags under
        # numpy 2 (a fact of those libraries, harmless: the copy is made either way).
        warnings.filterwarnings(
            "ignore",
            message=r"__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        if name == "distilled":
            ts = [] if timesteps is None else [int(t) for t in timesteps]
            if len(ts) != steps or start not in (None, *ts[:1]):
                raise ValueError(
                    f"the distilled sampler takes the {len(ts)} timesteps {ts} its student was distilled for, "
                    f"got steps={steps} from start_timestep={start}"
                )
            scheduler.set_timesteps(timesteps=ts, device=device)
            return float(torch.sqrt(1 - scheduler.alphas_cumprod[ts[0]]))
        if timesteps is not None:
            raise ValueError(f"only the distilled sampler takes explicit timesteps, not {name!r}")
        if spacing == "log-snr" and steps >= 2:
            start = last if start is None else int(start)
            ts = log_snr_timesteps(scheduler.alphas_cumprod.numpy(), steps, start)
            scheduler.set_timesteps(timesteps=ts, device=device)
            return float(torch.sqrt(1 - scheduler.alphas_cumprod[start]))
        if start is None or start == last:
            scheduler.set_timesteps(steps, device=device)
            return float(scheduler.init_noise_sigma)
        low = 0 if name == "ddpm" else steps - 1
        if not isinstance(start, numbers.Integral) or isinstance(start, bool) or not low <= start <= last:
            raise ValueError(
                f"start_timestep must be an integer from {low} to {last} for {steps} {name} steps, "
                f"got {start!r}"
            )
        start = int(start)
        if name == "ddpm":
            ts = np.unique(np.linspace(start, 0, min(steps, start + 1)).round().astype(int))[::-1]
            scheduler.set_timesteps(timesteps=ts.tolist(), device=device)
        elif name in _DPM_SOLVERS:
            scheduler.set_timesteps(
                timesteps=np.linspace(start, 0, steps + 1)[:-1].round().astype(int).tolist(), device=device
            )
        else:
            # diffusers' DDIM steps back by num_train_timesteps // num_inference_steps: choose the
            # count that gives this stride, and the timesteps that stride apart from ``start``.
            stride = max(1, start // steps)
            count = scheduler.config.num_train_timesteps // stride
            if scheduler.config.num_train_timesteps // count != stride:
                raise ValueError(
                    f"DDIM cannot take {steps} evenly spaced steps from timestep {start}; "
                    "choose another number of steps"
                )
            scheduler.num_inference_steps = count
            scheduler.timesteps = torch.arange(start, start - stride * steps, -stride, device=device)
    return float(torch.sqrt(1 - scheduler.alphas_cumprod[start]))


def regression_base(regression, lr_up, factor):
    """
    The image a ``residual_base="regression"`` denoiser takes its residual to: the regression's
    output for the input, back-projected onto it.

    Back-projection adds to every output pixel the difference between its input pixel and the mean
    of the ``factor x factor`` output pixels over it, so the base's block means are the input
    exactly: the projection onto the images consistent with the input under the block mean (the
    operator `sunpy_superres.evaluation.degrade` applies), which
    `sunpy_superres.consistency.project_block_means` makes on maps with ``method="block"`` (not its
    default, smoother back-projection: the constant per block leaves steps of about 1 G rms at block
    edges on training crops, against a 25 G residual, which the denoiser learns as part of the
    residual). The conditioning then still holds the whole input, which is what the paper's
    conditioning on the replicated input gives the network.

    Parameters
    ----------
    regression : callable or None
        A network ``(B, 1, h, w) -> (B, 1, factor h, factor w)`` in network units (e.g. a
        `~sunpy_superres.models.progressive.ProgressiveNet`); `None`: ``lr_up`` is the base (the
        paper's residual).
    lr_up : `torch.Tensor`
        ``(B, 1, H, W)`` input replicated ``factor`` times per axis (nearest), network units.
    factor : int
        Super-resolution factor.

    Returns
    -------
    `torch.Tensor`
        ``(B, 1, H, W)``, network units.
    """
    if regression is None:
        return lr_up
    lr = F.avg_pool2d(lr_up, factor)  # exact: lr_up is the input replicated
    with torch.no_grad():
        # NHWC: progressive's dense blocks ran 1.6 times faster so on the 2-core CPU (256x256 in:
        # 1.7 s against 2.7 s; see channels_last in DiffusionSuperResolution for the denoiser).
        out = regression(lr.contiguous(memory_format=torch.channels_last)).to(lr_up.dtype).contiguous()
    return block_project(out, lr, factor)


def encode_pair(denoiser, autoencoder, lr_up, hr=None, noise_level=None):
    """
    Conditioning and (optionally) the diffusion target of a batch, as in Fig. 2a.

    Parameters
    ----------
    denoiser : `ConditionalDenoiser`
    autoencoder : `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder` or None
        Required in latent space.
    lr_up : `torch.Tensor`
        ``(B, 1, H, W)`` LR input replicated to the HR grid, network units; for a
        ``residual_base="regression"`` denoiser its `regression_base` instead.
    hr : `torch.Tensor`, optional
        ``(B, 1, H, W)`` ground truth, network units.
    noise_level : `torch.Tensor` or float, optional
        Target quiet-Sun noise level(s) in G; required, and only accepted, for a noise-conditioned
        denoiser.

    Returns
    -------
    cond : `torch.Tensor`
        Scaled conditioning.
    base : `torch.Tensor`
        The unscaled (encoded) LR, to which a residual is added back.
    target : `torch.Tensor` or None
        Scaled target, when ``hr`` is given.
    """
    cfg = denoiser.config
    if cfg.space == "latent":
        with torch.no_grad():
            base = autoencoder.encode_mean(lr_up)
            high = None if hr is None else autoencoder.encode_mean(hr)
    else:
        base, high = lr_up, hr
    cond = base / cfg.cond_scale
    if cfg.get("noise_conditioning", False):
        if noise_level is None:
            raise ValueError("this denoiser is conditioned on the noise level: give noise_level (G)")
        cond = torch.cat([cond, noise_channel(cfg, noise_level, cond)], dim=1)
    elif noise_level is not None:
        raise ValueError("this denoiser is not conditioned on the noise level; leave noise_level out")
    target = None
    if high is not None:
        target = ((high - base) if cfg.residual else high) / cfg.target_scale
    return cond, base, target


def decode_sample(denoiser, autoencoder, sample, base):
    """Undo `encode_pair`: scaled sample -> HR image ``(B, 1, H, W)`` in network units (Fig. 2b)."""
    cfg = denoiser.config
    z = sample * cfg.target_scale
    if cfg.residual:
        z = z + base
    return autoencoder.decode_latent(z) if cfg.space == "latent" else z


@torch.no_grad()
def estimate_scales(space, residual, autoencoder, lr_up, hr):
    """
    Standard deviations of the conditioning and of the target on a sample of training data.

    Returns
    -------
    cond_scale, target_scale : float
        In network units (latent units in latent space); stored as `ConditionalDenoiser` config.
    """
    if space == "latent":
        base, high = autoencoder.encode_mean(lr_up), autoencoder.encode_mean(hr)
    else:
        base, high = lr_up, hr
    target = (high - base) if residual else high
    return float(base.std()), float(target.std())


def diffusion_loss(
    model, denoiser_config, autoencoder, noise_scheduler, lr_up, hr, generator, noise_level=None
):
    """
    Training loss of one batch: MSE between prediction and its target (section 4, Fig. 2a).

    Parameters
    ----------
    model : callable
        The denoiser, possibly wrapped for distributed training; ``model(noisy, cond, t)``.
    denoiser_config : dict-like
        Config of the unwrapped `ConditionalDenoiser`.
    noise_scheduler : `diffusers.DDPMScheduler`
        Defines the forward process (``add_noise``).
    generator : `torch.Generator`
        Draws timesteps and noise, so a step is reproducible from its seed (exact resume).
    noise_level : `torch.Tensor`, optional
        ``(B,)`` quiet-Sun noise levels of the HR crops, G (noise-conditioned denoisers only).
    """

    class _Cfg:  # encode_pair reads .config attributes
        config = denoiser_config

    cond, _, target = encode_pair(_Cfg, autoencoder, lr_up, hr, noise_level=noise_level)
    noise = torch.randn(target.shape, generator=generator, dtype=target.dtype).to(target.device)
    t = torch.randint(0, denoiser_config.num_train_timesteps, (target.shape[0],), generator=generator)
    t = t.to(target.device)
    noisy = noise_scheduler.add_noise(target, noise, t)
    pred = model(noisy, cond, t)
    kind = denoiser_config.prediction_type
    ref = (
        noise
        if kind == "epsilon"
        else target
        if kind == "sample"
        else noise_scheduler.get_velocity(target, noise, t)
    )
    return F.mse_loss(pred.float(), ref.float())


def _x0_and_eps(pred, x_t, abar, prediction_type):
    """The target and noise estimates of a denoiser's output ``pred`` at ``x_t`` (``abar``: alpha-bar of t)."""
    a, b = abar.sqrt(), (1 - abar).sqrt()
    if prediction_type == "epsilon":
        return (x_t - b * pred) / a, pred
    if prediction_type == "sample":
        return pred, (x_t - a * pred) / b
    return a * x_t - b * pred, b * x_t + a * pred  # v-prediction (Salimans & Ho 2022)


def consistency_boundary(t):
    """
    ``c_skip(t)`` and ``c_out(t)`` of a consistency model's output ``c_skip x_t + c_out x0(x_t, t)``.

    diffusers' `LCMScheduler` scalings at `CONSISTENCY`'s ``timestep_scaling``, the ones its sampler
    applies; ``t < 0`` (the clean end) gives 1 and 0, the identity.
    """
    from diffusers import LCMScheduler

    lcm = LCMScheduler(timestep_scaling=CONSISTENCY["timestep_scaling"])
    c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(t.clamp(min=0).double())
    clean = t < 0
    return torch.where(clean, 1.0, c_skip).float(), torch.where(clean, 0.0, c_out).float()


def consistency_loss(
    student, teacher, denoiser_config, autoencoder, alphas_cumprod, lr_up, hr, generator,
    noise_level=None, huber_c=1e-3, target_net=None,
):  # fmt: skip
    """
    Consistency-distillation loss of one batch (Song et al. 2023; Luo et al. 2023, "Latent Consistency Models").

    A timestep ``t`` of the DDIM grid of `CONSISTENCY` is drawn per crop, the target noised to it,
    and the frozen teacher takes one DDIM step to ``t - k``. The student's consistency output at
    ``t`` is pulled towards the target network's output (without gradient) at the teacher's
    ``t - k``: the student learns to map every point of a teacher trajectory to the same clean
    target. At the first grid point ``t - k`` is the clean end, where the output is the teacher's
    DDIM estimate. Pseudo-Huber distance with ``huber_c``.

    Parameters
    ----------
    student, teacher : callable
        ``model(noisy, cond, t)``: the denoiser being trained (possibly wrapped) and the frozen one.
    target_net : callable, optional
        The target network, ``model(noisy, cond, t)``: an exponential moving average of the
        student's weights in Latent Consistency Models (decay 0.95); by default the student itself
        (improved consistency training, Song & Dhariwal 2023).
    denoiser_config : dict-like
        The teacher's `ConditionalDenoiser` config (the student has the same).
    alphas_cumprod : `torch.Tensor`
        alpha-bar of the 1000 training timesteps, on the target's device.
    generator : `torch.Generator`
        Draws timesteps and noise, so a step is reproducible from its seed.
    noise_level : `torch.Tensor`, optional
        ``(B,)`` quiet-Sun noise levels of the HR crops, G (noise-conditioned denoisers only).
    """

    class _Cfg:  # encode_pair reads .config attributes
        config = denoiser_config

    cond, _, target = encode_pair(_Cfg, autoencoder, lr_up, hr, noise_level=noise_level)
    k = denoiser_config.num_train_timesteps // CONSISTENCY["original_steps"]
    n = torch.randint(1, CONSISTENCY["original_steps"] + 1, (target.shape[0],), generator=generator)
    noise = torch.randn(target.shape, generator=generator, dtype=target.dtype).to(target.device)
    t, t_prev = (n * k - 1).to(target.device), (n * k - 1 - k).to(target.device)
    shape = (-1, 1, 1, 1)
    abar = alphas_cumprod[t].view(shape)
    abar_prev = torch.where(t_prev >= 0, alphas_cumprod[t_prev.clamp(min=0)], 1.0).view(shape)
    x_t = abar.sqrt() * target + (1 - abar).sqrt() * noise
    kind = denoiser_config.prediction_type
    with torch.no_grad():
        x0, eps = _x0_and_eps(teacher(x_t, cond, t).float(), x_t, abar, kind)
        x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps  # one DDIM step of the teacher
        skip, out = consistency_boundary(t_prev)
        target_net = student if target_net is None else target_net
        x0_prev, _ = _x0_and_eps(
            target_net(x_prev, cond, t_prev.clamp(min=0)).float(), x_prev, abar_prev, kind
        )
        aim = skip.view(shape) * x_prev + out.view(shape) * x0_prev
    skip, out = consistency_boundary(t)
    x0_student, _ = _x0_and_eps(student(x_t, cond, t).float(), x_t, abar, kind)
    f = skip.view(shape) * x_t + out.view(shape) * x0_student
    return (torch.sqrt((f - aim) ** 2 + huber_c**2) - huber_c).mean()


def sampler_schedule(sampler, denoiser_config, device=None):
    """
    A scheduler set to a model's sampler settings, and the standard deviation of its initial noise.

    ``sampler`` is a dict of ``name``, ``steps``, ``start_timestep`` and ``spacing``, as a
    `DiffusionSuperResolution` runs them (`make_scheduler`, `set_sampler_timesteps`).
    """
    sched = make_scheduler(sampler["name"], denoiser_config)
    sigma = set_sampler_timesteps(
        sched, sampler["name"], sampler["steps"], sampler.get("start_timestep"), device=device,
        spacing=sampler.get("spacing", "linear"),
    )  # fmt: skip
    return sched, sigma


@torch.no_grad()
def teacher_states(teacher, denoiser_config, cond, noise, sampler, stops):
    """
    A deterministic sampler's states at some of its timesteps, and its sample.

    Parameters
    ----------
    teacher : callable
        The frozen denoiser, ``model(noisy, cond, t)``.
    denoiser_config : dict-like
        Its `ConditionalDenoiser` config.
    cond : `torch.Tensor`
        Scaled conditioning (`encode_pair`).
    noise : `torch.Tensor`
        Standard normal draw of the sampler's initial state, the shape of the target.
    sampler : dict
        The teacher's sampler: ``name`` (one of `DETERMINISTIC_SAMPLERS`), ``steps``,
        ``start_timestep`` and ``spacing``, as a `DiffusionSuperResolution` runs it.
    stops : list of int
        Timesteps of that sampler's schedule, decreasing, the first its first.

    Returns
    -------
    list of `torch.Tensor`
        The state on arrival at each of ``stops``, then the sample: ``len(stops) + 1`` tensors.

    Raises
    ------
    ValueError
        If the sampler is stochastic, or a stop is not one of its timesteps.
    """
    name = sampler["name"]
    if name not in DETERMINISTIC_SAMPLERS:
        raise ValueError(
            f"a trajectory is distilled from a deterministic sampler ({', '.join(DETERMINISTIC_SAMPLERS)}); "
            f"the teacher's is {name!r}"
        )
    sched, sigma = sampler_schedule(sampler, denoiser_config, device=noise.device)
    schedule = [int(t) for t in sched.timesteps]
    if schedule[:1] != list(stops[:1]) or any(t not in schedule for t in stops):
        raise ValueError(
            f"the student's timesteps {list(stops)} must be among the teacher's {schedule}, from its first"
        )
    z, states = noise * sigma, []
    for t in sched.timesteps:
        if int(t) in stops:
            states.append(z)
        out = teacher(sched.scale_model_input(z, t), cond, t)
        z = sched.step(out.float(), t, z).prev_sample
    return [*states, z]


#: How `trajectory_loss` weights the squared error of each student step's target estimate.
TRAJECTORY_WEIGHTINGS = ("snr+1", "x0")


def trajectory_loss(
    student, teacher, denoiser_config, autoencoder, alphas_cumprod, lr_up, generator, *, sampler, timesteps,
    noise_level=None, weighting="snr+1", sample_weight=0.0, spectral_weight=0.0, factor=4, hr=None,
    flux_weight=0.0,
):  # fmt: skip
    """
    Trajectory-distillation loss of one batch: one student DDIM step for several teacher steps.

    The teacher's deterministic sampler (`teacher_states`) runs from fresh noise, conditioned on the
    batch's input, and is stopped at the student's ``timesteps``. For every crop and every one of
    the student's steps, from ``t`` to the next of ``timesteps`` (or to the clean end), the student,
    evaluated at the teacher's state at ``t``, is pulled towards the estimate of the target with
    which one DDIM step lands exactly on the teacher's state at the step's end (all steps of a
    trajectory in one batch: the teacher's run costs more than the student's steps): the objective of
    progressive distillation (Salimans & Ho 2022, Algorithm 2), with the student's steps a subset
    of the teacher sampler's instead of its halves. The squared error is taken in v (that is, on the
    target estimate weighted by ``1 + SNR(t)``, Salimans & Ho's "SNR+1" weighting), or, with
    ``weighting="x0"``, on the target estimate itself, every step alike. The student so learns the
    teacher sampler's map from noise to sample, its texture included, and the ``"distilled"``
    sampler runs it in ``len(timesteps)`` network evaluations.

    Why ``"x0"``: an error ``e`` in the estimate of the step from ``t`` to ``s`` moves the state at
    ``s`` by ``(a_s - b_s a_t / b_t) e``, that is its clean part by 0.86 to 1 times ``e`` for the
    default's student (timesteps 999, 773, 217, 24 on the cosine schedule), while "SNR+1" weighs it
    by ``1 / b_t^2``: 402 for the step from t = 24, 1.14 for the one from t = 773. Under "SNR+1" the
    early, coarse steps, where a few-step student of the default lost its finest scales, get little
    of the fit.

    With ``sample_weight > 0`` the student also runs its own sampler from the same noise, each step
    from the state its previous step reached (as at inference, where a step's error moves every
    later step's input), and the squared error of its sample against the teacher's, in target units,
    is added with that weight: knowledge distillation of the whole sampler (Luhman & Luhman 2021),
    which the per-step objective only approaches through its steps.

    With ``spectral_weight > 0`` the squared log ratio of the two samples' radial power spectra over
    the scales the super-resolution adds (`band_log_power`) is added with that weight. A squared
    error pulls a student that cannot follow the teacher's finest texture exactly towards the mean
    of what it might be, which has less power there: the default's student trained without it had
    7 % less power than its teacher at 1-1.5" on strong-field training crops.

    With ``flux_weight > 0`` the student's sample is also held to the *truth* ``hr`` in one
    statistic the teacher gets wrong: the unsigned flux that cancels inside each input pixel's
    block, per range of the block's mean field (`cancellation_loss`). This is the one term that
    looks at the data rather than the teacher; it needs ``noise_level`` to be each crop's own.

    Parameters
    ----------
    student, teacher : callable
        ``model(noisy, cond, t)``: the denoiser being trained (possibly wrapped) and the frozen one.
    denoiser_config : dict-like
        The teacher's `ConditionalDenoiser` config (the student has the same).
    alphas_cumprod : `torch.Tensor`
        alpha-bar of the 1000 training timesteps, on the input's device.
    lr_up : `torch.Tensor`
        ``(B, 1, H, W)`` LR input replicated to the HR grid, network units (the truth is not needed:
        the teacher makes the targets).
    generator : `torch.Generator`
        Draws the noise, so a training step is reproducible from its seed.
    sampler : dict
        The teacher's sampler (see `teacher_states`).
    timesteps : list of int
        The student's timesteps, among the teacher sampler's, from its first.
    noise_level : `torch.Tensor`, optional
        ``(B,)`` quiet-Sun noise levels, G (noise-conditioned denoisers only).
    weighting : {"snr+1", "x0"}, optional
        The squared error in v (``"snr+1"``, the default) or of the target estimate (``"x0"``).
    sample_weight : float, optional
        Weight of the squared error of the student's own sample against the teacher's (default 0:
        the per-step objective alone).
    spectral_weight : float, optional
        Weight of the squared log ratio of the student's sample's power spectrum to the teacher's
        (default 0: none); the student runs its own sampler for it, as for ``sample_weight``.
    factor : int, optional
        The super-resolution factor (the input's pixel in output pixels): the spectral term's scales
        are those below the input's Nyquist frequency.
    hr : `torch.Tensor`, optional
        ``(B, 1, H, W)`` ground truth, network units (only for ``flux_weight``).
    flux_weight : float, optional
        Weight of `cancellation_loss` of the student's sample against ``hr`` (default 0: none).

    Raises
    ------
    ValueError
        If the teacher's sampler is stochastic, a timestep is not one of its steps, ``weighting``
        is unknown, ``sample_weight`` or ``spectral_weight`` is negative, or ``spectral_weight`` is
        asked of a denoiser on a learned latent.
    """
    if not sample_weight >= 0:
        raise ValueError(f"sample_weight must be 0 or more, got {sample_weight}")
    if not spectral_weight >= 0:
        raise ValueError(f"spectral_weight must be 0 or more, got {spectral_weight}")
    if not flux_weight >= 0:
        raise ValueError(f"flux_weight must be 0 or more, got {flux_weight}")
    if flux_weight and hr is None:
        raise ValueError("flux_weight holds the student's sample to the truth: give hr")
    if spectral_weight and not (autoencoder is None or isinstance(autoencoder, SpaceToDepth)):
        raise ValueError(
            "spectral_weight needs a denoiser in pixel space or on the space-to-depth latent: a learned "
            "decoder does not decode a residual alone"
        )
    if weighting not in TRAJECTORY_WEIGHTINGS:
        raise ValueError(
            f"unknown trajectory weighting {weighting!r}; use one of {', '.join(map(repr, TRAJECTORY_WEIGHTINGS))}"
        )

    class _Cfg:  # encode_pair reads .config attributes
        config = denoiser_config

    cond, base, _ = encode_pair(_Cfg, autoencoder, lr_up, noise_level=noise_level)
    shape = (cond.shape[0], denoiser_config.target_channels, *cond.shape[2:])
    noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(cond.device)
    states = teacher_states(teacher, denoiser_config, cond, noise, sampler, timesteps)
    # Step k of crop i is row k * B + i: the student's steps of all crops in one batch.
    x_t, x_s = torch.cat(states[:-1]), torch.cat(states[1:])
    cond = cond.repeat(len(timesteps), 1, 1, 1)
    ends = torch.tensor([*timesteps, -1], device=cond.device).repeat_interleave(shape[0])
    t, s = ends[: -shape[0]], ends[shape[0] :]
    view = (-1, 1, 1, 1)
    abar_t = alphas_cumprod[t].view(view)
    abar_s = torch.where(s >= 0, alphas_cumprod[s.clamp(min=0)], 1.0).view(view)
    a_t, b_t, a_s, b_s = abar_t.sqrt(), (1 - abar_t).sqrt(), abar_s.sqrt(), (1 - abar_s).sqrt()
    # DDIM from x_t with estimate x0 lands on a_s x0 + b_s (x_t - a_t x0) / b_t: solved for the x0
    # that lands on the teacher's x_s.
    x0_aim = (x_s - (b_s / b_t) * x_t) / (a_s - b_s * a_t / b_t)
    x0, _ = _x0_and_eps(student(x_t, cond, t).float(), x_t, abar_t, denoiser_config.prediction_type)
    if weighting == "x0":
        loss = ((x0 - x0_aim) ** 2).mean()
    else:
        loss = (((x0 - x0_aim) / b_t) ** 2).mean()
    if sample_weight or spectral_weight or flux_weight:
        sample = student_sample(
            student, cond[: shape[0]], states[0], alphas_cumprod, timesteps, denoiser_config
        )
        loss = loss + sample_weight * ((sample - states[-1]) ** 2).mean()
    if spectral_weight:
        # The residual samples on the image grid (space-to-depth's channels are the image's pixels):
        # their common scale cancels in the ratio; the base, common to both, is left out.
        images = [s if autoencoder is None else autoencoder.decode_latent(s) for s in (sample, states[-1])]
        ratio = band_log_power(images[0], factor) - band_log_power(images[1], factor)
        loss = loss + spectral_weight * (ratio**2).mean()
    if flux_weight:
        image = decode_sample(_Cfg, autoencoder, sample, base)
        loss = loss + flux_weight * cancellation_loss(image, hr, lr_up, factor)
    return loss


#: Lower edges (G) of the ranges of a block's mean field in which `cancellation_loss` compares the
#: flux that cancels inside the blocks (the last range is open). Below 5 G a block's texture is
#: the quiet Sun's noise, which the noise label sets.
CANCELLATION_EDGES_GAUSS = (5.0, 10.0, 25.0, 50.0, 100.0, 300.0)


def _blocks(images, factor):
    """``(B, 1, H, W)`` -> ``(B, H / factor, factor, W / factor, factor)``: each input pixel's block."""
    b, _, h, w = images.shape
    return images.reshape(b, h // factor, factor, w // factor, factor)


def _per_range(values, reference, factor, edges_gauss):
    """``(B, h, w)`` per-block ``values`` summed over the blocks in each range of ``|mean of reference|``."""
    means = _blocks(reference, factor).mean((2, 4)).abs()
    edges = torch.tensor(edges_gauss, dtype=means.dtype, device=means.device) / NORMALISATION_GAUSS
    index = torch.bucketize(means, edges, right=True)  # 0: below the first edge, left out
    out = values.new_zeros(values.shape[0], len(edges_gauss) + 1)
    return out.scatter_add_(1, index.flatten(1), values.flatten(1))[:, 1:]


def block_cancellation(images, reference, factor, edges_gauss=CANCELLATION_EDGES_GAUSS):
    """
    Per image and range of block mean field, the unsigned flux that cancels inside the blocks.

    For each ``factor x factor`` block, ``sum |x| - |sum x|``: zero where the block is of one sign,
    the flux of the minority sign twice where it is not. Summed over the blocks whose mean of
    ``reference`` has ``|mean|`` in each range of ``edges_gauss`` (blocks below the first edge are
    left out). Once the block means are fixed (back-projection, or the truth's degradation), an
    image's unsigned flux is the sum of ``|block sums|``, which it shares with the truth, plus this.

    Parameters
    ----------
    images : `torch.Tensor`
        ``(B, 1, H, W)``, network units (field / 3000 G); ``H`` and ``W`` multiples of ``factor``.
    reference : `torch.Tensor`
        ``(B, 1, H, W)`` whose block means choose each block's range (the input's: the same for an
        output and its truth).
    factor : int
        Side of a block, in pixels (the input's pixel).
    edges_gauss : sequence of float, optional
        Increasing lower edges of the ranges, G.

    Returns
    -------
    `torch.Tensor`
        ``(B, len(edges_gauss))``, network units times pixels.
    """
    blocks = _blocks(images, factor)
    cancelled = blocks.abs().sum((2, 4)) - blocks.sum((2, 4)).abs()
    return _per_range(cancelled, reference, factor, edges_gauss)


#: Share of an image's unsigned flux added to each range's own in `cancellation_loss`'s denominator.
CANCELLATION_FLOOR = 0.02


def cancellation_loss(
    images, truth, reference, factor, floor=CANCELLATION_FLOOR, edges_gauss=CANCELLATION_EDGES_GAUSS
):
    """
    Squared relative error of `block_cancellation` against the truth's, per range of block mean field.

    A denoiser's sub-pixel texture can have the truth's variance and power spectrum and still put
    the wrong share of it against the block's sign: where the truth concentrates a 2" pixel's
    flux in a few 0.5" elements of one sign, a symmetric texture about the block mean crosses zero
    and adds unsigned flux. This holds an image to the truth in that, per range of block mean field
    (`CANCELLATION_EDGES_GAUSS`): the difference of the cancelling flux over the range's own
    unsigned flux at the input's resolution (the truth's ``sum |block sums|`` there) plus ``floor``
    times the truth's whole unsigned flux (so that a range of a few blocks does not weigh in with
    its scatter), squared, summed over the ranges, mean over the images. Relative per range, so that
    plage and network, which hold a small part of a crop's flux, count as much as the weak field
    that holds most of it. (Hand-written: no library has this statistic.)

    Parameters
    ----------
    images, truth, reference : `torch.Tensor`
        ``(B, 1, H, W)``, network units: the images, the truth and what chooses each block's range.
    factor : int
        The input's pixel, in image pixels.
    floor : float, optional
        Share of the truth's whole unsigned flux added to each range's in the denominator.
    edges_gauss : sequence of float, optional
        Increasing lower edges of the ranges, G (`block_cancellation`'s).

    Returns
    -------
    `torch.Tensor`
        Scalar.
    """
    ours = block_cancellation(images, reference, factor, edges_gauss)
    theirs = block_cancellation(truth, reference, factor, edges_gauss)
    flux = _per_range(_blocks(truth, factor).sum((2, 4)).abs(), reference, factor, edges_gauss)
    total = truth.abs().sum((1, 2, 3))[:, None]
    scale = (flux + floor * total).clamp(min=torch.finfo(truth.dtype).tiny)
    return (((ours - theirs) / scale) ** 2).sum(1).mean()


def band_log_power(images, lowres_pixels, window=True):
    """
    ln of the azimuthally averaged power of images over the scales a super-resolution adds.

    The torch counterpart of `sunpy_superres.metrics.spectra.spectral_error`'s spectra, differentiable, for
    training: one ring per frequency pixel (``dk = 1 / N`` cycles per pixel, ``N`` the shorter
    side), those with ``1 / (2 lowres_pixels) < k <= 1 / 2``, each the mean of ``|FFT|^2`` over its
    modes of the one-sided (``rfft2``) spectrum, after a Hann taper. (No library computes this on
    torch tensors with gradients; the numpy metric is `~sunpy_superres.metrics.spectra.radial_power_spectrum`.)

    Parameters
    ----------
    images : `torch.Tensor`
        ``(B, 1, H, W)``.
    lowres_pixels : int
        The input's pixel in image pixels (4 for 2" in, 0.5" out).
    window : bool, optional
        Taper by a periodic Hann window first (the metric's default).

    Returns
    -------
    `torch.Tensor`
        ``(B, rings)``: ln of the mean power in each ring, from the input's Nyquist outward.
    """
    _, _, h, w = images.shape
    x = images[:, 0]
    if window:
        taper = torch.outer(
            torch.hann_window(h, dtype=x.dtype, device=x.device),
            torch.hann_window(w, dtype=x.dtype, device=x.device),
        )
        x = x * taper
    power = torch.fft.rfft2(x).abs() ** 2
    n = min(h, w)
    ky = torch.fft.fftfreq(h, device=x.device).view(-1, 1)
    kx = torch.fft.rfftfreq(w, device=x.device).view(1, -1)
    ring = torch.floor(torch.sqrt(ky**2 + kx**2) * n + 0.5).long().expand(h, -1).flatten()
    # Each one-sided mode with 0 < kx < 1/2 stands for itself and its mirror -k: counted twice, the
    # ring means are those of the whole plane.
    mirrored = ((kx > 0) & (kx < 0.5)).expand(h, -1).flatten()
    weight = 1.0 + mirrored.to(power.dtype)
    first, last = n // (2 * lowres_pixels) + 1, n // 2
    keep = (ring >= first) & (ring <= last)
    ring, power, weight = ring[keep] - first, power.flatten(1)[:, keep], weight[keep]
    rings = last - first + 1
    total = power.new_zeros(power.shape[0], rings).index_add_(1, ring, power * weight)
    count = power.new_zeros(rings).index_add_(0, ring, weight)
    return torch.log(total / count + torch.finfo(power.dtype).tiny)


def student_sample(student, cond, x, alphas_cumprod, timesteps, denoiser_config):
    """
    The ``"distilled"`` sampler: one DDIM step (deterministic) from each of ``timesteps``, from ``x``.

    The last step lands on the target estimate (alpha-bar 1), as `trajectory_loss` assumes; gradients
    flow through every step.
    """
    batch = x.shape[0]
    for k, step in enumerate(timesteps):
        abar_t = alphas_cumprod[step]
        t = torch.full((batch,), int(step), device=x.device, dtype=torch.long)
        x0, eps = _x0_and_eps(student(x, cond, t).float(), x, abar_t, denoiser_config.prediction_type)
        if k + 1 == len(timesteps):
            return x0
        abar_s = alphas_cumprod[timesteps[k + 1]]
        x = abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * eps


@register_kind("diffusion")
class DiffusionSuperResolution(SuperResolutionModel):
    """
    A trained diffusion variant behind the `SuperResolutionModel` interface.

    Parameters
    ----------
    denoiser : `ConditionalDenoiser`
    autoencoder : `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder`, optional
        Required when ``denoiser.config.space == "latent"``.
    name : str, optional
        Registry name; by default the variant's (``"ldm-res"``, ...).
    revision : str, optional
        Weights revision written into output headers.
    sampler : {"ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++", "lcm"}, optional
        Sampler; DPM-Solver++ by default (``"lcm"`` for a consistency-distilled denoiser).
        ``scheduler`` is its old name.
    steps : int, optional
        Sampler steps (network evaluations); by default those of `DEFAULT_STEPS`.
    tile_size : int, optional
        Default tile side in input pixels.
    halo : int, optional
        Input pixels of context per side used to place tile seams.
    start_timestep : int, optional
        Timestep at which the reverse process starts (see `set_sampler_timesteps`); `None` (default):
        999, the paper's whole chain. A model's manifest may set another: a denoiser trained too
        briefly may predict the noise of the highest levels so poorly that its estimate of the
        target there is worse than zero (an earlier embedded ``ldm-res``: an error of 3.1 target
        standard deviations at timestep 800, against 0.93 at 600, and samples 6.8 times too strong
        from 999), and then starting at 700, where the linear schedule keeps 0.7 % of the target's
        variance, skips those steps at the cost of about 0.1 of the noise. The embedded default
        starts at 999.
    device : str, optional
        Torch device.
    precision : {"auto", "fp32", "bf16", "fp16"}, optional
        Arithmetic of the denoiser and the autoencoder, run under `torch.autocast`; the sampler's
        update and the conditioning stay in float32. ``"auto"`` (default) is bfloat16 on a CUDA GPU
        or a CPU (Intel AMX, AVX-512 BF16) that has it natively and float32 elsewhere (see
        `sunpy_superres.models.accel.resolve_precision`).
    compile : bool, optional
        Compile the denoiser's forward with ``torch.compile`` (default `False`; see `compile`).
    noise_level : float, optional
        For a noise-conditioned denoiser, the quiet-Sun noise level (G) of the output's small-scale
        texture (see `ConditionalDenoiser`); by default `DEFAULT_NOISE_LEVEL`. Ignored otherwise.
    noise_label_map : dict, optional
        For a noise-conditioned denoiser, what its sampler makes of each conditioning label:
        ``{"output_gauss": [...], "label_gauss": [...], "source": "..."}``, the quiet-Sun noise of
        the output (`sunpy_superres.metrics.physics.quiet_sun_noise`) measured at each label, both
        increasing (``tools/calibrate_noise_level.py`` measures it). ``noise_level`` is then the
        noise of the output: the label is interpolated from the map, and levels outside the
        measured range are refused. Without a map the label is ``noise_level`` itself.
    consistency : dict, optional
        For a consistency-distilled denoiser (``sunpy-superres-train`` with ``[model] kind =
        "consistency"``), how it was distilled: the settings of `CONSISTENCY` and the teacher's
        revision (``"teacher"``). Its sampler is then ``"lcm"`` (4 steps by default), and only that;
        other models refuse ``"lcm"``.
    trajectory : dict, optional
        For a trajectory-distilled denoiser (``[model] kind = "trajectory"``, `trajectory_loss`),
        how it was distilled: its ``"timesteps"`` (the student's DDIM steps start at each), the
        teacher's revision (``"teacher"``) and the teacher's sampler settings (``"teacher_sampler"``).
        Its sampler is then ``"distilled"`` on exactly those timesteps, and only that; other models
        refuse ``"distilled"``.
    channels_last : bool, optional
        On a CUDA device, convert the networks (in place) and their inputs to the ``channels_last``
        (NHWC) memory format. Off by default: measured on an H100 with the ``paper-gpu``
        architecture (25 full-disk tiles, bf16), it made a sampler step 30 % slower (0.058 s against
        0.044 s) and encoding plus decoding 30 % slower (1.96 s against 1.48 s); the diffusers U-Net
        and autoencoder are dominated by group normalisation, which runs on NCHW. On the CPU the
        networks always run NHWC (oneDNN's bfloat16 convolutions need it; see `precision`).
    regression : `torch.nn.Module`, optional
        The deterministic network whose back-projected output a ``residual_base="regression"``
        denoiser takes its residual to (`regression_base`): required for such a denoiser, refused
        for another. Saved in the model directory as ``regression/``. The halo is at least the
        regression's (its ``halo`` attribute), so that tiling does not change its output.
    regression_revision : str, optional
        The weights revision of ``regression`` (the model it came from), written into output
        headers as ``SRREGREV``.

    Raises
    ------
    ValueError
        If a latent denoiser comes without an autoencoder, a regression-based one without its
        regression, or the sampler or precision settings are invalid.
    """

    kind = "diffusion"
    stochastic = True
    clip_input = True
    precisions = ("fp32", "bf16", "fp16")
    #: ``{sampler: directory}`` of the distilled students that this model's ``"lcm"`` or
    #: ``"distilled"`` sampler runs (model directories inside this one, listed in its manifest's
    #: ``students``); empty when it ships none.
    student_dirs = {}
    #: The student's sampler (a key of `student_dirs`) that `~sunpy_superres.models.load_model`
    #: serves this model with: its manifest's ``default_sampler``. `None`: its own, `sampler`.
    default_sampler = None
    #: For a student reached through the model it was distilled from (`student`), that model:
    #: `configure_sampler` hands the teacher's samplers back to it. `None` otherwise.
    teacher = None

    def __init__(
        self,
        denoiser,
        autoencoder=None,
        *,
        name=None,
        revision="untrained",
        sampler=None,
        steps=None,
        start_timestep=None,
        spacing=None,
        tile_size=256,
        halo=8,
        device="auto",
        precision="auto",
        compile=False,
        channels_last=False,
        noise_level=None,
        noise_label_map=None,
        consistency=None,
        trajectory=None,
        scheduler=None,
        regression=None,
        regression_revision=None,
    ):
        super().__init__(device=device)
        sampler = renamed_sampler(sampler, scheduler)
        cfg = denoiser.config
        if cfg.space == "latent" and autoencoder is None:
            raise ValueError("a latent-space denoiser needs its autoencoder")
        if (cfg.get("residual_base", "lr") == "regression") != (regression is not None):
            raise ValueError(
                "a denoiser with residual_base='regression' needs its regression network, and only such "
                f"a denoiser takes one (this one's residual_base is {cfg.get('residual_base', 'lr')!r})"
            )
        self.precision = resolve_precision(precision, self.device)
        # On a GPU NHWC is opt-in, by measurement (see channels_last above). On the CPU the networks
        # always take NHWC: oneDNN's bfloat16 convolutions need it for their speed (the default's U-Net,
        # 256x256 latent, 2 threads: 0.106 s against 0.214 s NCHW), and float32 gains a little too
        # (0.341 s against 0.380 s); the values differ from NCHW's by float rounding only.
        nhwc = channels_last or self.device.type == "cpu"
        self._memory_format = torch.channels_last if nhwc else torch.contiguous_format
        self.denoiser = denoiser.to(self.device, memory_format=self._memory_format).eval()
        self.autoencoder = None
        if cfg.space == "latent":
            self.autoencoder = autoencoder.to(self.device, memory_format=self._memory_format).eval()
        self.regression = None
        self.regression_revision = None if regression is None else str(regression_revision or "unknown")
        if regression is not None:
            self.regression = (
                regression.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)
            )
            halo = max(int(halo), int(getattr(regression, "halo", 0)))
        self._denoise = self.denoiser
        self.compiled = False
        self.name = name or variant_name(cfg.space, cfg.residual)
        self.revision = str(revision)
        self.factor = int(cfg.factor)
        self.tile_size = int(tile_size)
        self.halo = int(halo)
        self.consistency = self._check_consistency(consistency)
        self.trajectory = self._check_trajectory(trajectory, cfg)
        self.student_dirs = {}
        self._students = {}
        if sampler is None:
            sampler = self.own_sampler
        if steps is None and self.trajectory is not None:
            steps = len(self.trajectory["timesteps"])
        self.sampler, self.steps = self._check_sampler(sampler, steps)
        self._check_sampler_fits(self.sampler, self.steps)
        self.start_timestep = self._check_start(start_timestep, cfg)
        self.spacing = _check_spacing("linear" if spacing is None else spacing, self.sampler)
        self.noise_label_map = self._check_label_map(noise_label_map, cfg)
        self.noise_level = self._check_noise_level(noise_level, cfg)
        # Whether `configure_sampler` was given the level: `superresolve` then keeps it for an HMI map too.
        self.noise_level_asked = False
        if compile:
            self.compile()

    @staticmethod
    def _check_sampler(sampler, steps):
        sampler = DEFAULT_SAMPLER if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {sampler!r}; available samplers are {', '.join(map(repr, SAMPLERS))}."
            )
        steps = DEFAULT_STEPS[sampler] if steps is None else steps
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or not 1 <= steps <= 1000:
            raise ValueError(f"steps must be an integer from 1 to 1000, got {steps!r}")
        return sampler, int(steps)

    @staticmethod
    def _check_consistency(consistency):
        if consistency is None:
            return None
        if not isinstance(consistency, dict) or any(consistency.get(k) != v for k, v in CONSISTENCY.items()):
            raise ValueError(
                f"this denoiser was consistency-distilled with {consistency!r}, but this version of the "
                f"package samples consistency models on {CONSISTENCY}; use the version that made it"
            )
        return dict(consistency)

    @staticmethod
    def _check_trajectory(trajectory, config):
        if trajectory is None:
            return None
        last = config["num_train_timesteps"] - 1
        try:
            ts = [int(t) for t in trajectory["timesteps"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"trajectory needs a list 'timesteps' ({err}), got {trajectory!r}") from err
        if not ts or ts[0] != last or np.any(np.diff(ts) >= 0) or ts[-1] < 0:
            raise ValueError(
                f"a trajectory-distilled denoiser's timesteps must fall strictly from {last} to 0 or "
                f"above, got {ts}"
            )
        return {**trajectory, "timesteps": ts}

    @property
    def own_sampler(self):
        """``"lcm"`` or ``"distilled"`` for a distilled denoiser (its only sampler), else `None`."""
        if self.consistency is not None:
            return "lcm"
        return "distilled" if self.trajectory is not None else None

    def _check_sampler_fits(self, sampler, steps):
        """Refuse a student's sampler for a denoiser not distilled for it, and any other for one that was."""
        own = self.own_sampler
        if own is not None and sampler != own:
            kind = "consistency" if own == "lcm" else "trajectory"
            raise ValueError(
                f"{self.name} ({self.revision}) is a {kind}-distilled denoiser: its sampler is {own!r}"
            )
        if own is None and sampler in STUDENT_SAMPLERS:
            kind = "consistency" if sampler == "lcm" else "trajectory"
            raise ValueError(
                f"the {sampler} sampler needs a {kind}-distilled denoiser, and {self.name} "
                f"({self.revision}) is not one and ships none; use "
                f"{', '.join(repr(s) for s in SAMPLERS if s not in STUDENT_SAMPLERS)}"
                + (f" or {', '.join(map(repr, self.student_dirs))}" if self.student_dirs else "")
            )
        if sampler == "distilled" and steps != len(self.trajectory["timesteps"]):
            raise ValueError(
                f"{self.name} ({self.revision}) was distilled for {len(self.trajectory['timesteps'])} steps "
                f"(timesteps {self.trajectory['timesteps']}), and its distilled sampler takes no other "
                f"number; got {steps}"
            )
        if sampler == "lcm" and steps > MAX_CONSISTENCY_STEPS:
            raise ValueError(
                f"the lcm sampler takes 1 to {MAX_CONSISTENCY_STEPS} steps (a consistency model is made "
                f"for a few), got {steps}"
            )

    @staticmethod
    def _check_start(start, config):
        last = config["num_train_timesteps"] - 1
        if start is None:
            return last
        if not isinstance(start, numbers.Integral) or isinstance(start, bool) or not 0 <= start <= last:
            raise ValueError(f"start_timestep must be an integer from 0 to {last}, got {start!r}")
        return int(start)

    @staticmethod
    def _check_label_map(label_map, config):
        if label_map is None or not config.get("noise_conditioning", False):
            return None
        try:
            output = np.asarray(label_map["output_gauss"], dtype=np.float64)
            label = np.asarray(label_map["label_gauss"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"noise_label_map needs lists 'output_gauss' and 'label_gauss' ({err})") from err
        if not (output.ndim == 1 and output.shape == label.shape and output.size >= 2) or not (
            np.all(np.isfinite(output)) and np.all(np.diff(output) > 0) and np.all(np.diff(label) > 0)
        ):
            raise ValueError(
                "noise_label_map's 'output_gauss' and 'label_gauss' must be increasing lists of the same "
                f"length (at least 2), got {label_map!r}"
            )
        return {
            "output_gauss": output.tolist(),
            "label_gauss": label.tolist(),
            "source": str(label_map.get("source", "")),
        }

    def _check_noise_level(self, level, config):
        if not config.get("noise_conditioning", False):
            return None
        if level is None:
            level = DEFAULT_NOISE_LEVEL
        level = level.to_value(u.G) if isinstance(level, u.Quantity) else level
        if not isinstance(level, numbers.Real) or isinstance(level, bool) or not 0 < level <= MAX_NOISE_LEVEL:
            raise ValueError(
                f"noise_level must be a field in G above 0 and at most {MAX_NOISE_LEVEL:g} G, got "
                f"{level!r}; HMI's quiet-Sun noise is 3-5 G (see "
                "sunpy_superres.metrics.physics.quiet_sun_noise)"
            )
        if self.noise_label_map is not None:
            low, high = self.noise_level_range.to_value(u.G)
            if not low <= level <= high:
                raise ValueError(
                    f"noise_level {level:g} G is outside what {self.name} ({self.revision}) makes with its "
                    f"sampler: {low:.2f}-{high:.2f} G of quiet-Sun noise (measured: "
                    f"{self.noise_label_map['source'] or 'see its manifest'}); choose a level inside"
                )
        return float(level)

    @property
    def noise_level_range(self):
        """The noise levels (G) this noise-conditioned model's sampler makes: ``[lowest, highest]``.

        `None` for an unconditioned model."""
        if not self.denoiser.config.get("noise_conditioning", False):
            return None
        if self.noise_label_map is None:
            return [0, MAX_NOISE_LEVEL] * u.G
        return [self.noise_label_map["output_gauss"][0], self.noise_label_map["output_gauss"][-1]] * u.G

    @property
    def noise_label(self):
        """The conditioning label (G) that gives `noise_level` (`None` for an unconditioned model)."""
        return None if self.noise_level is None else self._label(self.noise_level)

    def _label(self, level):
        """The conditioning label (G) that gives the output noise ``level`` (G)."""
        if self.noise_label_map is None:
            return level
        m = self.noise_label_map
        return float(np.interp(level, m["output_gauss"], m["label_gauss"]))

    def configure_sampler(
        self, *, steps=None, sampler=None, start_timestep=None, spacing=None, noise_level=None, scheduler=None
    ):
        """
        A copy of this model with another sampler.

        ``sampler`` (``scheduler`` is its old name) alone gives that sampler's default steps (1000
        for ``"ddpm"``, the paper's chain); ``steps`` alone keeps the current sampler; ``start_timestep`` sets where the
        reverse process starts (999: the whole chain); ``spacing`` how DPM-Solver spaces its steps
        (`SPACINGS`; another sampler than DPM-Solver falls back to ``"linear"``); ``noise_level``
        the target noise level of a noise-conditioned model (G; refused for other models). Networks
        are shared, not copied.
        """
        sampler = renamed_sampler(sampler, scheduler)
        if sampler in self.student_dirs and sampler != self.own_sampler:
            # The few-step sampler is another network: the student distilled from this model.
            return self._same_runtime(
                self.student(sampler).configure_sampler(
                    steps=steps, start_timestep=start_timestep, spacing=spacing, noise_level=noise_level
                )
            )
        if self.teacher is not None:
            if sampler is not None and sampler != self.own_sampler:
                # Any other sampler is the teacher's network; its own sampler comes with its own steps.
                return self._same_runtime(
                    self.teacher.configure_sampler(
                        sampler=None if sampler == self.teacher.sampler else sampler,
                        steps=steps,
                        start_timestep=start_timestep,
                        spacing=spacing,
                        noise_level=noise_level,
                    )
                )
            self._refuse_teacher_settings(steps, spacing, start_timestep)
        if (
            steps is None
            and sampler is None
            and start_timestep is None
            and spacing is None
            and noise_level is None
        ):
            return self
        if noise_level is not None and self.noise_level is None:
            raise ValueError(
                f"{self.name} ({self.revision}) is not conditioned on a noise level; leave noise_level out"
            )
        new = copy.copy(self)
        if noise_level is not None:
            new.noise_level = self._check_noise_level(noise_level, self.denoiser.config)
            new.noise_level_asked = True
        if steps is not None or sampler is not None:
            if steps is None and (sampler or self.sampler) == "distilled" and self.trajectory is not None:
                steps = len(self.trajectory["timesteps"])
            new.sampler, new.steps = self._check_sampler(sampler or self.sampler, steps)
            new._check_sampler_fits(new.sampler, new.steps)
        if start_timestep is not None:
            new.start_timestep = self._check_start(start_timestep, self.denoiser.config)
        if spacing is not None:
            new.spacing = _check_spacing(spacing, new.sampler)
        elif new.sampler not in _DPM_SOLVERS:
            new.spacing = "linear"
        return new

    def _same_runtime(self, other):
        """``other`` (this model's teacher or student) with this model's precision and compilation."""
        return other.configure_runtime(precision=self.precision, compile=self.compiled)

    def _refuse_teacher_settings(self, steps, spacing, start_timestep):
        """Refuse, on a student reached through its teacher, the settings only the teacher's samplers take."""
        own = self.trajectory["timesteps"] if self.trajectory is not None else None
        asked = [f"steps={steps}"] if steps is not None and own is not None and steps != len(own) else []
        asked += [f"spacing={spacing!r}"] if spacing not in (None, "linear") else []
        if start_timestep is not None and own is not None and start_timestep != own[0]:
            asked.append(f"start_timestep={start_timestep}")
        if asked:
            raise ValueError(
                f"{self.name}'s sampler here is {self.own_sampler!r}, its {self.steps}-step student "
                f"({self.revision}), which takes no {' or '.join(asked)}; those are for the samplers of "
                f"the model it was distilled from ({self.teacher.revision}): name one with them, e.g. "
                f"sampler={self.teacher.sampler!r} ({self.teacher.steps} steps, "
                f"{self.teacher.spacing} spacing, by default) or 'ddpm' (the paper's 1000-step chain)"
            )

    def student(self, sampler="lcm"):
        """
        The distilled student of this model that runs its ``sampler``, loaded once.

        Parameters
        ----------
        sampler : {"lcm", "distilled"}, optional
            The consistency-distilled student (``"lcm"``) or the trajectory-distilled one.

        Raises
        ------
        ValueError
            If this model ships no student for ``sampler``.
        """
        if sampler not in self.student_dirs:
            raise ValueError(
                f"{self.name} ({self.revision}) ships no student for the {sampler!r} sampler"
                + (f"; it ships {', '.join(map(repr, self.student_dirs))}" if self.student_dirs else "")
            )
        if sampler not in self._students:
            from .manifest import load_directory

            student = load_directory(
                self.student_dirs[sampler], device=self.device, kind=self.kind, cls=type(self)
            )
            student.teacher = self
            self._students[sampler] = student
        return self._students[sampler]

    @property
    def scheduler(self):
        """The old name of `sampler` (diffusers calls its samplers schedulers)."""
        return self.sampler

    @scheduler.setter
    def scheduler(self, value):
        self.sampler = value

    def configure_runtime(self, *, precision=None, compile=None):
        """
        A copy of this model with another precision or compilation setting.

        Parameters
        ----------
        precision : {None, "auto", "fp32", "bf16", "fp16"}, optional
            `None` keeps the current precision.
        compile : bool or None, optional
            `True` compiles the denoiser's forward, `False` runs it eagerly, `None` keeps it.

        Returns
        -------
        `DiffusionSuperResolution`
            ``self`` when nothing changes, else a copy sharing the networks.

        Raises
        ------
        ValueError
            If ``precision`` is unknown.
        """
        new_precision = self.precision if precision is None else resolve_precision(precision, self.device)
        new_compiled = self.compiled if compile is None else bool(compile)
        if (new_precision, new_compiled) == (self.precision, self.compiled):
            return self
        new = copy.copy(self)
        new.precision = new_precision
        if new_compiled != self.compiled:
            new._denoise, new.compiled = new.denoiser, False
            if new_compiled:
                new.compile()
        return new

    def compile(self):
        """
        Compile the denoiser's forward with ``torch.compile``, in place; returns the model.

        The sampler calls the denoiser once per step on tensors of one shape, so one graph per
        batch shape serves the whole chain. Compilation happens at the first call (a minute or so
        for the paper's U-Net); without a working ``torch.compile`` the denoiser runs eagerly, with
        a `RuntimeWarning`. Worth it on a GPU for long runs; on the CPU rarely.
        """
        if not self.compiled:
            self._denoise = CompiledForward(self.denoiser)
            self.compiled = True
        return self

    def memory_probe(self):
        """
        One eager sampler step: the same memory peak as any number of steps, at a fraction of the time.

        A trajectory-distilled student takes its own steps only (4): it is probed on those, eagerly.
        """
        probe = self if self.sampler == "distilled" else self.configure_sampler(steps=1)
        return probe.configure_runtime(compile=False)

    def provenance(self):
        """Sampler keys for the output header: ``SRSTEPS``, ``SRSCHED``, ``SRTSTART``, ``SRSPACE`` (and
        ``SRNOISE``, the target noise level in G, for a noise-conditioned model, and ``SRREGREV``, the
        regression's revision, for a ``residual_base="regression"`` one)."""
        keys = {
            "srsteps": self.network_evaluations,
            "srsched": self.sampler,
            "srtstart": self.start_timestep,
            "srspace": self.spacing,
        }
        if self.noise_level is not None:
            keys["srnoise"] = self.noise_level
        if self.regression is not None:
            keys["srregrev"] = self.regression_revision
        return keys

    @property
    def network_evaluations(self):
        """Denoiser calls per tile with the current sampler (one per step for all three samplers)."""
        if self.sampler == "ddpm":
            return min(self.steps, self.start_timestep + 1)
        return self.steps

    @property
    def _latent_factor(self):
        """Output pixels per point of the denoiser's grid along each axis: the autoencoder's factor, or 1."""
        return self.autoencoder.factor if self.denoiser.config.space == "latent" else 1

    def _lr_multiple(self):
        grid = self.denoiser.unet_multiple * self._latent_factor
        return max(1, -(-grid // self.factor))

    def _generators(self, seeds, n):
        # One generator per tile (rule 7 of docs/dev/design.rst): a tile's noise does not depend on its batch.
        if seeds is None:
            seeds = [None] * n
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for {n} tiles")
        gens = []
        for s in seeds:
            g = torch.Generator(device="cpu")
            if s is None:
                g.seed()
            else:
                g.manual_seed(int(s))
            gens.append(g)
        return gens

    @property
    def noise_grid(self):
        """
        Points of the initial noise per input pixel along each axis (the latent's, or the output's).

        `None` for a latent coarser than the input (an autoencoder that downsamples more than the
        model upsamples): its points do not fall on input pixels, so tiles cannot share them.
        """
        grid, rest = divmod(self.factor, self._latent_factor)
        return grid if grid and not rest else None

    def draw_noise(self, seed, tile_shape):
        """
        The initial noise that ``seed`` draws for a tile of ``tile_shape`` (input pixels), as the sampler does.

        ``(C, g * h', g * w')`` float32 with ``g`` = `noise_grid`: ``h' >= h`` and ``w' >= w`` when
        the network pads a tile at its far edges to its own multiple (the points beyond ``g * h``
        and ``g * w`` are the padding's). `predict_samples` given it as ``noise`` gives what
        ``seed`` gives. Used by `~sunpy_superres.tiling.SharedNoise`.
        """
        m = self._lr_multiple()
        h, w = (self.factor * (n + (-n) % m) // self._latent_factor for n in tile_shape)
        shape = (self.denoiser.config.target_channels, h, w)
        return initial_noise((1, *shape), self._generators([seed], 1), "cpu")[0].numpy()

    def _predict_samples(self, batch, seeds, repeats, signs=None, noise_levels=None, noise=None):
        labels = None
        if noise_levels is not None:
            labels = torch.tensor(
                [self._label(self._check_noise_level(v, self.denoiser.config)) for v in noise_levels]
            )
        with torch.inference_mode():
            y = self._forward_samples(
                self._tensor(batch), seeds=seeds, repeats=repeats, signs=signs, labels=labels, noise=noise
            )
        return y[:, 0].float().cpu().numpy()

    def _forward(self, x, *, seeds):
        return self._forward_samples(x, seeds=seeds, repeats=1)

    def _forward_samples(self, x, *, seeds, repeats, signs=None, labels=None, noise=None):
        # Each tile is padded, replicated and encoded once, then its `repeats` samples are sampled (below).
        _, _, h, w = x.shape
        m = self._lr_multiple()
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # The paper's input: each LR pixel replicated factor x factor times (section 4, Fig. 1).
        lr_up = F.interpolate(x, scale_factor=self.factor, mode="nearest").contiguous(
            memory_format=self._memory_format
        )
        # Reduced precision covers the networks only; the conditioning, the sampler state and its
        # update stay float32, so the random draws and the scheduler arithmetic match the CPU path.
        with autocast(self.device, self.precision):
            lr_up = regression_base(self.regression, lr_up, self.factor).float()
            label = self.noise_label if labels is None else labels.to(self.device)
            cond, base, _ = encode_pair(self.denoiser, self.autoencoder, lr_up, noise_level=label)
        cond, base = cond.float(), base.float()
        if repeats > 1:
            cond = cond.repeat_interleave(repeats, dim=0).contiguous(memory_format=self._memory_format)
            base = base.repeat_interleave(repeats, dim=0)
        b = cond.shape[0]
        gens = self._generators(seeds, b)
        # On a CPU a larger batch costs more per item (`CPU_BATCH_SIZE`; the default's 252x252 tile, 10
        # samples: 5.9 s each in one batch, 4.2 s alone), so there the sampler runs that many items at a
        # time after the shared regression and encoding; elsewhere all together. Each item draws from
        # its own generator, so the split leaves the result as it is.
        step = CPU_BATCH_SIZE if self.device.type == "cpu" else b
        y = torch.cat(
            [
                self._sample(
                    cond[i : i + step],
                    base[i : i + step],
                    gens[i : i + step],
                    None if signs is None else signs[i : i + step],
                    None if noise is None else noise[i : i + step],
                )
                for i in range(0, b, step)
            ]
        )
        return y[:, :, : self.factor * h, : self.factor * w].float()

    def _sample(self, cond, base, gens, signs, noise=None):
        """Samples of an encoded batch: the sampler from its noise (``gens``, one per item, or the
        ``noise`` given, `draw_noise`'s shape) to the image."""
        shape = (cond.shape[0], self.denoiser.config.target_channels, *cond.shape[2:])
        sched = make_scheduler(self.sampler, self.denoiser.config)
        sigma = set_sampler_timesteps(
            sched,
            self.sampler,
            self.steps,
            self.start_timestep,
            device=self.device,
            spacing=self.spacing,
            timesteps=self.trajectory["timesteps"] if self.sampler == "distilled" else None,
        )
        if noise is None:
            z = initial_noise(shape, gens, self.device)
        else:
            if tuple(noise.shape) != shape:
                raise ValueError(f"got initial noise of shape {tuple(noise.shape)} for {shape}")
            if self.sampler in STEP_NOISE_SAMPLERS:
                # Its later draws come from where the initial draw leaves each generator: make that draw.
                initial_noise(shape, gens, "cpu")
            z = torch.as_tensor(noise, dtype=torch.float32).to(self.device)
        if signs is not None:
            # Antithetic pairs: a sample of sign -1 starts from the negated noise of its seed.
            z = z * torch.tensor(signs, dtype=torch.float32, device=self.device).view(-1, 1, 1, 1)
        z = (z * sigma).contiguous(memory_format=self._memory_format)
        for t in sched.timesteps:
            with autocast(self.device, self.precision):
                out = self._denoise(sched.scale_model_input(z, t), cond, t)
            # float32 for the update: DDPM draws its noise in the dtype of `out`.
            z = sched.step(out.float(), t, z, generator=gens).prev_sample
        with autocast(self.device, self.precision):
            y = decode_sample(self.denoiser, self.autoencoder, z, base)
        return y

    # -- weights -------------------------------------------------------------------------------------

    def save_pretrained(self, path):
        """
        Write the model as a directory: ``denoiser/`` (and ``autoencoder/``, ``regression/``) in
        diffusers format (``config.json`` + safetensors), its students as ``lcm/`` and ``distilled/``
        (model directories of their own) when it has them, and a ``superres.json`` manifest with
        sha256 of every file (and the `default_sampler`, when it names one of the students).
        """
        path = Path(path)
        self.denoiser.save_pretrained(path / "denoiser", safe_serialization=True)
        if self.autoencoder is not None:
            self.autoencoder.save_pretrained(path / "autoencoder", safe_serialization=True)
        if self.regression is not None:
            self.regression.save_pretrained(path / "regression", safe_serialization=True)
        info = {
            "kind": self.kind,
            "name": self.name,
            "revision": self.revision,
            "inference": {
                "scheduler": self.sampler,  # the manifest's key (format version 1)
                "steps": self.steps,
                "start_timestep": self.start_timestep,
                "spacing": self.spacing,
                "tile_size": self.tile_size,
                "halo": self.halo,
            },
        }
        if self.noise_level is not None:
            info["inference"]["noise_level"] = self.noise_level
        if self.noise_label_map is not None:
            info["inference"]["noise_label_map"] = self.noise_label_map
        if self.consistency is not None:
            info["consistency"] = self.consistency
        if self.trajectory is not None:
            info["trajectory"] = self.trajectory
        if self.regression is not None:
            info["regression"] = {"revision": self.regression_revision}
        for sampler, directory in self.student_dirs.items():
            # A student is a model directory of its own, copied whole: its manifest comes with it.
            shutil.copytree(directory, path / sampler)
            info.setdefault("students", {})[sampler] = sampler
        if self.default_sampler is not None and self.default_sampler in self.student_dirs:
            info["default_sampler"] = self.default_sampler
        if self.uncertainty_calibration is not None:
            info["uncertainty_calibration"] = self.uncertainty_calibration.to_dict()
        write_manifest(path, info)
        return path

    @classmethod
    def from_verified(cls, path, manifest, *, device="auto", revision=None):
        """Build the model from a directory whose files were checked (see `from_pretrained`)."""
        denoiser = load_network(ConditionalDenoiser, path / "denoiser")
        autoencoder = None
        if denoiser.config.space == "latent":
            autoencoder = load_latent_space(path / "autoencoder")
        regression = None
        if denoiser.config.get("residual_base", "lr") == "regression":
            regression = load_regression(path / "regression")
        inference = manifest.get("inference", {})
        model = cls(
            denoiser,
            autoencoder,
            name=manifest.get("name"),
            revision=revision or manifest.get("revision", "untrained"),
            sampler=inference.get("scheduler"),
            steps=inference.get("steps"),
            start_timestep=inference.get("start_timestep"),
            spacing=inference.get("spacing"),
            tile_size=inference.get("tile_size", 256),
            halo=inference.get("halo", 8),
            device=device,
            noise_level=inference.get("noise_level"),
            noise_label_map=inference.get("noise_label_map"),
            consistency=manifest.get("consistency"),
            trajectory=manifest.get("trajectory"),
            regression=regression,
            regression_revision=manifest.get("regression", {}).get("revision"),
        )
        if "uncertainty_calibration" in manifest:
            from ..conformal import StdCalibration

            model.uncertainty_calibration = StdCalibration.from_dict(manifest["uncertainty_calibration"])
        model.student_dirs = {
            sampler: path / sub
            for sampler, sub in manifest.get("students", {}).items()
            if sampler in STUDENT_SAMPLERS
        }
        default = manifest.get("default_sampler")
        if default is not None and default not in model.student_dirs:
            raise ValueError(
                f"{path}: its manifest's default_sampler {default!r} is none of its students' "
                f"({', '.join(map(repr, model.student_dirs)) or 'it ships none'}); remove the key or "
                "attach the student (tools/attach_student.py)"
            )
        model.default_sampler = default
        return model
