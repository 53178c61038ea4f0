"""
Training configuration: dataclasses read from TOML, saved as JSON with every checkpoint.

A config describes one run completely (data, model, optimisation); together with the package
version saved beside it, it says how a checkpoint was made (rule 9 of docs/dev/design.rst). Zero means "measure"
for the scale factors and "none" for optional limits, because TOML has no null.

``[model]`` holds the kind and what every kind shares; each kind's hyper-parameters are in its own
table, ``[model.<kind>]`` (``[model.diffusion]``, ``[model.autoencoder]``, ...), defined by the kind's
training task (`sunpy_superres.training.tasks`), most of them with the defaults of the network's
constructor. Configs written before the tables existed, with flat ``[model]`` keys (``ae_factor``,
``enhance_residual_blocks``, ``space``, ...), still load: the records saved with checkpoints and
models silently, TOML files with a `FutureWarning` that names the new place of each key.
"""

import dataclasses
import functools
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import legacy
from .tasks import TASKS, get_task

# Where it lived before the tables (0.1); the diffusion task owns it now.
from .tasks.diffusion import LATENT_SPACES

__all__ = [
    "LATENT_SPACES",
    "LR_SCHEDULES",
    "DataConfig",
    "ModelConfig",
    "FinetuneConfig",
    "TrainConfig",
    "load_config",
    "shipped_configs",
    "MODEL_KINDS",
    "PAIR_SOURCES",
]

#: What ``[model] kind`` can train: the kinds registered in `sunpy_superres.training.tasks` (the
#: diffusion variants, their autoencoder, the CNN baselines, and the decoder of a trained latent model).
MODEL_KINDS = tuple(TASKS)
#: Where fine-tuning pairs come from (``[finetune] pairs``).
PAIR_SOURCES = ("synthetic", "directory")
#: Learning-rate schedules of ``lr_schedule`` (names of `diffusers.optimization.get_scheduler`).
LR_SCHEDULES = ("constant", "cosine", "linear")


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
    #: For a noise-conditioned model (``[model.diffusion] noise_conditioning``): the largest standard
    #: deviation (G) of white noise added to a crop, and the fraction of crops that get it (see
    #: `sunpy_superres.training.data.CropDataset`).
    noise_augment_gauss: float = 0.0
    noise_augment_fraction: float = 0.5
    #: Samples that make an "epoch" (the paper: 43,912 images per epoch).
    samples_per_epoch: int = 1000


def _with_kind_tables(cls):
    """Add one field per registered kind that has a config table: ``[model.<kind>]``."""
    for kind, task in TASKS.items():
        if task.config_class is not None:
            cls.__annotations__[kind] = task.config_class
            setattr(cls, kind, field(default_factory=task.config_class))
    return cls


@dataclass
@_with_kind_tables
class ModelConfig:
    """
    The network to train: its kind, the inference defaults of the exported model, and one table per
    kind with that kind's hyper-parameters (``[model.<kind>]``, the attribute of the kind's name;
    see the kind's module in `sunpy_superres.training.tasks`).

    A run reads the tables of its kind (`~sunpy_superres.training.tasks.base.Task.config_tables`);
    the others keep their defaults and do not count when a checkpoint is resumed. A table may be given
    as a dict, e.g. ``ModelConfig(kind="enhance", enhance={"channels": 32})``. The flat keys of before
    the tables (``ae_factor=4``, ``config.ae_factor``) still work, with a `FutureWarning`
    (`sunpy_superres.training.legacy`).

    Raises
    ------
    ValueError
        On an unknown key of a table given as a dict.
    """

    #: One of `MODEL_KINDS`.
    kind: str = "diffusion"
    #: Inference defaults written into the exported model (``halo``: diffusion only; a CNN's halo
    #: follows from its layers).
    tile_size: int = 256
    halo: int = 8

    def __post_init__(self):
        for kind, task in TASKS.items():
            if isinstance(getattr(self, kind, None), dict):
                setattr(self, kind, _build(task.config_class, getattr(self, kind), f"model.{kind}"))

    # Only reached for names that are not attributes: perhaps an old flat key.
    def __getattr__(self, name):
        where = legacy.place(name, self.__dict__.get("kind"))
        if where is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        legacy.warn("ModelConfig", {name: f"[model.{where[0]}] {where[1]}"}, stacklevel=2)
        return getattr(getattr(self, where[0]), where[1])

    def __setattr__(self, name, value):
        # "autoencoder" is a table now; a string set there is the old key, the autoencoder's directory.
        old_autoencoder_dir = name == "autoencoder" and isinstance(value, str | os.PathLike)
        where = (
            None
            if name in _MODEL_FIELDS and not old_autoencoder_dir
            else legacy.place(name, self.__dict__.get("kind"))
        )
        if where is None:
            object.__setattr__(self, name, value)
            return
        # Set where it is read now: an old name must not become a new attribute nobody reads.
        legacy.warn("ModelConfig", {name: f"[model.{where[0]}] {where[1]}"}, stacklevel=2)
        setattr(getattr(self, where[0]), where[1], value)


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def _init_with_flat_keys(init):
    """``ModelConfig``'s constructor, also taking the flat keys of before the tables."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        kwargs, moved = legacy.upgrade_model(kwargs)
        if moved:
            legacy.warn("ModelConfig", moved, stacklevel=2)
        init(self, *args, **kwargs)

    return __init__


ModelConfig.__init__ = _init_with_flat_keys(ModelConfig.__init__)


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
    #: How the learning rate moves over the run's ``max_steps``: ``"constant"`` (the paper),
    #: ``"cosine"`` (down to 0 at the last step; Loshchilov & Hutter 2017) or ``"linear"`` (down to
    #: 0), each after ``warmup_steps`` of linear warm-up from 0 (diffusers' schedules).
    lr_schedule: str = "constant"
    warmup_steps: int = 0
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
        """The config as nested dicts, as saved with every checkpoint (`from_dict` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """
        Build a config from nested dicts.

        Keys missing from ``d`` take their defaults, so a config saved by an earlier version (before
        a field existed) reads back as the same run; so do the flat ``[model]`` keys saved before the
        per-kind tables existed (moved silently: checkpoints keep their records).

        Parameters
        ----------
        d : dict
            ``{"data": {...}, "model": {...}, "finetune": {...}, ...}`` as `to_dict` writes it.

        Returns
        -------
        `TrainConfig`

        Raises
        ------
        ValueError
            On an unknown key (a typo must not be silently ignored), an unknown model kind or pair
            source, or a model config its kind refuses.
        """
        d = dict(d)
        data = _build(DataConfig, d.pop("data", {}), "data")
        model = _build_model(legacy.upgrade_model(d.pop("model", {}))[0])
        finetune = _build(FinetuneConfig, d.pop("finetune", {}), "finetune")
        if finetune.pairs not in PAIR_SOURCES:
            raise ValueError(
                f"[finetune] pairs must be one of {', '.join(map(repr, PAIR_SOURCES))}, "
                f"got {finetune.pairs!r}"
            )
        return check_lr_schedule(_build(cls, d, "", data=data, model=model, finetune=finetune))


def check_lr_schedule(cfg):
    """``cfg`` if its ``lr_schedule`` and ``warmup_steps`` are valid; else `ValueError`."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}, got {cfg.lr_schedule!r}"
        )
    if cfg.warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {cfg.warmup_steps}")
    return cfg


def _build_model(values):
    """`ModelConfig` of a ``[model]`` dict in the table layout, checked by its kind's task."""
    model = _build(ModelConfig, values, "model")
    get_task(model.kind).check_config(model)
    return model


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

    Flat ``[model]`` keys of the layout before the per-kind tables are moved into their tables, with a
    `FutureWarning` naming the new keys.

    Raises
    ------
    FileNotFoundError
        If it is neither a file nor a shipped name.
    ValueError
        On an unknown key or value (see `TrainConfig.from_dict`).
    """
    path = Path(os.path.expanduser(str(path_or_name)))
    if not path.is_file():
        shipped = resources.files(__package__).joinpath("configs", f"{path_or_name}.toml")
        if not shipped.is_file():
            raise FileNotFoundError(
                f"no config file {path_or_name!r} and no shipped config of that name "
                f"(shipped: {', '.join(shipped_configs())})"
            )
        return _from_toml(shipped.read_text(), f"shipped config {path_or_name!r}")
    return _from_toml(path.read_text(), str(path))


def _from_toml(text, where):
    d = tomllib.loads(text)
    _, moved = legacy.upgrade_model(d.get("model", {}))
    if moved:
        legacy.warn(where, moved, stacklevel=3)
    return TrainConfig.from_dict(d)
