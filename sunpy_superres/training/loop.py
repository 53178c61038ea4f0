"""
One training loop for every model (DESIGN.md rule 9), on `accelerate`.

The paper's recipe (section 4): AdamW, learning rate 3e-4, batch 4, MSE, mixed precision, 30 epochs;
plus EMA weights (its code: decay 0.995) and gradient clipping. The same code runs on one CPU, one
GPU, or several processes started by ``torchrun``/``accelerate launch``.

What it trains (``[model] kind``): the magnetogram autoencoder, the four diffusion variants (the
diffusion loss of `sunpy_superres.models.diffusion`), and the deterministic baselines Enhance and
Progressive (pixel MSE; Progressive with `progressive_mse` on both pyramid levels). From scratch the
data are HR crops of full-disk HMI files with the paper's degradation (section 4). With a
``[finetune]`` base model it fine-tunes on MDI/HMI pairs (section 7): LoRA and the mid block of a
diffusion model (`sunpy_superres.training.lora`), all weights of a CNN.

Exact resume: a checkpoint holds the weights, the EMA weights, the optimizer state (safetensors and
JSON, no pickle) and the step. Batches, timesteps and noise of step ``s`` are drawn from generators
seeded by ``(seed, s, rank)``, so no RNG state has to be saved: a run killed after a checkpoint and
resumed ends with the same weights as one that never stopped.
"""

import copy
import glob
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import __version__
from ..models.autoencoder import MagnetogramAutoencoder, autoencoder_loss, build_autoencoder, freeze_encoder
from ..models.diffusion import (
    ConditionalDenoiser,
    DiffusionSuperResolution,
    add_noise_conditioning,
    diffusion_loss,
    estimate_scales,
    make_scheduler,
)
from ..models.enhance import EnhanceNet, EnhanceSuperResolution
from ..models.progressive import ProgressiveNet, ProgressiveSuperResolution, progressive_mse
from ..models.spacetodepth import SpaceToDepth
from .config import MODEL_KINDS, FinetuneConfig, TrainConfig
from .data import CropDataset, degrade, observation_date, split_by_date

__all__ = [
    "train",
    "latest_checkpoint",
    "export_checkpoint",
    "CHECKPOINT_PREFIX",
    "PairCrops",
    "finetune_pairs",
]

#: Super-resolution factor of every model trained here (MDI 2"/pixel -> HMI 0.5"/pixel).
FACTOR = 4
_CNN = {
    "enhance": (EnhanceNet, EnhanceSuperResolution),
    "progressive": (ProgressiveNet, ProgressiveSuperResolution),
}
_TRAINABLE_FILE = "trainable.safetensors"

CHECKPOINT_PREFIX = "step-"


class _AutoencoderObjective(torch.nn.Module):
    """The autoencoder loss as a module forward, so distributed wrappers synchronise its gradients."""

    def __init__(self, autoencoder, model_config, *, sample_posterior=True):
        super().__init__()
        self.autoencoder = autoencoder
        self.terms = dict(
            spectral_weight=model_config.ae_spectral_weight,
            texture_weight=model_config.ae_texture_weight,
            texture_window=model_config.ae_texture_window,
            sample_posterior=sample_posterior,
        )

    def forward(self, hr, eps):
        return autoencoder_loss(self.autoencoder, hr, eps, **self.terms)


def _step_generator(seed, step, rank):
    seq = np.random.SeedSequence([int(seed), int(step), int(rank)])
    return torch.Generator().manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))


def latest_checkpoint(output_dir):
    """The newest complete checkpoint directory under ``output_dir/checkpoints``, or `None`."""
    done = sorted(
        p
        for p in glob.glob(os.path.join(output_dir, "checkpoints", CHECKPOINT_PREFIX + "*"))
        if os.path.isfile(os.path.join(p, "state.json"))
    )
    return Path(done[-1]) if done else None


def export_checkpoint(checkpoint, output):
    """
    Write the EMA weights of a checkpoint as a model directory, while its run goes on.

    For model selection and calibration during a long run: the result is what the run would export
    had it stopped at that step. Diffusion models in a space-to-depth latent and the CNN baselines
    only (their whole model is in the checkpoint); a learnt autoencoder or a LoRA base is loaded
    from where the config says by `train` itself.

    Parameters
    ----------
    checkpoint : path-like
        A checkpoint directory (``output_dir/checkpoints/step-...``, e.g. `latest_checkpoint`).
    output : path-like
        New model directory; must not exist.

    Returns
    -------
    `pathlib.Path`
        ``output``.

    Raises
    ------
    FileExistsError
        If ``output`` exists.
    ValueError
        If the checkpoint is of a kind this cannot export.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; choose a new directory")
    state = json.loads((checkpoint / "state.json").read_text())
    cfg, step = TrainConfig.from_dict(state["config"]), int(state["step"])
    m = cfg.model
    s2d = m.kind == "diffusion" and m.space == "latent" and m.latent_space == "space-to-depth"
    if cfg.finetune.enabled or not (s2d or (m.kind == "diffusion" and m.space == "pixel") or m.kind in _CNN):
        raise ValueError(
            "export_checkpoint exports pixel or space-to-depth diffusion models and CNN baselines; "
            f"this checkpoint is a {m.kind!r} run (latent space {m.latent_space!r})"
        )
    cls = _CNN[m.kind][0] if m.kind in _CNN else ConditionalDenoiser
    net = cls.from_pretrained(checkpoint / "model", use_safetensors=True)
    ema = load_file(checkpoint / "ema.safetensors")
    with torch.no_grad():
        for n, p in _trainable(net).items():
            p.copy_(ema[n])
    revision = f"{cfg.name}-step{step}"
    if m.kind in _CNN:
        sr = _CNN[m.kind][1](net, revision=revision, tile_size=m.tile_size, device="cpu")
    else:
        sr = DiffusionSuperResolution(
            net,
            SpaceToDepth(factor=m.ae_factor) if s2d else None,
            revision=revision,
            tile_size=m.tile_size,
            halo=m.halo,
            device="cpu",
        )
    sr.save_pretrained(output)
    _finish_model_directory(output, cfg, step)
    return output


def _save_optimizer(optimizer, path):
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    save_file(tensors, path / "optimizer.safetensors")
    (path / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars}))


def _load_optimizer(optimizer, path):
    meta = json.loads((path / "optimizer.json").read_text())
    state = {}
    for key, value in list(load_file(path / "optimizer.safetensors").items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _data_files(cfg):
    root = os.path.expandvars(os.path.expanduser(cfg.data.data_dir))
    files = sorted(glob.glob(os.path.join(root, cfg.data.pattern)))
    if not files:
        raise FileNotFoundError(f"no files match {cfg.data.pattern!r} in {root!r} (config [data] data_dir)")
    if not cfg.data.validation_dates and cfg.data.validation_fraction == 0:
        return [Path(f) for f in files], []  # explicitly no validation set (small experiments)
    return split_by_date(
        files,
        validation_dates=cfg.data.validation_dates or None,
        validation_fraction=cfg.data.validation_fraction,
        period=cfg.data.period,
    )


def _patch_files(cfg):
    """Active-region patches of ``[data] patch_dir``, without any day of the validation side."""
    d = cfg.data
    if not d.patch_dir or d.patch_fraction <= 0:
        return []
    root = os.path.expandvars(os.path.expanduser(d.patch_dir))
    files = sorted(glob.glob(os.path.join(root, d.patch_pattern)))
    if not files:
        raise FileNotFoundError(f"no files match {d.patch_pattern!r} in {root!r} (config [data] patch_dir)")
    held_out = {str(v) for v in d.validation_dates}
    return [Path(f) for f in files if not any(observation_date(f).startswith(v) for v in held_out)]


def _dataset(cfg, files, seed):
    d = cfg.data
    return CropDataset(
        files,
        crop_size=d.crop_size,
        max_radius=d.max_radius,
        strong_field_fraction=d.strong_field_fraction,
        strong_field_gauss=d.strong_field_gauss,
        augment=d.augment,
        seed=seed,
        patches=_patch_files(cfg),
        patch_fraction=d.patch_fraction,
        noise_labels=cfg.model.kind == "diffusion" and cfg.model.noise_conditioning,
        noise_augment_gauss=d.noise_augment_gauss,
        noise_augment_fraction=d.noise_augment_fraction,
    )


def _autoencoder_stage(cfg, progress):
    """Path of the frozen autoencoder of a latent model: given, or trained first by this loop."""
    if cfg.model.autoencoder:
        return Path(os.path.expanduser(cfg.model.autoencoder))
    stage = copy.deepcopy(cfg)
    stage.name = f"{cfg.name}-autoencoder"
    stage.output_dir = str(Path(cfg.output_dir) / "autoencoder")
    stage.max_steps, stage.epochs = cfg.autoencoder_steps, 0.0
    stage.time_limit_minutes, stage.autoencoder_time_limit_minutes = cfg.autoencoder_time_limit_minutes, 0.0
    stage.model.kind = "autoencoder"
    final = Path(stage.output_dir) / "model"
    if not (final / "config.json").is_file():
        train(stage, progress=progress)
    return final


class PairCrops:
    """
    Aligned random crops of MDI/HMI pairs, augmented; sample ``i`` is a pure function of ``(seed, i)``.

    Parameters
    ----------
    pairs : list of tuple
        ``(lr, hr, valid)`` arrays as `~sunpy_superres.training.pairs.MagnetogramPair.to_arrays`
        gives them (network units; ``hr`` ``factor`` times larger; ``valid`` on the ``hr`` grid).
    crop_size : int
        HR crop side in pixels, a multiple of ``factor``; the LR crop is ``crop_size // factor``.
    factor : int, optional
        Size ratio of target and input.
    augment : bool, optional
        The same random 90-degree rotation, flip and polarity sign applied to input and target
        (symmetries of a LOS magnetogram crop, as in `~sunpy_superres.training.data.CropDataset`).
    min_valid_fraction : float, optional
        Least fraction of valid target pixels in a crop (1: crops wholly on the disk of both maps).
    seed : int, optional
        Base seed.

    Raises
    ------
    ValueError
        If no pair has a crop of this size with enough valid pixels.
    """

    def __init__(self, pairs, *, crop_size, factor=FACTOR, augment=True, min_valid_fraction=1.0, seed=0):
        if crop_size % factor:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the factor {factor}")
        self.factor, self.crop_size = int(factor), int(crop_size)
        self.augment, self.seed = bool(augment), int(seed)
        c = self.crop_size // self.factor
        self._pairs, self._candidates = [], []
        for lr, hr, valid in pairs:
            h, w = lr.shape
            if hr.shape != (h * factor, w * factor) or valid.shape != hr.shape:
                raise ValueError(
                    f"pair shapes {lr.shape}, {hr.shape}, {valid.shape} are not a {factor}x pair"
                )
            if h < c or w < c:
                continue
            # Valid fraction of every c x c window of LR pixels, from a summed-area table.
            frac = valid.reshape(h, factor, w, factor).mean(axis=(1, 3))
            table = np.pad(frac.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            window = (table[c:, c:] - table[:-c, c:] - table[c:, :-c] + table[:-c, :-c]) / (c * c)
            ys, xs = np.nonzero(window >= min_valid_fraction - 1e-9)
            if len(ys):
                self._pairs.append((lr, hr))
                self._candidates.append((ys, xs))
        if not self._pairs:
            raise ValueError(
                f"no pair has a {crop_size}x{crop_size} target crop with at least "
                f"{min_valid_fraction:.0%} valid pixels; use smaller crops or larger pairs "
                "([finetune] pair_crop_size)"
            )

    def __len__(self):
        return len(self._pairs)

    def sample(self, index):
        """Crop number ``index``: LR ``(c/f, c/f)`` and HR ``(c, c)`` float32, network units."""
        rng = np.random.default_rng([self.seed, int(index)])
        k = int(rng.integers(len(self._pairs)))
        ys, xs = self._candidates[k]
        j = int(rng.integers(len(ys)))
        f, c = self.factor, self.crop_size // self.factor
        lr, hr = self._pairs[k]
        y, x = int(ys[j]), int(xs[j])
        lr, hr = lr[y : y + c, x : x + c], hr[f * y : f * (y + c), f * x : f * (x + c)]
        if self.augment:
            turns = int(rng.integers(4))
            lr, hr = np.rot90(lr, turns), np.rot90(hr, turns)
            if rng.random() < 0.5:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if rng.random() < 0.5:
                lr, hr = -lr, -hr
        return np.ascontiguousarray(lr, dtype=np.float32), np.ascontiguousarray(hr, dtype=np.float32)

    def batch(self, step, batch_size, *, rank=0, world_size=1):
        """LR and HR crops of one step for one process (indices as `CropDataset.batch`)."""
        start = (int(step) * world_size + rank) * batch_size
        lr, hr = zip(*(self.sample(i) for i in range(start, start + batch_size)), strict=True)
        return np.stack(lr), np.stack(hr)


def _read_map(path):
    import sunpy.map

    with warnings.catch_warnings():
        # Real instrument headers carry non-standard keys; sunpy and astropy say so, which is not our error.
        warnings.simplefilter("ignore")
        smap = sunpy.map.Map(path)
        smap.date  # noqa: B018 - parse the header's date now, under the filter
    return smap


_JSOC_TIME = re.compile(r"(\d{8})_(\d{6})")


def _file_time(path):
    """Observation time from a JSOC-style file name (both series use TAI), else from the header."""
    from astropy.time import Time

    match = _JSOC_TIME.search(Path(path).name)
    if match:
        d, t = match.groups()
        return Time(f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}", scale="tai")
    return _read_map(path).date


def _in_dates(day, dates):
    if not dates:
        return True
    if len(dates) != 2:
        raise ValueError(f"[finetune] dates must be [first_day, last_day], got {dates}")
    return dates[0] <= day <= dates[1]


def finetune_pairs(cfg):
    """
    The MDI/HMI pairs of a fine-tuning config, as network-unit arrays.

    ``[finetune] pairs = "synthetic"``: one pair per HMI file of the training side of the ``[data]``
    date split, its input made by `~sunpy_superres.training.pairs.degrade_to_mdi` with a noise seed
    derived from ``(seed, file number)``. ``"directory"``: every MDI file of ``pairs_dir`` with the
    HMI file nearest in time (within ``max_time_difference_minutes``), paired by
    `~sunpy_superres.training.pairs.make_pair` (files as `~sunpy_superres.training.pairs.fetch_pair`
    downloads them). Both crop ``pair_crop_size`` MDI pixels around the most intense active region
    and keep only days within ``dates``.

    Returns
    -------
    list of tuple
        ``(lr, hr, valid)`` per pair (see `~sunpy_superres.training.pairs.MagnetogramPair.to_arrays`).

    Raises
    ------
    FileNotFoundError
        If no file or no pair is found.
    """
    import astropy.units as u

    from .pairs import make_pair, make_synthetic_pair

    ft = cfg.finetune
    crop = ft.pair_crop_size or None
    arrays = []
    if ft.pairs == "synthetic":
        files, _ = _data_files(cfg)
        if ft.dates:
            files = [f for f in files if _in_dates(observation_date(f), ft.dates)]
        for i, f in enumerate(files):
            seed = int(np.random.SeedSequence([int(cfg.seed), i]).generate_state(1)[0])
            pair = make_synthetic_pair(
                _read_map(f),
                crop_size=crop,
                psf_fwhm=ft.synthetic_psf_arcsec * u.arcsec,
                noise=ft.synthetic_noise_gauss * u.G,
                seed=seed,
            )
            arrays.append(pair.to_arrays())
    else:
        root = os.path.expandvars(os.path.expanduser(ft.pairs_dir))
        mdi_files = sorted(glob.glob(os.path.join(root, ft.mdi_pattern)))
        hmi_files = sorted(glob.glob(os.path.join(root, ft.hmi_pattern)))
        if not mdi_files or not hmi_files:
            raise FileNotFoundError(
                f"[finetune] pairs_dir {root!r} needs files matching {ft.mdi_pattern!r} "
                f"and {ft.hmi_pattern!r} (found {len(mdi_files)} and {len(hmi_files)})"
            )
        hmi_times = [_file_time(f) for f in hmi_files]
        limit = ft.max_time_difference_minutes * u.min
        for f in mdi_files:
            when = _file_time(f)
            if not _in_dates(when.utc.strftime("%Y-%m-%d"), ft.dates):
                continue
            gaps = [abs((t - when).to(u.min)) for t in hmi_times]
            k = int(np.argmin(u.Quantity(gaps).value))
            if gaps[k] > limit:
                continue
            # make_pair checks the headers' times again, to the second.
            pair = make_pair(_read_map(f), _read_map(hmi_files[k]), crop_size=crop, max_time_difference=limit)
            arrays.append(pair.to_arrays())
    if not arrays:
        raise FileNotFoundError(f"no fine-tuning pairs ([finetune] pairs = {ft.pairs!r}, dates = {ft.dates})")
    return arrays


def _load_reference(ref):
    """A trained model by registry name, directory or ``hf://`` reference (checksums verified), on the CPU."""
    from ..models.registry import load_model

    if not ref.startswith("hf://"):
        ref = os.path.expandvars(os.path.expanduser(ref))
    return ref, load_model(ref, device="cpu")


def _load_decoder_base(cfg):
    """The latent diffusion model of ``[model] decoder_base``, whose decoder a "decoder" run fine-tunes."""
    ref, base = _load_reference(cfg.model.decoder_base)
    if not (isinstance(base, DiffusionSuperResolution) and base.autoencoder is not None):
        raise ValueError(
            f"[model] decoder_base {ref!r} is not a latent diffusion model (it has no autoencoder); "
            'a decoder fine-tune needs one, e.g. "ldm-res"'
        )
    return base


def _load_diffusion_init(cfg):
    """The trained diffusion model of ``[model] init_from``, whose denoiser a run continues to train."""
    ref, base = _load_reference(cfg.model.init_from)
    if not isinstance(base, DiffusionSuperResolution):
        raise ValueError(f"[model] init_from {ref!r} is not a diffusion model")
    have = (base.denoiser.config.space, bool(base.denoiser.config.residual))
    if have != (cfg.model.space, cfg.model.residual):
        raise ValueError(
            f"[model] init_from {ref!r} is a {have[0]}-space model with residual={have[1]}, but [model] "
            f"asks for space={cfg.model.space!r}, residual={cfg.model.residual}"
        )
    return base


def _load_base(cfg):
    """The ``[finetune]`` base model (checksums verified), on the CPU."""
    ref, base = _load_reference(cfg.finetune.base_model)
    kind = (
        "diffusion"
        if isinstance(base, DiffusionSuperResolution)
        else "enhance"
        if isinstance(base, EnhanceSuperResolution)
        else "progressive"
        if isinstance(base, ProgressiveSuperResolution)
        else type(base).__name__
    )
    if kind != cfg.model.kind:
        raise ValueError(
            f"[finetune] base_model {ref!r} is a {kind!r} model, but [model] kind is {cfg.model.kind!r}"
        )
    return ref, base


def _build_cnn(cfg):
    m = cfg.model
    torch.manual_seed(cfg.seed)
    if m.kind == "enhance":
        return EnhanceNet(
            channels=m.cnn_channels,
            num_residual_blocks=m.enhance_residual_blocks,
            upsample_channels=m.enhance_upsample_channels,
            factor=FACTOR,
            skip=m.cnn_skip,
            batch_norm=m.enhance_batch_norm,
        )
    return ProgressiveNet(
        channels=m.cnn_channels,
        growth_rate=m.progressive_growth_rate,
        layers_per_block=m.progressive_layers_per_block,
        blocks_per_level=tuple(m.progressive_blocks_per_level),
        factor=FACTOR,
        skip=m.cnn_skip,
    )


def _build_lora(cfg, base):
    from .lora import add_lora

    ft = cfg.finetune
    torch.manual_seed(cfg.seed)  # LoRA A is drawn at random: part of the run's definition
    return add_lora(
        base.denoiser,
        rank=ft.lora_rank,
        alpha=ft.lora_alpha or None,
        dropout=ft.lora_dropout,
        target_modules=tuple(ft.lora_target_modules),
        train_mid_block=ft.train_mid_block,
    )


def _build_network(cfg, train_files, autoencoder):
    m = cfg.model
    torch.manual_seed(cfg.seed)  # the initial weights are part of the run's definition
    if m.kind == "autoencoder":
        return build_autoencoder(
            factor=m.ae_factor,
            latent_channels=m.latent_channels,
            base_channels=m.ae_base_channels,
            max_channels=m.ae_max_channels,
            layers_per_block=m.ae_layers_per_block,
            norm_num_groups=m.ae_norm_num_groups,
        )
    if m.kind in _CNN:
        return _build_cnn(cfg)
    if m.kind != "diffusion":
        raise ValueError(f"model kind must be one of {', '.join(map(repr, MODEL_KINDS))}, got {m.kind!r}")
    cond_scale, target_scale = m.cond_scale, m.target_scale
    if cond_scale <= 0 or target_scale <= 0:
        # Measured on crops the training steps never see (another seed), identically on every rank.
        ds = _dataset(cfg, train_files, seed=cfg.seed + 1_000_003)
        hr = torch.from_numpy(ds.batch(0, cfg.batch_size * cfg.scale_batches))[:, None]
        if autoencoder is not None:
            hr = hr.to(next(autoencoder.parameters(), hr).device)  # a space-to-depth latent has no weights
        c, t = estimate_scales(m.space, m.residual, autoencoder, degrade(hr), hr)
        cond_scale = cond_scale if cond_scale > 0 else c
        target_scale = target_scale if target_scale > 0 else t
    channels = autoencoder.latent_channels if m.space == "latent" else 1
    torch.manual_seed(cfg.seed)
    return ConditionalDenoiser(
        space=m.space,
        residual=m.residual,
        prediction_type=m.prediction_type,
        target_channels=channels,
        cond_channels=channels,
        target_scale=target_scale,
        cond_scale=cond_scale,
        block_out_channels=tuple(m.block_out_channels),
        layers_per_block=m.layers_per_block,
        attention_levels=tuple(m.attention_levels),
        attention_head_dim=m.attention_head_dim,
        norm_num_groups=m.norm_num_groups,
        beta_schedule=m.beta_schedule,
        noise_conditioning=m.noise_conditioning,
    )


def _mixed_precision(requested):
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _trainable(net):
    """``{name: parameter}`` of what trains (everything but for LoRA); EMA and optimizer cover these."""
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


def train(config, *, resume=True, progress=True, stop_at_step=None):
    """
    Train, fine-tune, or continue training the model of ``config``.

    Parameters
    ----------
    config : `~sunpy_superres.training.config.TrainConfig`
    resume : bool, optional
        Continue from the newest checkpoint in ``output_dir`` when there is one.
    progress : bool, optional
        Show a progress bar with the loss and the seconds per step.
    stop_at_step : int, optional
        Return right after this step without saving anything more, as if the process had been
        killed (for tests of resuming).

    Returns
    -------
    `pathlib.Path` or None
        ``output_dir/model``: the exported EMA model (a model directory that ``superresolve(...,
        model=path)`` and `sunpy_superres.models.load_model` load, or a diffusers autoencoder
        directory); `None` if stopped early. A LoRA fine-tune also writes the adapter alone to
        ``output_dir/adapter`` (see `sunpy_superres.training.lora`); ``output_dir/model`` is then
        the merged model.

    Raises
    ------
    FileNotFoundError
        If the config's data directory has no matching files, or a fine-tune finds no pairs.
    ValueError
        On an inconsistent config, or a checkpoint written by a different config.
    """
    from accelerate import Accelerator

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    kind = cfg.model.kind
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {', '.join(map(repr, MODEL_KINDS))}, got {kind!r}")
    finetune = cfg.finetune.enabled
    if finetune and kind in ("autoencoder", "decoder"):
        raise ValueError(f"[finetune] applies to super-resolution models, not to [model] kind = {kind!r}")
    lora = finetune and kind == "diffusion"
    out = Path(cfg.output_dir)
    total = cfg.total_steps()
    # accelerate only sets up multi-process CPU training (gloo, under torchrun) when told cpu=True.
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=on_cpu)
    rank, world = accelerator.process_index, accelerator.num_processes

    autoencoder = base = base_ref = train_files = None
    if finetune:
        base_ref, base = _load_base(cfg)
        autoencoder = getattr(base, "autoencoder", None)
        dataset = PairCrops(
            finetune_pairs(cfg),
            crop_size=cfg.data.crop_size,
            augment=cfg.data.augment,
            min_valid_fraction=cfg.finetune.min_valid_fraction,
            seed=cfg.seed,
        )
    else:
        train_files, _ = _data_files(cfg)
        dataset = _dataset(cfg, train_files, seed=cfg.seed)
        if kind == "decoder":
            base = _load_decoder_base(cfg)
        elif kind == "diffusion" and cfg.model.init_from:
            base = _load_diffusion_init(cfg)
            autoencoder = base.autoencoder
        elif (
            kind == "diffusion" and cfg.model.space == "latent" and cfg.model.latent_space == "space-to-depth"
        ):
            autoencoder = SpaceToDepth(factor=cfg.model.ae_factor)
        elif kind == "diffusion" and cfg.model.space == "latent":
            path = _autoencoder_stage(cfg, progress)  # every rank: the stage trains distributed too
            autoencoder = MagnetogramAutoencoder.from_pretrained(path, use_safetensors=True)
    if autoencoder is not None:
        autoencoder = autoencoder.to(accelerator.device).requires_grad_(False).eval()

    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
        # Compared as configs, not dicts: a checkpoint written before a config field existed has that
        # field's default, and resumes.
        if _resumable(TrainConfig.from_dict(state["config"])) != _resumable(cfg):
            raise ValueError(
                f"checkpoint {ckpt} was written by a different config; use another output_dir or resume=False"
            )
        if lora:
            net = _build_lora(cfg, base)
            _load_trainable(net, ckpt / "model" / _TRAINABLE_FILE)
        else:
            cls = {
                "autoencoder": MagnetogramAutoencoder,
                "decoder": MagnetogramAutoencoder,
                "diffusion": ConditionalDenoiser,
                **{k: v[0] for k, v in _CNN.items()},
            }[kind]
            net = cls.from_pretrained(ckpt / "model", use_safetensors=True)
        start = int(state["step"])
    else:
        if lora:
            net = _build_lora(cfg, base)
        elif finetune:
            net = copy.deepcopy(base.network)
        elif kind == "decoder":
            net = copy.deepcopy(base.autoencoder).float()
        elif kind == "diffusion" and cfg.model.init_from:
            net = copy.deepcopy(base.denoiser).float()
            if cfg.model.noise_conditioning and not net.config.noise_conditioning:
                net = add_noise_conditioning(net)
        else:
            net = _build_network(cfg, train_files, autoencoder)
        start = 0
    if kind == "decoder":
        # Only the decoder trains: the encoder, and so the latents the denoiser was trained on, stay.
        net = freeze_encoder(net.requires_grad_(True))
    net.train()
    optimizer = torch.optim.AdamW(
        list(_trainable(net).values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    if ckpt is not None:
        _load_optimizer(optimizer, ckpt)
        ema = load_file(ckpt / "ema.safetensors")
    else:
        ema = {n: p.detach().clone() for n, p in _trainable(net).items()}
    ema = {n: t.to(accelerator.device) for n, t in ema.items()}

    if kind in ("autoencoder", "decoder"):
        # A decoder fine-tune decodes the posterior mean: the latents the denoiser works with.
        module = _AutoencoderObjective(net, cfg.model, sample_posterior=kind == "autoencoder")
    else:
        module = net
    module, optimizer = accelerator.prepare(module, optimizer)
    denoiser_config = (net.get_base_model() if lora else net).config if kind == "diffusion" else None
    noise_scheduler = make_scheduler("ddpm", denoiser_config) if kind == "diffusion" else None
    level_weights = cfg.model.progressive_level_weights or None
    log_path = out / "log.jsonl"

    bar = tqdm(
        total=total,
        initial=start,
        desc=cfg.name,
        unit="step",
        disable=not (progress and accelerator.is_local_main_process),
    )
    started = time.monotonic()
    limit = 60.0 * cfg.time_limit_minutes
    for step in range(start, total):
        t0 = time.perf_counter()
        if finetune:
            lr, hr = (
                torch.from_numpy(a)[:, None].to(accelerator.device)
                for a in dataset.batch(step, cfg.batch_size, rank=rank, world_size=world)
            )
            # The paper's input: each MDI pixel replicated 4x4 (section 7, as in section 4).
            lr_up = lr.repeat_interleave(FACTOR, dim=-2).repeat_interleave(FACTOR, dim=-1)
            # A noise-conditioned base keeps its own target level: a pair's HR crop is too small to
            # measure one.
            noise_level = getattr(base, "noise_level", None) if kind == "diffusion" else None
        else:
            noise_level = None
            if kind == "diffusion" and denoiser_config.noise_conditioning:
                hr, noise_level = (
                    torch.from_numpy(a)
                    for a in dataset.batch(step, cfg.batch_size, rank=rank, world_size=world, with_noise=True)
                )
                noise_level = noise_level.to(accelerator.device)
            else:
                hr = torch.from_numpy(dataset.batch(step, cfg.batch_size, rank=rank, world_size=world))
            hr = hr[:, None].to(accelerator.device)
            lr_up = degrade(hr) if kind not in ("autoencoder", "decoder") else None
            lr = lr_up[..., ::FACTOR, ::FACTOR] if kind in _CNN else None
        gen = _step_generator(cfg.seed, step, rank)
        with accelerator.autocast():
            if kind in ("autoencoder", "decoder"):
                f = net.factor
                eps = torch.randn(
                    (hr.shape[0], net.config.latent_channels, hr.shape[2] // f, hr.shape[3] // f),
                    generator=gen,
                ).to(accelerator.device)
                loss = module(hr, eps)
            elif kind == "diffusion":
                loss = diffusion_loss(
                    module,
                    denoiser_config,
                    autoencoder,
                    noise_scheduler,
                    lr_up,
                    hr,
                    gen,
                    noise_level=noise_level,
                )
            elif kind == "enhance":
                loss = F.mse_loss(module(lr).float(), hr.float())
            else:
                # Both pyramid levels supervised (x2 by the 2x2 block means): ProSR's curriculum.
                loss = progressive_mse(module, lr, hr, level_weights=level_weights)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # EMA with the usual warm-up, a function of the step only (exact resume).
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for n, p in _trainable(net).items():
                ema[n].lerp_(p.detach(), 1 - decay)
        loss_value = float(accelerator.gather(loss.detach()[None]).mean())
        dt = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss_value:.4g}", s_per_step=f"{dt:.2f}")
        bar.update(1)
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": step + 1, "loss": loss_value, "seconds": dt}) + "\n")
        done = step + 1
        if stop_at_step is not None and done == stop_at_step:
            bar.close()
            return None
        out_of_time = limit > 0 and _all_agree(accelerator, time.monotonic() - started >= limit)
        if done % cfg.checkpoint_every == 0 or done == total or out_of_time:
            _save_checkpoint(accelerator, cfg, net, ema, optimizer, done, lora=lora)
        if out_of_time:
            break
    else:
        done = total
    bar.close()
    if done < total:
        warnings.warn(
            f"{cfg.name}: time limit of {cfg.time_limit_minutes:g} min reached after step {done} of "
            f"{total}; exported the model of step {done} (running the config again resumes)",
            stacklevel=2,
        )
    if lora:
        return _export_lora(accelerator, cfg, net, ema, base_ref, base, done)
    if kind == "decoder":
        return _export_decoder(accelerator, cfg, net, ema, base, done)
    # A continued run names the weights it started from: a registry name may mean others later.
    record = {"init_from_revision": base.revision} if kind == "diffusion" and cfg.model.init_from else None
    return _export(accelerator, cfg, net, ema, autoencoder, done, record)


def _resumable(cfg):
    """``cfg`` without the fields a resumed run may change (its time limits) or never reads (the
    ``[finetune]`` table of a run that does not fine-tune, whose defaults may change between releases)."""
    cfg = copy.deepcopy(cfg)
    cfg.time_limit_minutes = cfg.autoencoder_time_limit_minutes = 0.0
    if not cfg.finetune.enabled:
        cfg.finetune = FinetuneConfig()
    return cfg


def _all_agree(accelerator, flag):
    """Whether any process says ``flag``, the same answer on every process (so all stop together)."""
    if accelerator.num_processes == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.gather(t).max() > 0)


def _load_trainable(net, path):
    """Put a checkpoint's trainable tensors (LoRA, mid block) into a freshly wrapped model, all of them."""
    saved = load_file(path)
    expected = set(_trainable(net))
    if set(saved) != expected:
        raise ValueError(
            f"{path} holds other trainable tensors than the model: missing "
            f"{sorted(expected - set(saved))[:3]}, unexpected "
            f"{sorted(set(saved) - expected)[:3]}"
        )
    with torch.no_grad():
        for n, p in _trainable(net).items():
            p.copy_(saved[n])


def _save_checkpoint(accelerator, cfg, net, ema, optimizer, step, *, lora=False):
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        root = Path(cfg.output_dir) / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model = accelerator.unwrap_model(net)
        if lora:
            # The frozen base is the config's base_model: only what trains is checkpointed.
            (tmp / "model").mkdir()
            save_file(
                {n: p.detach().cpu().contiguous() for n, p in _trainable(model).items()},
                tmp / "model" / _TRAINABLE_FILE,
            )
        else:
            model.save_pretrained(tmp / "model", safe_serialization=True)
        save_file({n: t.detach().cpu().contiguous() for n, t in ema.items()}, tmp / "ema.safetensors")
        _save_optimizer(optimizer, tmp)
        # state.json is written last: a checkpoint without it is incomplete and never resumed from.
        (tmp / "state.json").write_text(
            json.dumps({"step": step, "config": cfg.to_dict(), "package_version": __version__}, indent=2)
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob(f"{CHECKPOINT_PREFIX}*"))[: -max(1, cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _ema_copy(accelerator, net, ema):
    model = copy.deepcopy(accelerator.unwrap_model(net)).cpu()
    with torch.no_grad():
        for n, p in _trainable(model).items():
            p.copy_(ema[n])
    return model


def _training_record(cfg, step, **extra):
    return {"config": cfg.to_dict(), "step": step, "package_version": __version__, **extra}


def _finish_model_directory(final, cfg, step, **extra):
    """Add the training config to an exported model directory and re-record the manifest's checksums."""
    from ..models.hub import rewrite_manifest

    (final / "training_config.json").write_text(json.dumps(_training_record(cfg, step, **extra), indent=2))
    rewrite_manifest(final)


def _export(accelerator, cfg, net, ema, autoencoder, step, record=None):
    """Write the EMA weights as the run's model (``output_dir/model``)."""
    accelerator.wait_for_everyone()
    final = Path(cfg.output_dir) / "model"
    if accelerator.is_main_process:
        model = _ema_copy(accelerator, net, ema)
        shutil.rmtree(final, ignore_errors=True)
        revision = f"{cfg.name}-step{step}"
        if cfg.model.kind == "autoencoder":
            model.save_pretrained(final, safe_serialization=True)
            (final / "training_config.json").write_text(json.dumps(_training_record(cfg, step), indent=2))
        else:
            if cfg.model.kind in _CNN:
                sr = _CNN[cfg.model.kind][1](
                    model, revision=revision, tile_size=cfg.model.tile_size, device="cpu"
                )
            else:
                ae = None if autoencoder is None else copy.deepcopy(autoencoder).cpu()
                sr = DiffusionSuperResolution(
                    model,
                    ae,
                    revision=revision,
                    tile_size=cfg.model.tile_size,
                    halo=cfg.model.halo,
                    device="cpu",
                )
            sr.save_pretrained(final)
            _finish_model_directory(final, cfg, step, **(record or {}))
    accelerator.wait_for_everyone()
    return final


def _export_decoder(accelerator, cfg, net, ema, base, step):
    """Write ``[model] decoder_base`` with the EMA autoencoder (new decoder) as the run's model."""
    accelerator.wait_for_everyone()
    final = Path(cfg.output_dir) / "model"
    if accelerator.is_main_process:
        autoencoder = _ema_copy(accelerator, net, ema)
        shutil.rmtree(final, ignore_errors=True)
        sr = DiffusionSuperResolution(
            copy.deepcopy(base.denoiser).cpu().float(),
            autoencoder,
            name=base.name,
            revision=f"{cfg.name}-step{step}",
            scheduler=base.scheduler,
            steps=base.steps,
            start_timestep=base.start_timestep,
            tile_size=base.tile_size,
            halo=base.halo,
            device="cpu",
        )
        sr.save_pretrained(final)
        # "ldm-res" names whichever weights this package version embeds: record which ones these were.
        _finish_model_directory(final, cfg, step, decoder_base_revision=base.revision)
    accelerator.wait_for_everyone()
    return final


def _export_lora(accelerator, cfg, net, ema, base_ref, base, step):
    """
    Write the EMA adapter alone (``output_dir/adapter``) and the merged model (``output_dir/model``).

    The merged model is made by `~sunpy_superres.training.lora.load_adapter` from the files just
    written, so it is exactly what a user gets from the adapter directory.
    """
    from .lora import load_adapter, save_adapter

    accelerator.wait_for_everyone()
    out = Path(cfg.output_dir)
    adapter, final = out / "adapter", out / "model"
    if accelerator.is_main_process:
        model = _ema_copy(accelerator, net, ema)
        shutil.rmtree(adapter, ignore_errors=True)
        base_id = base_ref if Path(base_ref).is_dir() else base
        save_adapter(
            model,
            adapter,
            base=base_id,
            name=cfg.name,
            revision=f"{cfg.name}-step{step}",
            info={"training": _training_record(cfg, step)},
        )
        merged = load_adapter(base_id, adapter, merge=True, device="cpu")
        shutil.rmtree(final, ignore_errors=True)
        merged.save_pretrained(final)
        _finish_model_directory(final, cfg, step)
    accelerator.wait_for_everyone()
    return final
