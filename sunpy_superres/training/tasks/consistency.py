"""
Consistency distillation of a trained diffusion model into a few-step sampler (issue 18).

``[model.consistency] teacher`` names the trained diffusion model (registry name, model directory or
pinned ``hf://`` reference). The student starts as a copy of the teacher's denoiser and learns, with
`~sunpy_superres.models.diffusion.consistency_loss`, to map any point of a teacher trajectory to its
clean end (Luo et al. 2023, "Latent Consistency Models"), against a target network that is its
own EMA (the run's ``ema_decay``, 0.95 in that paper; the export is the EMA too); it then samples
in 1 to 8 steps with the
``"lcm"`` sampler. The data, latent space and noise labels are the teacher's; the export is a model
directory like the teacher's, with the student as its denoiser and ``"lcm"`` as its sampler.
"""

import copy
import dataclasses

import torch

from ...models.diffusion import (
    CONSISTENCY,
    DEFAULT_STEPS,
    ConditionalDenoiser,
    DiffusionSuperResolution,
    consistency_loss,
    make_scheduler,
)
from ..common import finish_model_directory, load_reference
from .base import Task
from .registry import register

__all__ = ["ConsistencyConfig", "ConsistencyTask"]


@dataclasses.dataclass
class ConsistencyConfig:
    """``[model.consistency]``: the teacher and the distance of the loss."""

    #: The trained diffusion model to distil: registry name, model directory or pinned ``hf://`` reference.
    teacher: str = ""
    #: ``c`` of the pseudo-Huber distance, in units of the (unit-variance) target.
    huber_c: float = 1e-3
    #: Steps of the exported model's ``"lcm"`` sampler.
    steps: int = DEFAULT_STEPS["lcm"]


@register("consistency")
class ConsistencyTask(Task):
    """A student denoiser distilled from a frozen teacher with the consistency loss."""

    config_class = ConsistencyConfig
    network_class = ConditionalDenoiser
    model_class = DiffusionSuperResolution

    @classmethod
    def check_config(cls, model_config):
        """Refuse a distillation without a teacher."""
        if not model_config.consistency.teacher:
            raise ValueError(
                '[model] kind = "consistency" distils a trained diffusion model: set [model.consistency] '
                'teacher to its registry name, directory or hf:// reference, e.g. "ldm-res"'
            )

    @property
    def noise_labels(self):
        """The crops carry noise labels when the teacher is conditioned on them."""
        return bool(self.teacher.denoiser.config.get("noise_conditioning", False))

    def __init__(self, cfg, accelerator, *, progress=True):
        # The teacher is needed before the data (its noise conditioning decides the crops' labels).
        self.check_config(cfg.model)
        ref, teacher = load_reference(cfg.model.consistency.teacher)
        if not isinstance(teacher, DiffusionSuperResolution) or teacher.consistency is not None:
            raise ValueError(
                f"[model.consistency] teacher {ref!r} is not a diffusion model to distil (a "
                "consistency-distilled one is already a student)"
            )
        self.teacher = teacher
        super().__init__(cfg, accelerator, progress=progress)

    def setup(self, progress):
        """The teacher's denoiser and latent space, frozen on the training device."""
        self.teacher_net = self.teacher.denoiser.float().to(self.device).requires_grad_(False).eval()
        latent = self.teacher.autoencoder
        self.autoencoder = None if latent is None else latent.float().to(self.device).requires_grad_(False)
        self.alphas_cumprod = make_scheduler("ddpm", self.teacher_net.config).alphas_cumprod.to(self.device)

    def build_network(self):
        """The student: a copy of the teacher's denoiser."""
        return copy.deepcopy(self.teacher_net).requires_grad_(True).train()

    def training_module(self, net):
        """``net`` itself, kept to evaluate it with its EMA weights: the target network."""
        self.student = self.weights.unwrap(net)
        return net

    def _target(self, x, cond, t):
        # The student's architecture with the loop's EMA weights (decay ema_decay; 0.95 in Latent
        # Consistency Models), evaluated without copying them.
        return torch.func.functional_call(self.student, self.ema, (x, cond, t))

    def batch(self, step):
        """HR crops, with noise levels for a noise-conditioned teacher."""
        return self.data(step, with_noise=self.noise_labels)

    def loss(self, module, batch, generator):
        """`~sunpy_superres.models.diffusion.consistency_loss`, timesteps and noise from ``generator``."""
        return consistency_loss(
            module,
            self.teacher_net,
            self.teacher_net.config,
            self.autoencoder,
            self.alphas_cumprod,
            batch.lr_up,
            batch.hr,
            generator,
            noise_level=batch.noise_level,
            huber_c=self.cfg.model.consistency.huber_c,
            target_net=self._target,
        )

    @classmethod
    def is_standalone(cls, cfg):
        """Yes: the checkpoint holds the student, and the config names the teacher it needs."""
        return True

    @classmethod
    def standalone_model(cls, cfg, network, revision):
        """The student of ``network`` with its teacher's latent space and settings."""
        _, teacher = load_reference(cfg.model.consistency.teacher)
        return _student_model(cfg, network, teacher, revision)

    def write_model(self, model, final, step):
        """The teacher's model with the student as its denoiser and the ``"lcm"`` sampler."""
        _student_model(self.cfg, model, self.teacher, self.revision(step)).save_pretrained(final)
        # A registry name may mean other weights later: record which ones were the teacher.
        finish_model_directory(final, self.cfg, step, teacher_revision=self.teacher.revision)


def _student_model(cfg, network, teacher, revision):
    """The model of a student denoiser: the teacher's latent space, tiling and noise level, "lcm" sampler."""
    latent = None if teacher.autoencoder is None else copy.deepcopy(teacher.autoencoder).cpu().float()
    return DiffusionSuperResolution(
        network,
        latent,
        name=teacher.name,
        revision=revision,
        sampler="lcm",
        steps=cfg.model.consistency.steps,
        tile_size=teacher.tile_size,
        halo=teacher.halo,
        device="cpu",
        noise_level=teacher.noise_level,
        consistency={**CONSISTENCY, "teacher": teacher.revision},
    )
