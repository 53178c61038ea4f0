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

import dataclasses

import torch

from ...models.diffusion import CONSISTENCY, DEFAULT_STEPS, DiffusionSuperResolution, consistency_loss
from .registry import register
from .student import StudentTask

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
class ConsistencyTask(StudentTask):
    """A student denoiser distilled from a frozen teacher with the consistency loss."""

    config_class = ConsistencyConfig

    def training_module(self, net):
        """``net`` itself, kept to evaluate it with its EMA weights: the target network."""
        self.student = self.weights.unwrap(net)
        return net

    def _target(self, x, cond, t):
        # The student's architecture with the loop's EMA weights (decay ema_decay; 0.95 in Latent
        # Consistency Models), evaluated without copying them.
        return torch.func.functional_call(self.student, self.ema, (x, cond, t))

    def loss(self, module, batch, generator):
        """`~sunpy_superres.models.diffusion.consistency_loss`, timesteps and noise from ``generator``."""
        return consistency_loss(
            module,
            *self.frozen,
            self.base_image(batch),
            batch.hr,
            generator,
            noise_level=batch.noise_level,
            huber_c=self.cfg.model.consistency.huber_c,
            target_net=self._target,
        )

    @classmethod
    def student_model(cls, cfg, network, teacher, revision):
        """The teacher's latent space, tiling and noise level, the ``"lcm"`` sampler."""
        return DiffusionSuperResolution(
            network,
            revision=revision,
            sampler="lcm",
            steps=cfg.model.consistency.steps,
            consistency={**CONSISTENCY, "teacher": teacher.revision},
            **cls._teacher_settings(teacher),
        )
