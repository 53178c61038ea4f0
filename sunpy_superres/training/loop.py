"""
One training loop for every model (DESIGN.md rule 9), on `accelerate`.

The paper's recipe (section 4): AdamW, learning rate 3e-4, batch 4, MSE, mixed precision, 30 epochs;
plus EMA weights (its code: decay 0.995) and gradient clipping. The same code runs on one CPU, one
GPU, or several processes started by ``torchrun``/``accelerate launch``.

Exact resume: a checkpoint holds the weights, the EMA weights, the optimizer state (safetensors and
JSON, no pickle) and the step. Batches, timesteps and noise of step ``s`` are drawn from generators
seeded by ``(seed, s, rank)``, so no RNG state has to be saved: a run killed after a checkpoint and
resumed ends with the same weights as one that never stopped.
"""

import copy
import glob
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import __version__
from ..models.autoencoder import MagnetogramAutoencoder, autoencoder_loss, build_autoencoder
from ..models.diffusion import (ConditionalDenoiser, DiffusionSuperResolution, diffusion_loss, estimate_scales,
                                make_scheduler)
from .config import TrainConfig
from .data import CropDataset, degrade, split_by_date

__all__ = ["train", "latest_checkpoint", "CHECKPOINT_PREFIX"]

CHECKPOINT_PREFIX = "step-"


class _AutoencoderObjective(torch.nn.Module):
    """The autoencoder loss as a module forward, so distributed wrappers synchronise its gradients."""

    def __init__(self, autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, hr, eps):
        return autoencoder_loss(self.autoencoder, hr, eps)


def _step_generator(seed, step, rank):
    seq = np.random.SeedSequence([int(seed), int(step), int(rank)])
    return torch.Generator().manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))


def latest_checkpoint(output_dir):
    """The newest complete checkpoint directory under ``output_dir/checkpoints``, or `None`."""
    done = sorted(p for p in glob.glob(os.path.join(output_dir, "checkpoints", CHECKPOINT_PREFIX + "*"))
                  if os.path.isfile(os.path.join(p, "state.json")))
    return Path(done[-1]) if done else None


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
    return split_by_date(files, validation_dates=cfg.data.validation_dates or None,
                         validation_fraction=cfg.data.validation_fraction, period=cfg.data.period)


def _dataset(cfg, files, seed):
    d = cfg.data
    return CropDataset(files, crop_size=d.crop_size, max_radius=d.max_radius,
                       strong_field_fraction=d.strong_field_fraction, strong_field_gauss=d.strong_field_gauss,
                       augment=d.augment, seed=seed)


def _autoencoder_stage(cfg, progress):
    """Path of the frozen autoencoder of a latent model: given, or trained first by this loop."""
    if cfg.model.autoencoder:
        return Path(os.path.expanduser(cfg.model.autoencoder))
    stage = copy.deepcopy(cfg)
    stage.name = f"{cfg.name}-autoencoder"
    stage.output_dir = str(Path(cfg.output_dir) / "autoencoder")
    stage.max_steps, stage.epochs = cfg.autoencoder_steps, 0.0
    stage.model.kind = "autoencoder"
    final = Path(stage.output_dir) / "model"
    if not (final / "config.json").is_file():
        train(stage, progress=progress)
    return final


def _build_network(cfg, train_files, autoencoder):
    m = cfg.model
    torch.manual_seed(cfg.seed)  # the initial weights are part of the run's definition
    if m.kind == "autoencoder":
        return build_autoencoder(factor=m.ae_factor, latent_channels=m.latent_channels, base_channels=m.ae_base_channels,
                                 max_channels=m.ae_max_channels, layers_per_block=m.ae_layers_per_block,
                                 norm_num_groups=m.ae_norm_num_groups)
    if m.kind != "diffusion":
        raise ValueError(f"model kind must be 'diffusion' or 'autoencoder', got {m.kind!r}")
    cond_scale, target_scale = m.cond_scale, m.target_scale
    if cond_scale <= 0 or target_scale <= 0:
        # Measured on crops the training steps never see (another seed), identically on every rank.
        ds = _dataset(cfg, train_files, seed=cfg.seed + 1_000_003)
        hr = torch.from_numpy(ds.batch(0, cfg.batch_size * cfg.scale_batches))[:, None]
        c, t = estimate_scales(m.space, m.residual, autoencoder, degrade(hr), hr)
        cond_scale = cond_scale if cond_scale > 0 else c
        target_scale = target_scale if target_scale > 0 else t
    channels = autoencoder.config.latent_channels if m.space == "latent" else 1
    torch.manual_seed(cfg.seed)
    return ConditionalDenoiser(space=m.space, residual=m.residual, prediction_type=m.prediction_type,
                               target_channels=channels, cond_channels=channels, target_scale=target_scale,
                               cond_scale=cond_scale, block_out_channels=tuple(m.block_out_channels),
                               layers_per_block=m.layers_per_block, attention_levels=tuple(m.attention_levels),
                               attention_head_dim=m.attention_head_dim, norm_num_groups=m.norm_num_groups)


def _mixed_precision(requested):
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def train(config, *, resume=True, progress=True, stop_at_step=None):
    """
    Train (or continue training) the model of ``config``.

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
        model=path)`` loads, or a diffusers autoencoder directory); `None` if stopped early.

    Raises
    ------
    FileNotFoundError
        If the config's data directory has no matching files.
    ValueError
        On an inconsistent config, or a checkpoint written by a different config.
    """
    from accelerate import Accelerator

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    out = Path(cfg.output_dir)
    total = cfg.total_steps()
    # accelerate only sets up multi-process CPU training (gloo, under torchrun) when told cpu=True.
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=on_cpu)
    rank, world = accelerator.process_index, accelerator.num_processes
    train_files, _ = _data_files(cfg)
    dataset = _dataset(cfg, train_files, seed=cfg.seed)
    kind = cfg.model.kind

    autoencoder = None
    if kind == "diffusion" and cfg.model.space == "latent":
        path = _autoencoder_stage(cfg, progress)  # every rank: the stage trains distributed too
        autoencoder = MagnetogramAutoencoder.from_pretrained(path, use_safetensors=True).to(accelerator.device)
        autoencoder.requires_grad_(False).eval()

    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
        if state["config"] != cfg.to_dict():
            raise ValueError(f"checkpoint {ckpt} was written by a different config; use another output_dir or "
                             "resume=False")
        cls = MagnetogramAutoencoder if kind == "autoencoder" else ConditionalDenoiser
        net = cls.from_pretrained(ckpt / "model", use_safetensors=True)
        start = int(state["step"])
    else:
        net = _build_network(cfg, train_files, autoencoder)
        start = 0
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if ckpt is not None:
        _load_optimizer(optimizer, ckpt)
        ema = load_file(ckpt / "ema.safetensors")
    else:
        ema = {n: p.detach().clone() for n, p in net.named_parameters()}
    ema = {n: t.to(accelerator.device) for n, t in ema.items()}

    module = _AutoencoderObjective(net) if kind == "autoencoder" else net
    module, optimizer = accelerator.prepare(module, optimizer)
    noise_scheduler = make_scheduler("ddpm", net.config) if kind == "diffusion" else None
    log_path = out / "log.jsonl"

    bar = tqdm(total=total, initial=start, desc=cfg.name, unit="step",
               disable=not (progress and accelerator.is_local_main_process))
    for step in range(start, total):
        t0 = time.perf_counter()
        hr = torch.from_numpy(dataset.batch(step, cfg.batch_size, rank=rank, world_size=world))[:, None]
        hr = hr.to(accelerator.device)
        gen = _step_generator(cfg.seed, step, rank)
        with accelerator.autocast():
            if kind == "autoencoder":
                f = net.factor
                eps = torch.randn((hr.shape[0], net.config.latent_channels, hr.shape[2] // f, hr.shape[3] // f),
                                  generator=gen).to(accelerator.device)
                loss = module(hr, eps)
            else:
                loss = diffusion_loss(module, net.config, autoencoder, noise_scheduler, degrade(hr), hr, gen)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # EMA with the usual warm-up, a function of the step only (exact resume).
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for n, p in net.named_parameters():
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
        if done % cfg.checkpoint_every == 0 or done == total:
            _save_checkpoint(accelerator, cfg, net, ema, optimizer, done)
    bar.close()
    return _export(accelerator, cfg, net, ema, autoencoder, total)


def _save_checkpoint(accelerator, cfg, net, ema, optimizer, step):
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        root = Path(cfg.output_dir) / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        accelerator.unwrap_model(net).save_pretrained(tmp / "model", safe_serialization=True)
        save_file({n: t.detach().cpu().contiguous() for n, t in ema.items()}, tmp / "ema.safetensors")
        _save_optimizer(optimizer, tmp)
        # state.json is written last: a checkpoint without it is incomplete and never resumed from.
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": cfg.to_dict(),
                                                    "package_version": __version__}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob(f"{CHECKPOINT_PREFIX}*"))[:-max(1, cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _export(accelerator, cfg, net, ema, autoencoder, step):
    """Write the EMA weights as the run's model (``output_dir/model``)."""
    accelerator.wait_for_everyone()
    final = Path(cfg.output_dir) / "model"
    if accelerator.is_main_process:
        model = copy.deepcopy(accelerator.unwrap_model(net)).cpu()
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(ema[n])
        shutil.rmtree(final, ignore_errors=True)
        if cfg.model.kind == "autoencoder":
            model.save_pretrained(final, safe_serialization=True)
        else:
            ae = None if autoencoder is None else copy.deepcopy(autoencoder).cpu()
            sr = DiffusionSuperResolution(model, ae, revision=f"{cfg.name}-step{step}",
                                          tile_size=cfg.model.tile_size, halo=cfg.model.halo, device="cpu")
            sr.save_pretrained(final)
        (final / "training_config.json").write_text(json.dumps({"config": cfg.to_dict(), "step": step,
                                                                "package_version": __version__}, indent=2))
        if cfg.model.kind != "autoencoder":
            from ..models.hub import write_manifest
            manifest = json.loads((final / "superres.json").read_text())
            write_manifest(final, {k: v for k, v in manifest.items()
                                   if k not in ("files", "format", "format_version", "package_version")})
    accelerator.wait_for_everyone()
    return final
