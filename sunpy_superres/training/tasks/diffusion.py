"""
The diffusion variants (`sunpy_superres.models.diffusion`): ldm-res, ldm, ddpm-res and ddpm, trained
with the diffusion loss.

``[model.diffusion]`` holds the parameters of `~sunpy_superres.models.diffusion.ConditionalDenoiser`
with its defaults, but the channel counts (from the latent space) and the factor (4); the scales
``target_scale`` and ``cond_scale`` default to 0: measured on training crops. Further keys:

``latent_space``
    Of a latent model: ``"autoencoder"`` (a learnt `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder`,
    the paper's choice) or ``"space-to-depth"`` (`~sunpy_superres.models.spacetodepth.SpaceToDepth`,
    invertible and training-free, ``[model.autoencoder] factor`` its block side; no autoencoder stage).
``autoencoder_dir``
    Trained autoencoder directory of a learnt latent; empty: train one first under
    ``output_dir/autoencoder`` for ``autoencoder_steps`` steps, from ``[model.autoencoder]``.
``init_from``
    Continue training the denoiser of a trained latent or pixel model (registry name, model
    directory or pinned ``hf://`` reference), its autoencoder frozen as it is; the architecture and
    scales come from that model. With ``noise_conditioning``, a model without it gains the channel
    with zero weights, so training starts from that model's behaviour. With ``residual_base =
    "regression"``, a model whose residual is to the input takes it to the regression from then on,
    its ``target_scale`` measured anew (the config's, when not 0). Empty: a new denoiser.
``regression``
    With ``residual_base = "regression"``: the trained deterministic model (registry name, model
    directory or ``hf://`` reference of an ``enhance`` or ``progressive`` model) whose back-projected
    output the residual is taken to (`~sunpy_superres.models.diffusion.regression_base`); frozen,
    and saved with the model. Empty: the ``init_from`` model's regression.

A fine-tune (``[finetune]``) puts LoRA on the base denoiser (`~sunpy_superres.training.finetune.LoraFinetune`).
"""

import copy
import os
from pathlib import Path

import torch

from ...models.autoencoder import MagnetogramAutoencoder
from ...models.diffusion import (
    ConditionalDenoiser,
    DiffusionSuperResolution,
    add_noise_conditioning,
    diffusion_loss,
    estimate_scales,
    make_scheduler,
    regression_base,
)
from ...models.enhance import CNNSuperResolution
from ...models.spacetodepth import SpaceToDepth
from ..common import FACTOR, crop_dataset, finish_model_directory, load_reference
from ..data import degrade
from ..finetune import LoraFinetune
from .base import Task, config_kwargs, signature_config
from .registry import register

__all__ = ["DiffusionConfig", "DiffusionTask", "LATENT_SPACES"]

#: Latent spaces of a latent diffusion model (``[model.diffusion] latent_space``).
LATENT_SPACES = ("autoencoder", "space-to-depth")

DiffusionConfig = signature_config(
    "DiffusionConfig",
    ConditionalDenoiser,
    exclude=("target_channels", "cond_channels", "factor"),
    defaults={"target_scale": 0.0, "cond_scale": 0.0},
    extra=[("latent_space", "autoencoder"), ("autoencoder_dir", ""), ("init_from", ""), ("regression", "")],
    doc=(
        "``[model.diffusion]``: the parameters of `~sunpy_superres.models.diffusion.ConditionalDenoiser` "
        "but the channels and the factor (scales 0: measured), and ``latent_space``, ``autoencoder_dir``, "
        "``init_from``, ``regression`` (see `sunpy_superres.training.tasks.diffusion`)."
    ),
)

#: Crops of another seed than the training steps', for measuring the scales.
_SCALE_SEED_OFFSET = 1_000_003

# The keys of [model] itself that were the denoiser's, before each kind had a table.
_FLAT_KEYS = (
    "space residual prediction_type beta_schedule block_out_channels layers_per_block attention_levels "
    "attention_head_dim norm_num_groups target_scale cond_scale latent_space init_from noise_conditioning"
).split()


@register("diffusion")
class DiffusionTask(Task):
    """A diffusion variant: the diffusion loss of its denoiser in a frozen latent (or pixel) space."""

    config_class = DiffusionConfig
    network_class = ConditionalDenoiser
    model_class = DiffusionSuperResolution
    finetune_method = LoraFinetune
    # All but "autoencoder" (the trained autoencoder's directory) kept their names in the table.
    legacy_keys = {**{k: k for k in _FLAT_KEYS}, "autoencoder": "autoencoder_dir"}

    @classmethod
    def config_tables(cls):
        """``[model.diffusion]`` and ``[model.autoencoder]`` (its latent space)."""
        return ("diffusion", "autoencoder")

    @classmethod
    def check_config(cls, model_config):
        """Refuse an unknown latent space."""
        latent_space = model_config.diffusion.latent_space
        if latent_space not in LATENT_SPACES:
            raise ValueError(
                f"[model.diffusion] latent_space must be one of {', '.join(map(repr, LATENT_SPACES))}, "
                f"got {latent_space!r}"
            )
        d = model_config.diffusion
        if d.regression and d.residual_base != "regression":
            raise ValueError(
                f"[model.diffusion] regression = {d.regression!r} is the base of a residual taken to a "
                'regression: set residual_base = "regression" as well, or leave regression out'
            )
        if d.residual_base == "regression" and not (d.regression or d.init_from):
            raise ValueError(
                '[model.diffusion] residual_base = "regression" takes the residual to a trained model\'s '
                'output: set regression to one, e.g. "progressive"'
            )

    @classmethod
    def is_standalone(cls, cfg):
        """A pixel or space-to-depth model (a learnt latent is not in the checkpoint)."""
        d = cfg.model.diffusion
        return d.space == "pixel" or d.latent_space == "space-to-depth"

    @classmethod
    def standalone_model(cls, cfg, network, revision):
        """The diffusion model of ``network`` in pixel space or its space-to-depth latent."""
        d = cfg.model.diffusion
        latent = None if d.space == "pixel" else SpaceToDepth(factor=cfg.model.autoencoder.factor)
        regression = (None, None)
        if network.config.get("residual_base", "lr") == "regression":
            regression = _load_regression(d, _load_init(d) if d.init_from else None)
        return cls._model(cfg, network, latent, revision, *regression)

    @staticmethod
    def _model(cfg, denoiser, latent, revision, regression=None, regression_revision=None):
        m = cfg.model
        return DiffusionSuperResolution(
            denoiser, latent, revision=revision, tile_size=m.tile_size, halo=m.halo, device="cpu",
            regression=regression, regression_revision=regression_revision,
        )  # fmt: skip

    @classmethod
    def stages(cls, cfg):
        """A latent model without a trained autoencoder (``autoencoder_dir``) trains one first."""
        d = cfg.model.diffusion
        learnt = d.space == "latent" and d.latent_space == "autoencoder"
        if cfg.finetune.enabled or d.init_from or not learnt or d.autoencoder_dir:
            return []
        stage = _autoencoder_stage(cfg)
        return [] if (Path(stage.output_dir) / "model" / "config.json").is_file() else [stage]

    @property
    def noise_labels(self):
        """A noise-conditioned denoiser learns from labelled (and noise-augmented) crops."""
        return self.cfg.model.diffusion.noise_conditioning

    def setup(self, progress):
        """The frozen latent space: the fine-tuning or ``init_from`` base's, space-to-depth, or trained."""
        d = self.cfg.model.diffusion
        self.init = None
        if self.weights.base is not None:
            autoencoder = self.weights.base.autoencoder
        elif d.init_from:
            self.init = _load_init(d)
            autoencoder = self.init.autoencoder
        elif d.space == "latent" and d.latent_space == "space-to-depth":
            autoencoder = SpaceToDepth(factor=self.cfg.model.autoencoder.factor)
        elif d.space == "latent":
            path = (
                Path(os.path.expanduser(d.autoencoder_dir)) if d.autoencoder_dir else _stage_model(self.cfg)
            )
            autoencoder = MagnetogramAutoencoder.from_pretrained(path, use_safetensors=True)
        else:
            autoencoder = None
        if autoencoder is not None:
            autoencoder = autoencoder.to(self.device).requires_grad_(False).eval()
        self.autoencoder = autoencoder
        regression = self.regression_revision = None
        if self.weights.base is not None:
            regression = self.weights.base.regression
            self.regression_revision = self.weights.base.regression_revision
        elif d.residual_base == "regression":
            regression, self.regression_revision = _load_regression(d, self.init)
        self.regression = None if regression is None else regression.float().to(self.device)

    def build_network(self):
        """The ``init_from`` denoiser, or a new one with the scales measured where the config says 0."""
        d = self.cfg.model.diffusion
        if self.init is not None:
            net = copy.deepcopy(self.init.denoiser).float()
            if d.noise_conditioning and not net.config.noise_conditioning:
                net = add_noise_conditioning(net)
            if d.residual_base == "regression" and net.config.get("residual_base", "lr") != "regression":
                # The conditioning keeps its scale (the base holds the input's field); the residual
                # to the regression is smaller than to the input.
                target_scale = d.target_scale if d.target_scale > 0 else self._measure_scales()[1]
                net.register_to_config(residual_base="regression", target_scale=target_scale)
            return net
        torch.manual_seed(self.cfg.seed)  # the initial weights are part of the run's definition
        cond_scale, target_scale = d.cond_scale, d.target_scale
        if cond_scale <= 0 or target_scale <= 0:
            c, t = self._measure_scales()
            cond_scale = cond_scale if cond_scale > 0 else c
            target_scale = target_scale if target_scale > 0 else t
        channels = self.autoencoder.latent_channels if d.space == "latent" else 1
        kwargs = config_kwargs(d, ConditionalDenoiser)
        kwargs.update(target_scale=target_scale, cond_scale=cond_scale)
        torch.manual_seed(self.cfg.seed)
        return ConditionalDenoiser(target_channels=channels, cond_channels=channels, **kwargs)

    def _measure_scales(self):
        """Conditioning and target scales on crops the training steps never see, the same on every rank."""
        cfg, d = self.cfg, self.cfg.model.diffusion
        ds = crop_dataset(
            cfg, self.train_files, cfg.seed + _SCALE_SEED_OFFSET, noise_labels=self.noise_labels
        )
        hr = torch.from_numpy(ds.batch(0, cfg.batch_size * cfg.scale_batches))[:, None]
        if self.autoencoder is not None:
            # On the autoencoder's device; a space-to-depth latent has no weights, and no device.
            hr = hr.to(next(self.autoencoder.parameters(), hr).device)
        base = regression_base(self.regression, degrade(hr), FACTOR)
        return estimate_scales(d.space, d.residual, self.autoencoder, base, hr)

    def training_module(self, net):
        """``net`` itself; keeps its config and a noise scheduler of its forward process."""
        self.denoiser_config = self.weights.unwrap(net).config
        self.noise_scheduler = make_scheduler("ddpm", self.denoiser_config)
        return net

    def batch(self, step):
        """HR crops, with noise levels for a noise-conditioned denoiser."""
        return self.data(step, with_noise=self.denoiser_config.noise_conditioning)

    def loss(self, module, batch, generator):
        """`~sunpy_superres.models.diffusion.diffusion_loss`, timesteps and noise from ``generator``."""
        return diffusion_loss(
            module,
            self.denoiser_config,
            self.autoencoder,
            self.noise_scheduler,
            regression_base(self.regression, batch.lr_up, FACTOR),
            batch.hr,
            generator,
            noise_level=batch.noise_level,
        )

    def write_model(self, model, final, step):
        """The diffusion model of the denoiser and its latent space; a continued run names its start."""
        latent = None if self.autoencoder is None else copy.deepcopy(self.autoencoder).cpu()
        regression = None if self.regression is None else copy.deepcopy(self.regression).cpu()
        self._model(
            self.cfg, model, latent, self.revision(step), regression, self.regression_revision
        ).save_pretrained(final)
        finish_model_directory(final, self.cfg, step, **self.provenance())

    def provenance(self):
        """The revision the run started from (``init_from``) and the regression's, if any."""
        out = {"init_from_revision": self.init.revision} if self.init is not None else {}
        if self.regression is not None:
            out["regression_revision"] = self.regression_revision
        return out


def _load_init(d):
    """The trained diffusion model of ``init_from``, whose denoiser a run continues to train."""
    ref, base = load_reference(d.init_from)
    if not isinstance(base, DiffusionSuperResolution):
        raise ValueError(f"[model.diffusion] init_from {ref!r} is not a diffusion model")
    have = (base.denoiser.config.space, bool(base.denoiser.config.residual))
    if have != (d.space, d.residual):
        raise ValueError(
            f"[model.diffusion] init_from {ref!r} is a {have[0]}-space model with residual={have[1]}, but "
            f"the config asks for space={d.space!r}, residual={d.residual}"
        )
    return base


def _load_regression(d, init):
    """The frozen regression network of a ``residual_base = "regression"`` denoiser, and its revision."""
    if d.regression:
        ref, model = load_reference(d.regression)
        if not isinstance(model, CNNSuperResolution):
            raise ValueError(
                f"[model.diffusion] regression {ref!r} is not a deterministic CNN model (enhance, progressive)"
            )
        return model.network.eval().requires_grad_(False), model.revision
    if init is None or init.regression is None:
        raise ValueError(
            '[model.diffusion] residual_base = "regression" needs a regression: the init_from model has '
            'none, so set regression, e.g. "progressive"'
        )
    return copy.deepcopy(init.regression), init.regression_revision


def _autoencoder_stage(cfg):
    """The run that trains the autoencoder of a latent model, under ``output_dir/autoencoder``."""
    stage = copy.deepcopy(cfg)
    stage.name = f"{cfg.name}-autoencoder"
    stage.output_dir = str(Path(cfg.output_dir) / "autoencoder")
    stage.max_steps, stage.epochs = cfg.autoencoder_steps, 0.0
    stage.time_limit_minutes, stage.autoencoder_time_limit_minutes = cfg.autoencoder_time_limit_minutes, 0.0
    stage.model.kind = "autoencoder"
    return stage


def _stage_model(cfg):
    return Path(_autoencoder_stage(cfg).output_dir) / "model"
