"""
Training configuration: dataclasses read from TOML, saved as JSON with every checkpoint.

A config describes one run completely (data, model, optimisation); together with the package
version saved beside it, it says how a checkpoint was made (DESIGN.md rule 9). Zero means "measure"
for the scale factors and "none" for optional limits, because TOML has no null.
"""

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = [
    "DataConfig",
    "ModelConfig",
    "FinetuneConfig",
    "TrainConfig",
    "load_config",
    "shipped_configs",
    "MODEL_KINDS",
    "PAIR_SOURCES",
    "LATENT_SPACES",
]

#: What ``[model] kind`` can train: the autoencoder of the latent variants, the diffusion variants, the
#: deterministic CNN baselines (trained with pixel MSE), and "decoder": the decoder of a trained latent
#: model fine-tuned with its encoder and denoiser frozen (``[model] decoder_base``).
MODEL_KINDS = ("diffusion", "autoencoder", "enhance", "progressive", "decoder")
#: Latent spaces of a latent diffusion model (``[model] latent_space``).
LATENT_SPACES = ("autoencoder", "space-to-depth")
#: Where fine-tuning pairs come from (``[finetune] pairs``).
PAIR_SOURCES = ("synthetic", "directory")


@dataclass
class DataConfig:
    """Where crops come from and how (see `sunpy_superres.training.data`)."""

    #: Directory with full-disk HMI FITS files (``$VARS`` and ``~`` are expanded).
    data_dir: str = "../shared/data/hmi"
    #: Glob of the files inside ``data_dir``.
    pattern: str = "*.fits"
    #: Validation periods ("YYYY-MM-DD" or "YYYY-MM"); empty: the latest ``validation_fraction``
    #: of periods, or no validation set at all when ``validation_fraction`` is 0.
    validation_dates: list[str] = field(default_factory=list)
    validation_fraction: float = 0.34
    period: str = "day"
    #: HR crop side in pixels (the paper: 1024).
    crop_size: int = 128
    max_radius: float = 0.9
    strong_field_fraction: float = 0.5
    strong_field_gauss: float = 300.0
    augment: bool = True
    #: Directory of high-resolution active-region patches (e.g. SHARP CEA magnetograms, whose 0.03 deg
    #: pixels are close to HMI's 0.5") used as extra training material: crops anywhere inside a patch;
    #: patches of a validation day are left out. Empty: none.
    patch_dir: str = ""
    patch_pattern: str = "*.fits"
    #: Probability that a training crop comes from the patches rather than the full disks.
    patch_fraction: float = 0.0
    #: For a noise-conditioned model (``[model] noise_conditioning``): the largest standard deviation
    #: (G) of white noise added to a crop, and the fraction of crops that get it (see
    #: `sunpy_superres.training.data.CropDataset`).
    noise_augment_gauss: float = 0.0
    noise_augment_fraction: float = 0.5
    #: Samples that make an "epoch" (the paper: 43,912 images per epoch).
    samples_per_epoch: int = 1000


@dataclass
class ModelConfig:
    """The network to train: an autoencoder, a diffusion variant or a CNN baseline."""

    #: "diffusion", "autoencoder", "enhance", "progressive" or "decoder" (see `MODEL_KINDS`).
    kind: str = "diffusion"
    #: "latent" or "pixel" (diffusion only).
    space: str = "latent"
    residual: bool = True
    prediction_type: str = "epsilon"
    #: Noise schedule of the forward process: diffusers' "linear" (the paper's), "scaled_linear" or
    #: "squaredcos_cap_v2" (cosine, Nichol & Dhariwal 2021).
    beta_schedule: str = "linear"
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    layers_per_block: int = 2
    attention_levels: list[bool] = field(default_factory=lambda: [False, False, True, True])
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    #: Standard deviations dividing target and conditioning; 0 = measure on training data.
    target_scale: float = 0.0
    cond_scale: float = 0.0
    #: Latent space of a latent model: "autoencoder" (a learnt `MagnetogramAutoencoder`, the paper's
    #: choice) or "space-to-depth" (`sunpy_superres.models.spacetodepth.SpaceToDepth`, invertible
    #: and training-free, ``ae_factor`` its block side; no autoencoder stage).
    latent_space: str = "autoencoder"
    #: Trained autoencoder directory for latent diffusion; empty: train one first under
    #: ``output_dir/autoencoder`` for ``TrainConfig.autoencoder_steps`` steps.
    autoencoder: str = ""
    ae_factor: int = 8
    latent_channels: int = 4
    ae_base_channels: int = 32
    ae_max_channels: int = 128
    ae_layers_per_block: int = 1
    ae_norm_num_groups: int = 8
    #: Weight of the radial log-power term of the autoencoder loss (0: MSE and KL only); see
    #: `sunpy_superres.models.autoencoder.autoencoder_loss`.
    ae_spectral_weight: float = 0.0
    #: Weight of the local texture term (`sunpy_superres.models.autoencoder.local_texture_loss`) and
    #: the side of its blocks in pixels; 0: not used.
    ae_texture_weight: float = 0.0
    ae_texture_window: int = 8
    #: For ``kind = "decoder"``: the trained latent diffusion model (registry name, model directory or
    #: pinned ``hf://`` reference) whose decoder is fine-tuned; its encoder and denoiser stay frozen,
    #: so the latent space they share does not move. The export is that model with the new decoder.
    decoder_base: str = ""
    #: For ``kind = "diffusion"``: continue training the denoiser of a trained latent or pixel model
    #: (registry name, model directory or pinned ``hf://`` reference), with its autoencoder frozen as
    #: it is; the architecture and scales come from that model. Empty: a new denoiser.
    init_from: str = ""
    #: Condition the denoiser on the target's quiet-Sun noise level (one more conditioning channel;
    #: see `sunpy_superres.models.diffusion.ConditionalDenoiser`). With ``init_from`` a model without
    #: it gains the channel with zero weights, so training starts from that model's behaviour.
    noise_conditioning: bool = False
    #: CNN baselines ("enhance", "progressive"; see `sunpy_superres.models.enhance` and
    #: `sunpy_superres.models.progressive` for the meaning and the published sizes).
    cnn_channels: int = 64
    #: Interpolated input the CNN output is added to: "bicubic", "nearest" or "none".
    cnn_skip: str = "bicubic"
    enhance_residual_blocks: int = 5
    enhance_upsample_channels: int = 64
    enhance_batch_norm: bool = True
    progressive_growth_rate: int = 16
    progressive_layers_per_block: int = 4
    progressive_blocks_per_level: list[int] = field(default_factory=lambda: [4, 2])
    #: Weights of the x2 and x4 levels in `progressive_mse`; empty: all ones.
    progressive_level_weights: list[float] = field(default_factory=list)
    #: Inference defaults written into the exported model (``halo``: diffusion only; a CNN's halo
    #: follows from its layers).
    tile_size: int = 256
    halo: int = 8


@dataclass
class FinetuneConfig:
    """
    Fine-tuning of a trained model on MDI/HMI pairs (Ramunno et al. 2025, section 7).

    Active when ``base_model`` is set. A diffusion base gets LoRA on its attention projections and a
    trainable mid block (`sunpy_superres.training.lora`); a CNN base (Enhance, Progressive) is
    fine-tuned in full, as the paper does for its baselines. The architecture comes from the base
    model: only ``[model] kind``, which must match it, and ``tile_size``/``halo`` are read from
    ``[model]``. Crops of ``[data] crop_size`` (HR pixels) are drawn from the pairs.
    """

    #: Trained model directory (``superres.json``) or pinned ``hf://`` reference; empty: no fine-tuning.
    base_model: str = ""
    lora_rank: int = 8
    #: LoRA scale numerator (update ``alpha / rank * B A``); 0: equal to the rank.
    lora_alpha: float = 0.0
    lora_dropout: float = 0.0
    #: Module-name suffixes that get LoRA; empty: the attention projections, or for a denoiser without
    #: self-attention the convolutions of its ResNet blocks (`sunpy_superres.training.lora.add_lora`).
    lora_target_modules: list[str] = field(default_factory=list)
    #: Train the U-Net bottleneck in full (the paper: yes).
    train_mid_block: bool = True
    #: "synthetic": pairs made from the ``[data]`` HMI files by `degrade_to_mdi` (no real pairs needed);
    #: "directory": real MDI and HMI files in ``pairs_dir`` (e.g. from ``fetch_pair``), paired by time.
    pairs: str = "synthetic"
    pairs_dir: str = ""
    mdi_pattern: str = "mdi*.fits"
    hmi_pattern: str = "hmi*.fits"
    #: Largest time difference of a real MDI/HMI pair, minutes.
    max_time_difference_minutes: float = 60.0
    #: Side of the crop around the most intense active region of each pair, MDI pixels (the paper:
    #: 256); 0: the whole map.
    pair_crop_size: int = 256
    #: Inclusive first and last day of the pairs used (the paper: ["2010-05-01", "2010-08-31"]);
    #: empty: all (for "synthetic", the training side of the ``[data]`` date split).
    dates: list[str] = field(default_factory=list)
    #: Degradation of synthetic pairs: Gaussian PSF FWHM (arcsec) and noise rms (G at MDI levels).
    synthetic_psf_arcsec: float = 3.3
    synthetic_noise_gauss: float = 9.0
    #: Fraction of an HR crop's pixels that must be valid (on-disk in both maps).
    min_valid_fraction: float = 1.0

    @property
    def enabled(self):
        """Whether this config fine-tunes (a base model is set)."""
        return bool(self.base_model)


@dataclass
class TrainConfig:
    """One training run."""

    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 0
    #: Per process (the paper: 4 on one GPU).
    batch_size: int = 4
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    #: Steps to train; 0: ``epochs * samples_per_epoch / batch_size``.
    max_steps: int = 0
    epochs: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    #: "auto" (bf16/fp16 on a GPU, none on a CPU), "no", "fp16" or "bf16".
    mixed_precision: str = "auto"
    #: Batches used to measure the scale factors.
    scale_batches: int = 8
    autoencoder_steps: int = 1000
    #: Wall-clock limit of a run in minutes (0: none). When it is reached the run checkpoints and
    #: exports its EMA model as if it had ended; running the config again resumes from there.
    time_limit_minutes: float = 0.0
    #: The same limit for the autoencoder stage of a latent model (0: none).
    autoencoder_time_limit_minutes: float = 0.0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def total_steps(self):
        """Steps of the run (``max_steps``, or the steps of ``epochs`` epochs)."""
        if self.max_steps > 0:
            return int(self.max_steps)
        if self.epochs > 0:
            return max(1, int(round(self.epochs * self.data.samples_per_epoch / self.batch_size)))
        raise ValueError("set max_steps or epochs in the config")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """
        Build a config from nested dicts.

        Keys missing from ``d`` take their defaults, so a config saved by an earlier version (before
        a field existed) reads back as the same run.

        Raises
        ------
        ValueError
            On an unknown key (a typo must not be silently ignored) or an unknown model kind or
            pair source.
        """
        d = dict(d)
        data = _build(DataConfig, d.pop("data", {}), "data")
        model = _build(ModelConfig, d.pop("model", {}), "model")
        finetune = _build(FinetuneConfig, d.pop("finetune", {}), "finetune")
        if model.kind not in MODEL_KINDS:
            raise ValueError(
                f"[model] kind must be one of {', '.join(map(repr, MODEL_KINDS))}, got {model.kind!r}"
            )
        if model.kind == "decoder" and not model.decoder_base:
            raise ValueError(
                '[model] kind = "decoder" fine-tunes the decoder of a trained latent model: set '
                "[model] decoder_base to its registry name, directory or hf:// reference"
            )
        if model.latent_space not in LATENT_SPACES:
            raise ValueError(
                f"[model] latent_space must be one of {', '.join(map(repr, LATENT_SPACES))}, "
                f"got {model.latent_space!r}"
            )
        if finetune.pairs not in PAIR_SOURCES:
            raise ValueError(
                f"[finetune] pairs must be one of {', '.join(map(repr, PAIR_SOURCES))}, "
                f"got {finetune.pairs!r}"
            )
        return _build(cls, d, "", data=data, model=model, finetune=finetune)


def _build(kind, values, section, **extra):
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - names
    if unknown:
        where = f"[{section}] " if section else ""
        raise ValueError(f"unknown config key(s) {where}{sorted(unknown)}; known: {sorted(names)}")
    return kind(**values, **extra)


def shipped_configs():
    """Names of the configs shipped with the package (``sunpy_superres/training/configs``)."""
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(__package__).joinpath("configs").iterdir()
        if p.name.endswith(".toml")
    )


def load_config(path_or_name):
    """
    Read a TOML config file, or a shipped config by name (``"cpu"``, ``"paper-gpu"``).

    Raises
    ------
    FileNotFoundError
        If it is neither a file nor a shipped name.
    """
    path = Path(os.path.expanduser(str(path_or_name)))
    if not path.is_file():
        shipped = resources.files(__package__).joinpath("configs", f"{path_or_name}.toml")
        if not shipped.is_file():
            raise FileNotFoundError(
                f"no config file {path_or_name!r} and no shipped config of that name "
                f"(shipped: {', '.join(shipped_configs())})"
            )
        return TrainConfig.from_dict(tomllib.loads(shipped.read_text()))
    return TrainConfig.from_dict(tomllib.loads(path.read_text()))
