"""
Trajectory distillation of a trained diffusion model into a few-step sampler (issue 18).

``[model.trajectory] teacher`` names the trained diffusion model (registry name, model directory or
pinned ``hf://`` reference); its own sampler, which must be deterministic (DPM-Solver++ or DDIM), is
the one distilled. The student starts as a copy of the teacher's denoiser and learns, with
`~sunpy_superres.models.diffusion.trajectory_loss`, to take in one DDIM step what the teacher's
sampler does between two of the student's ``timesteps`` (progressive distillation's objective,
Salimans & Ho 2022, for a chosen subset of the teacher's steps rather than their halves), and, with
``sample_weight``, to end its own run of steps on the teacher's sample (and, with
``spectral_weight``, with the teacher's power at the scales it adds; with ``flux_weight``, with the
truth's share of flux that cancels inside an input pixel). Unlike a
consistency model it keeps the sampler's deterministic map from noise to sample, so the sample's
texture and the meaning of the noise label carry over (the student's own noise-label map and
uncertainty calibration, measured again, come out close to the teacher's). The export
is a model directory like the teacher's, with the student as its denoiser and ``"distilled"`` as its
sampler, on those timesteps.
"""

import dataclasses

import torch

from ...models.diffusion import (
    DETERMINISTIC_SAMPLERS,
    TRAJECTORY_WEIGHTINGS,
    DiffusionSuperResolution,
    sampler_schedule,
    trajectory_loss,
)
from ..common import load_reference
from .registry import register
from .student import StudentTask

__all__ = ["TrajectoryConfig", "TrajectoryTask", "student_timesteps"]


@dataclasses.dataclass
class TrajectoryConfig:
    """``[model.trajectory]``: the teacher and the student's timesteps."""

    #: The trained diffusion model to distil: registry name, model directory or pinned ``hf://`` reference.
    teacher: str = ""
    #: Timesteps of the student's steps, among the teacher sampler's and from its first; empty: ``steps``
    #: of them, evenly spread over the teacher's schedule (`student_timesteps`).
    timesteps: list = dataclasses.field(default_factory=list)
    #: Number of student steps when ``timesteps`` is empty.
    steps: int = 4
    #: ``[low, high]``, G: the noise labels of a noise-conditioned teacher, drawn uniformly per crop
    #: (the truth is not needed, so the label need not be the crop's own noise). Empty: the range of
    #: the teacher's noise-label map, the labels its ``noise_level`` can ask for (the crops' own
    #: levels, if it has no map).
    noise_labels: list = dataclasses.field(default_factory=list)
    #: The squared error of each step in v (``"snr+1"``) or of its target estimate, every step alike
    #: (``"x0"``; see `~sunpy_superres.models.diffusion.trajectory_loss`).
    weighting: str = "snr+1"
    #: Weight of the squared error of the student's own sample (its steps from its own states) against
    #: the teacher's sample from the same noise, added to the per-step objective (0: none; see
    #: `~sunpy_superres.models.diffusion.trajectory_loss`).
    sample_weight: float = 0.0
    #: Weight of the squared log ratio of the student's sample's radial power spectrum to the teacher's
    #: over the scales the super-resolution adds (0: none; see
    #: `~sunpy_superres.models.diffusion.trajectory_loss`).
    spectral_weight: float = 0.0
    #: Weight of the squared error of the flux that cancels inside the input's pixels in the student's
    #: sample against the truth's, per range of field (0: none; see
    #: `~sunpy_superres.models.diffusion.cancellation_loss`). With it every crop is labelled with its
    #: own noise level, the truth's, and ``noise_labels`` must be empty.
    flux_weight: float = 0.0
    #: A trained student of the same teacher (model directory) to continue from; empty: a copy of
    #: the teacher's denoiser.
    init_from: str = ""


def student_timesteps(teacher_schedule, steps):
    """
    ``steps`` of a teacher sampler's timesteps, from its first, evenly spread over its steps.

    Parameters
    ----------
    teacher_schedule : list of int
        The teacher sampler's timesteps, decreasing.
    steps : int
        From 1 to ``len(teacher_schedule)``.

    Returns
    -------
    list of int
        The timesteps at which the student's steps start (teacher step ``floor(i n / steps)`` for
        the ``i``-th of them, ``n`` the teacher's number of steps).
    """
    n = len(teacher_schedule)
    if not 1 <= steps <= n:
        raise ValueError(f"[model.trajectory] steps must be from 1 to the teacher's {n}, got {steps}")
    return [int(teacher_schedule[i * n // steps]) for i in range(steps)]


@register("trajectory")
class TrajectoryTask(StudentTask):
    """A student denoiser that takes one DDIM step for several of its teacher sampler's steps."""

    config_class = TrajectoryConfig

    @classmethod
    def teacher_sampler(cls, teacher):
        """The teacher's sampler settings, refused if it is stochastic."""
        if teacher.sampler not in DETERMINISTIC_SAMPLERS:
            raise ValueError(
                f"[model.trajectory] teacher {teacher.name} ({teacher.revision}) samples with "
                f"{teacher.sampler!r}, which is stochastic: a trajectory is distilled from "
                f"{' or '.join(map(repr, DETERMINISTIC_SAMPLERS))}"
            )
        return {
            "name": teacher.sampler,
            "steps": teacher.steps,
            "start_timestep": teacher.start_timestep,
            "spacing": teacher.spacing,
        }

    @classmethod
    def timesteps(cls, cfg, teacher):
        """The student's timesteps: the config's, checked against the teacher's schedule, or spread over it."""
        sched, _ = sampler_schedule(cls.teacher_sampler(teacher), teacher.denoiser.config)
        schedule = [int(t) for t in sched.timesteps]
        chosen = [int(t) for t in cls.section(cfg.model).timesteps]
        if not chosen:
            return student_timesteps(schedule, cls.section(cfg.model).steps)
        if (
            chosen[0] != schedule[0]
            or any(t not in schedule for t in chosen)
            or chosen != sorted(chosen)[::-1]
        ):
            raise ValueError(
                f"[model.trajectory] timesteps {chosen} must be among the teacher sampler's {schedule}, "
                "decreasing and from its first"
            )
        return chosen

    def setup(self, progress):
        """The frozen teacher, its sampler, the student's timesteps and the range of noise labels."""
        super().setup(progress)
        self.sampler = self.teacher_sampler(self.teacher)
        table = self.section(self.cfg.model)
        weighting = table.weighting
        if weighting not in TRAJECTORY_WEIGHTINGS:
            raise ValueError(
                f"[model.trajectory] weighting must be one of {', '.join(map(repr, TRAJECTORY_WEIGHTINGS))}, "
                f"got {weighting!r}"
            )
        for weight in ("sample_weight", "spectral_weight", "flux_weight"):
            value = getattr(table, weight)
            if not value >= 0:
                raise ValueError(f"[model.trajectory] {weight} must be 0 or more, got {value}")
        self.student_steps = self.timesteps(self.cfg, self.teacher)
        self.label_range = None
        if table.flux_weight and table.noise_labels:
            raise ValueError(
                "[model.trajectory] flux_weight compares the student's sample with the truth, so each "
                "crop takes its own noise level: leave noise_labels empty"
            )
        if self.noise_labels and not table.flux_weight:
            chosen = [float(v) for v in table.noise_labels]
            label_map = self.teacher.noise_label_map
            if chosen:
                if len(chosen) != 2 or not 0 < chosen[0] <= chosen[1]:
                    raise ValueError(
                        f"[model.trajectory] noise_labels must be [low, high] in G, got {chosen}"
                    )
                self.label_range = tuple(chosen)
            elif label_map is not None:
                self.label_range = (label_map["label_gauss"][0], label_map["label_gauss"][-1])

    def _labels(self, batch, generator):
        if self.label_range is None:
            return batch.noise_level
        low, high = self.label_range
        draw = torch.rand(batch.hr.shape[0], generator=generator, dtype=torch.float64)
        return (low + (high - low) * draw).to(batch.hr.device, torch.float32)

    def loss(self, module, batch, generator):
        """`~sunpy_superres.models.diffusion.trajectory_loss`, labels and noise from ``generator``."""
        return trajectory_loss(
            module,
            *self.frozen,
            self.base_image(batch),
            generator,
            sampler=self.sampler,
            timesteps=self.student_steps,
            noise_level=self._labels(batch, generator),
            weighting=self.section(self.cfg.model).weighting,
            sample_weight=self.section(self.cfg.model).sample_weight,
            spectral_weight=self.section(self.cfg.model).spectral_weight,
            factor=self.teacher.factor,
            hr=batch.hr,
            flux_weight=self.section(self.cfg.model).flux_weight,
        )

    def build_network(self):
        """A copy of the teacher's denoiser, or of the ``init_from`` student's."""
        net = super().build_network()
        ref = self.section(self.cfg.model).init_from
        if ref:
            self.init = self.load_init(ref, self.teacher, self.student_steps)
            net.load_state_dict(self.init.denoiser.float().state_dict())
        return net

    @staticmethod
    def load_init(ref, teacher, timesteps):
        """The ``init_from`` student, refused unless it was distilled from ``teacher`` for ``timesteps``."""
        ref, init = load_reference(ref)
        trajectory = getattr(init, "trajectory", None)
        if trajectory is None:
            raise ValueError(f"[model.trajectory] init_from {ref!r} is not a trajectory-distilled student")
        if trajectory.get("teacher") != teacher.revision or list(trajectory["timesteps"]) != list(timesteps):
            raise ValueError(
                f"[model.trajectory] init_from {ref!r} was distilled from {trajectory.get('teacher')!r} for "
                f"timesteps {trajectory['timesteps']}; this run distils {teacher.revision!r} for {timesteps}"
            )
        return init

    def provenance(self):
        """The teacher's revision, and the student's the run continued, if any."""
        out = super().provenance()
        if getattr(self, "init", None) is not None:
            out["init_from_revision"] = self.init.revision
        return out

    @classmethod
    def student_model(cls, cfg, network, teacher, revision):
        """The teacher's latent space, tiling and noise level, the ``"distilled"`` sampler."""
        timesteps = cls.timesteps(cfg, teacher)
        return DiffusionSuperResolution(
            network,
            revision=revision,
            sampler="distilled",
            steps=len(timesteps),
            trajectory={
                "timesteps": timesteps,
                "teacher": teacher.revision,
                "teacher_sampler": cls.teacher_sampler(teacher),
            },
            **cls._teacher_settings(teacher),
        )
