"""
What the two distillation kinds share: a student denoiser that starts as a copy of a frozen teacher's.

``[model] kind = "consistency"`` (`sunpy_superres.training.tasks.consistency`) and ``"trajectory"``
(`sunpy_superres.training.tasks.trajectory`) each name the trained diffusion model to distil in
``[model.<kind>] teacher``; the data, latent space and noise labels are the teacher's, and the export
is a model directory like the teacher's with the student as its denoiser and the kind's few-step
sampler as its own.
"""

import copy

from ...models.diffusion import ConditionalDenoiser, DiffusionSuperResolution, make_scheduler, regression_base
from ..common import FACTOR, finish_model_directory, load_reference
from .base import Task

__all__ = ["StudentTask"]


class StudentTask(Task):
    """A student denoiser trained against a frozen teacher; subclasses give the loss and the export."""

    network_class = ConditionalDenoiser
    model_class = DiffusionSuperResolution

    @classmethod
    def section(cls, model_config):
        """The kind's ``[model.<kind>]`` table."""
        return getattr(model_config, cls.kind)

    @classmethod
    def check_config(cls, model_config):
        """Refuse a distillation without a teacher."""
        if not cls.section(model_config).teacher:
            raise ValueError(
                f'[model] kind = "{cls.kind}" distils a trained diffusion model: set [model.{cls.kind}] '
                'teacher to its registry name, directory or hf:// reference, e.g. "ldm-res"'
            )

    @classmethod
    def load_teacher(cls, cfg):
        """The teacher model of ``cfg``, refused unless it is a diffusion model that is no student itself."""
        ref, teacher = load_reference(cls.section(cfg.model).teacher)
        if not isinstance(teacher, DiffusionSuperResolution) or teacher.own_sampler is not None:
            raise ValueError(
                f"[model.{cls.kind}] teacher {ref!r} is not a diffusion model to distil (a "
                "distilled one is already a student)"
            )
        return teacher

    @property
    def noise_labels(self):
        """The crops carry noise labels when the teacher is conditioned on them."""
        return bool(self.teacher.denoiser.config.get("noise_conditioning", False))

    def __init__(self, cfg, accelerator, *, progress=True):
        # The teacher is needed before the data (its noise conditioning decides the crops' labels).
        self.check_config(cfg.model)
        self.teacher = self.load_teacher(cfg)
        super().__init__(cfg, accelerator, progress=progress)

    def setup(self, progress):
        """The teacher's denoiser and latent space, frozen on the training device."""
        self.teacher_net = self.teacher.denoiser.float().to(self.device).requires_grad_(False).eval()
        latent = self.teacher.autoencoder
        self.autoencoder = None if latent is None else latent.float().to(self.device).requires_grad_(False)
        self.alphas_cumprod = make_scheduler("ddpm", self.teacher_net.config).alphas_cumprod.to(self.device)
        regression = self.teacher.regression
        self.regression = None if regression is None else regression.float().to(self.device)
        #: What both distillation losses take after the student: teacher, its config, latent space, alpha-bar.
        self.frozen = (self.teacher_net, self.teacher_net.config, self.autoencoder, self.alphas_cumprod)

    def build_network(self):
        """The student: a copy of the teacher's denoiser."""
        return copy.deepcopy(self.teacher_net).requires_grad_(True).train()

    def batch(self, step):
        """HR crops, with noise levels for a noise-conditioned teacher."""
        return self.data(step, with_noise=self.noise_labels)

    def base_image(self, batch):
        """What the teacher's residual is taken to: the replicated input or its regression's base."""
        return regression_base(self.regression, batch.lr_up, FACTOR)

    @classmethod
    def is_standalone(cls, cfg):
        """Yes: the checkpoint holds the student, and the config names the teacher it needs."""
        return True

    @classmethod
    def standalone_model(cls, cfg, network, revision):
        """The student of ``network`` with its teacher's latent space and settings."""
        return cls.student_model(cfg, network, cls.load_teacher(cfg), revision)

    def write_model(self, model, final, step):
        """The teacher's model with the student as its denoiser and the kind's sampler."""
        self.student_model(self.cfg, model, self.teacher, self.revision(step)).save_pretrained(final)
        finish_model_directory(final, self.cfg, step, **self.provenance())

    def provenance(self):
        """The teacher's revision."""
        return {"teacher_revision": self.teacher.revision}

    @classmethod
    def student_model(cls, cfg, network, teacher, revision):
        """The `DiffusionSuperResolution` of a student ``network`` distilled from ``teacher``."""
        raise NotImplementedError

    @staticmethod
    def _teacher_settings(teacher):
        """The keyword arguments of a student model that are its teacher's: latent space, tiles, noise."""
        latent = None if teacher.autoencoder is None else copy.deepcopy(teacher.autoencoder).cpu().float()
        return dict(
            autoencoder=latent,
            name=teacher.name,
            tile_size=teacher.tile_size,
            halo=teacher.halo,
            device="cpu",
            noise_level=teacher.noise_level,
            regression=None
            if teacher.regression is None
            else copy.deepcopy(teacher.regression).cpu().float(),
            regression_revision=teacher.regression_revision,
        )
