"""
What every training task shares: the run's files and crops, trained models by reference, the trainable
parameters, and the exported model directory with its training record.
"""

import copy
import glob
import json
import os
import shutil
from pathlib import Path

import torch

from ..version import __version__
from .data import CropDataset, observation_date, split_by_date

__all__ = [
    "FACTOR",
    "data_files",
    "crop_dataset",
    "load_reference",
    "trainable",
    "export_ema",
    "training_record",
    "finish_model_directory",
]

#: Super-resolution factor of every model trained here (MDI 2"/pixel -> HMI 0.5"/pixel).
FACTOR = 4


def data_files(cfg):
    """
    The training and validation files of ``[data]``, split by date.

    Parameters
    ----------
    cfg : `~sunpy_superres.training.config.TrainConfig`

    Returns
    -------
    train, validation : list of `pathlib.Path`

    Raises
    ------
    FileNotFoundError
        If no file matches ``[data] pattern`` in ``data_dir``.
    """
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


def crop_dataset(cfg, files, seed, *, noise_labels=False):
    """
    The HR crops of ``files`` (and of ``[data] patch_dir``) as ``[data]`` describes them.

    Parameters
    ----------
    cfg : `~sunpy_superres.training.config.TrainConfig`
    files : list of path-like
        Full-disk magnetograms.
    seed : int
        Base seed of the crops.
    noise_labels : bool, optional
        Label crops with their noise level, and add ``[data]``'s noise augmentation (for a
        noise-conditioned denoiser).

    Returns
    -------
    `~sunpy_superres.training.data.CropDataset`
    """
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
        noise_labels=noise_labels,
        noise_augment_gauss=d.noise_augment_gauss,
        noise_augment_fraction=d.noise_augment_fraction,
    )


def load_reference(ref):
    """
    A trained model by registry name, directory or ``hf://`` reference (checksums verified), on the CPU.

    Returns
    -------
    ref : str
        The reference with ``~`` and ``$VARS`` expanded (an ``hf://`` reference as given).
    model
        The loaded model (`sunpy_superres.models.load_model`).
    """
    from ..models.registry import load_model

    if not ref.startswith("hf://"):
        ref = os.path.expandvars(os.path.expanduser(ref))
    # As the directory stores it: a model served by its student (default_sampler) is trained as its teacher.
    return ref, load_model(ref, device="cpu", stored=True)


def trainable(net):
    """``{name: parameter}`` of what trains (everything but for LoRA); EMA and optimizer cover these."""
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


def _ema_copy(accelerator, net, ema):
    model = copy.deepcopy(accelerator.unwrap_model(net)).cpu()
    with torch.no_grad():
        for n, p in trainable(model).items():
            p.copy_(ema[n])
    return model


def export_ema(accelerator, net, ema, final, write):
    """
    Write the EMA weights of ``net`` as the directory ``final``, on the main process.

    Parameters
    ----------
    accelerator : `accelerate.Accelerator`
    net : `torch.nn.Module`
        The trained network (wrapped or not).
    ema : dict
        ``{name: tensor}`` EMA weights of its `trainable` parameters.
    final : `pathlib.Path`
        The directory; replaced if it exists.
    write : callable
        ``write(model)`` writes ``final`` from a CPU copy of the network holding the EMA weights.

    Returns
    -------
    `pathlib.Path`
        ``final``.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = _ema_copy(accelerator, net, ema)
        shutil.rmtree(final, ignore_errors=True)
        write(model)
    accelerator.wait_for_everyone()
    return final


def training_record(cfg, step, **extra):
    """What made a model: its config, the step it was exported at and the package version."""
    return {"config": cfg.to_dict(), "step": step, "package_version": __version__, **extra}


def finish_model_directory(final, cfg, step, **extra):
    """Add the training config to an exported model directory and re-record the manifest's checksums."""
    from ..models.hub import rewrite_manifest

    (final / "training_config.json").write_text(json.dumps(training_record(cfg, step, **extra), indent=2))
    rewrite_manifest(final)
