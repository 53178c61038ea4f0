"""
One training loop for every model (rule 9 of docs/dev/design.rst), on `accelerate`.

The paper's recipe (section 4): AdamW, learning rate 3e-4, batch 4, MSE, mixed precision, 30 epochs;
plus EMA weights (its code: decay 0.995) and gradient clipping; optionally a learning-rate schedule
(``lr_schedule``: cosine or linear decay, with warm-up). The same code runs on one CPU, one
GPU, or several processes started by ``torchrun``/``accelerate launch``.

What it trains is the task of ``[model] kind`` (`sunpy_superres.training.tasks`): the task builds the
network, draws each step's batch, computes the loss and exports the model, so the loop never asks
what it trains. From scratch the data are HR crops of full-disk HMI files with the paper's
degradation (section 4). With a ``[finetune]`` base model it fine-tunes on MDI/HMI pairs (section 7)
as the task's fine-tuning method says (`sunpy_superres.training.finetune`): LoRA and the mid block of
a diffusion model, all weights of a CNN.

Exact resume: a checkpoint holds the weights, the EMA weights, the optimizer state (safetensors and
JSON, no pickle) and the step. Batches, timesteps and noise of step ``s`` are drawn from generators
seeded by ``(seed, s, rank)`` (`sunpy_superres.seeds.step_seed`), so no RNG state has to be saved: a
run killed after a checkpoint and resumed ends with the same weights as one that never stopped.
"""

import copy
import glob
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..memory import keep_freed_memory
from ..seeds import step_seed
from ..version import __version__
from .common import finish_model_directory, trainable
from .config import FinetuneConfig, TrainConfig, check_lr_schedule
from .data import PairCrops
from .finetune import finetune_pairs
from .tasks import TASKS, get_task

__all__ = [
    "train",
    "latest_checkpoint",
    "export_checkpoint",
    "CHECKPOINT_PREFIX",
    "PairCrops",
    "finetune_pairs",
]

CHECKPOINT_PREFIX = "step-"


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
    had it stopped at that step. Only models whose checkpoint holds all their weights: diffusion
    models in pixel space or a space-to-depth latent, and the CNN baselines; a learnt autoencoder or
    a LoRA base is loaded from where the config says by `train` itself.

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
    task = get_task(cfg.model.kind)
    if cfg.finetune.enabled or not task.is_standalone(cfg):
        raise ValueError(
            "export_checkpoint exports models whose checkpoint holds all their weights (pixel or "
            "space-to-depth diffusion models, CNN baselines); this checkpoint is of a "
            f"{cfg.model.kind!r} run{' that fine-tunes' if cfg.finetune.enabled else ''}"
        )
    net = task.network_class.from_pretrained(checkpoint / "model", use_safetensors=True)
    ema = load_file(checkpoint / "ema.safetensors")
    with torch.no_grad():
        for n, p in trainable(net).items():
            p.copy_(ema[n])
    task.standalone_model(cfg, net, f"{cfg.name}-step{step}").save_pretrained(output)
    # What the run started or learnt from, as its checkpoint recorded it (older checkpoints: nothing).
    finish_model_directory(output, cfg, step, **state.get("provenance", {}))
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


def _mixed_precision(requested):
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def train(config, *, resume=True, progress=True, stop_at_step=None):
    """
    Train, fine-tune, or continue training the model of ``config``.

    Parameters
    ----------
    config : `~sunpy_superres.training.config.TrainConfig` or dict
        The run (a dict as `~sunpy_superres.training.config.TrainConfig.from_dict` reads it).
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
    task_class = get_task(cfg.model.kind)
    total = cfg.total_steps()  # refuses a config with neither max_steps nor epochs before any work
    schedule = lr_factor(cfg)  # and one with an unknown learning-rate schedule
    for stage in task_class.stages(cfg):
        train(stage, progress=progress)  # on every rank: a stage trains distributed too
    # accelerate only sets up multi-process CPU training (gloo, under torchrun) when told cpu=True.
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=on_cpu)
    task = task_class(cfg, accelerator, progress=progress)
    checkpoint = latest_checkpoint(cfg.output_dir) if resume else None
    net, start = _network(task, checkpoint)
    net.train()
    optimizer = torch.optim.AdamW(
        list(trainable(net).values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    if checkpoint is not None:
        _load_optimizer(optimizer, checkpoint)
        ema = load_file(checkpoint / "ema.safetensors")
    else:
        ema = {n: p.detach().clone() for n, p in trainable(net).items()}
    ema = {n: t.to(accelerator.device) for n, t in ema.items()}
    task.ema = ema  # updated in place after every step: a task may train against it (consistency)
    module, optimizer = accelerator.prepare(task.training_module(net), optimizer)
    # Every step's activations reuse the last step's pages (on a 2-core CPU, 18 % of a step otherwise).
    with keep_freed_memory():
        done = _run(
            task, module, net, optimizer, ema, start, schedule, progress=progress, stop_at_step=stop_at_step
        )
    if done is None:
        return None
    if done < total:
        warnings.warn(
            f"{cfg.name}: time limit of {cfg.time_limit_minutes:g} min reached after step {done} of "
            f"{total}; exported the model of step {done} (running the config again resumes)",
            stacklevel=2,
        )
    return task.weights.export(net, ema, done)


def _network(task, checkpoint):
    """
    The network to train and the step it starts at: new, or as ``checkpoint`` holds it.

    Raises
    ------
    ValueError
        If the checkpoint was written by a different config.
    """
    if checkpoint is None:
        return task.weights.new_network(), 0
    state = json.loads((checkpoint / "state.json").read_text())
    # Compared as configs, not dicts: a checkpoint written before a config field existed has that
    # field's default, and resumes.
    if _resumable(TrainConfig.from_dict(state["config"])) != _resumable(task.cfg):
        raise ValueError(
            f"checkpoint {checkpoint} was written by a different config; use another output_dir or resume=False"
        )
    return task.weights.load_network(checkpoint / "model"), int(state["step"])


def _run(task, module, net, optimizer, ema, start, schedule, *, progress, stop_at_step):
    """
    The training steps from ``start`` on, with checkpoints and the time limit.

    Returns
    -------
    int or None
        The steps done when the run ended or ran out of time; `None` if stopped at ``stop_at_step``.
    """
    cfg, accelerator = task.cfg, task.accelerator
    total = cfg.total_steps()
    bar = tqdm(
        total=total,
        initial=start,
        desc=cfg.name,
        unit="step",
        disable=not (progress and accelerator.is_local_main_process),
    )
    started, limit = time.monotonic(), 60.0 * cfg.time_limit_minutes
    done = total
    for step in range(start, total):
        t0 = time.perf_counter()
        lr = cfg.learning_rate * schedule(step)
        loss = _step(task, module, net, optimizer, ema, step, lr)
        dt = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss:.4g}", s_per_step=f"{dt:.2f}")
        bar.update(1)
        if accelerator.is_main_process:
            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(cfg.output_dir) / "log.jsonl", "a") as fh:
                record = {"step": step + 1, "loss": loss, "seconds": dt, "lr": lr}
                fh.write(json.dumps(record) + "\n")
        if stop_at_step is not None and step + 1 == stop_at_step:
            bar.close()
            return None
        out_of_time = limit > 0 and _all_agree(accelerator, time.monotonic() - started >= limit)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total or out_of_time:
            _save_checkpoint(task, net, ema, optimizer, step + 1)
        if out_of_time:
            done = step + 1
            break
    bar.close()
    return done


def lr_factor(cfg):
    """
    The learning-rate schedule of ``cfg``: ``factor(step)`` times ``learning_rate`` is the rate of
    (0-based) step ``step``.

    It is a function of the step alone, like the EMA decay, so a resumed run keeps to it without any
    scheduler state in its checkpoints. The factors are diffusers' own (`diffusers.optimization`),
    read off a scheduler built on a throw-away optimizer.

    Raises
    ------
    ValueError
        On an unknown ``lr_schedule`` or a negative ``warmup_steps``.
    """
    from diffusers.optimization import get_scheduler

    check_lr_schedule(cfg)  # a config built directly, not read, is checked here
    name = "constant_with_warmup" if cfg.lr_schedule == "constant" and cfg.warmup_steps else cfg.lr_schedule
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = get_scheduler(
        name, dummy, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.total_steps()
    )
    return scheduler.lr_lambdas[0]


def _step(task, module, net, optimizer, ema, step, lr):
    """One optimisation step at learning rate ``lr`` and its EMA update; returns the loss averaged
    over processes."""
    cfg, accelerator = task.cfg, task.accelerator
    for group in optimizer.param_groups:
        group["lr"] = lr
    batch = task.batch(step)
    generator = torch.Generator().manual_seed(step_seed(cfg.seed, step, task.rank))
    with accelerator.autocast():
        loss = task.loss(module, batch, generator)
    accelerator.backward(loss)
    if cfg.grad_clip > 0:
        accelerator.clip_grad_norm_(module.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # EMA with the usual warm-up, a function of the step only (exact resume).
    decay = min(cfg.ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for n, p in trainable(net).items():
            ema[n].lerp_(p.detach(), 1 - decay)
    return float(accelerator.gather(loss.detach()[None]).mean())


def _resumable(cfg):
    """``cfg`` without the fields a resumed run may change (its time limits; its length, where the
    learning rate does not depend on it) or never reads (the ``[finetune]`` table of a run that does
    not fine-tune, the ``[model]`` tables of other kinds: their defaults may change between
    releases)."""
    cfg = copy.deepcopy(cfg)
    cfg.time_limit_minutes = cfg.autoencoder_time_limit_minutes = 0.0
    if cfg.lr_schedule == "constant":
        # Every step of a constant-rate run is the same whatever its length (steps are seeded by
        # their number), so a finished run continues when its max_steps (or epochs) is raised.
        cfg.max_steps, cfg.epochs = 0, 0.0
    if not cfg.finetune.enabled:
        cfg.finetune = FinetuneConfig()
    read = get_task(cfg.model.kind).config_tables()
    for kind, task in TASKS.items():
        if task.config_class is not None and kind not in read:
            setattr(cfg.model, kind, task.config_class())
    return cfg


def _all_agree(accelerator, flag):
    """Whether any process says ``flag``, the same answer on every process (so all stop together)."""
    if accelerator.num_processes == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.gather(t).max() > 0)


def _save_checkpoint(task, net, ema, optimizer, step):
    accelerator, cfg = task.accelerator, task.cfg
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        root = Path(cfg.output_dir) / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        task.weights.save_network(accelerator.unwrap_model(net), tmp / "model")
        save_file({n: t.detach().cpu().contiguous() for n, t in ema.items()}, tmp / "ema.safetensors")
        _save_optimizer(optimizer, tmp)
        # state.json is written last: a checkpoint without it is incomplete and never resumed from.
        (tmp / "state.json").write_text(
            json.dumps(
                {
                    "step": step,
                    "config": cfg.to_dict(),
                    "provenance": task.provenance(),
                    "package_version": __version__,
                },
                indent=2,
            )
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob(f"{CHECKPOINT_PREFIX}*"))[: -max(1, cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
