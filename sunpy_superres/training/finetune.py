"""
Fine-tuning on MDI/HMI pairs (Ramunno et al. 2025, section 7): the pairs of a config, and how a
fine-tune's weights start, are checkpointed and exported.

A task (`sunpy_superres.training.tasks`) names its fine-tuning method; the loop only talks to the
task's `Weights`, so it never asks whether, or how, it fine-tunes:

* `Weights`: no fine-tuning; the task builds, saves and exports its network itself;
* `FullFinetune`: every weight of the base network trains (the paper's CNN baselines);
* `LoraFinetune`: LoRA on the base denoiser and its mid block in full
  (`sunpy_superres.training.lora`); checkpoints hold only what trains, and the export is the adapter
  alone (``output_dir/adapter``) and the merged model (``output_dir/model``).
"""

import copy
import glob
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import read_map
from ..seeds import pair_noise_seed
from .common import data_files, export_ema, finish_model_directory, trainable, training_record
from .data import observation_date

__all__ = ["finetune_pairs", "Weights", "FullFinetune", "LoraFinetune"]

_TRAINABLE_FILE = "trainable.safetensors"


def _read_map(path):
    """`sunpy_superres.io.read_map`, the header's date parsed now with its notes silenced."""
    smap = read_map(path)
    with warnings.catch_warnings():
        # Pre-2000 (MDI) dates: erfa says "dubious year"; a fact of the data, not our error.
        warnings.simplefilter("ignore")
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

    Parameters
    ----------
    cfg : `~sunpy_superres.training.config.TrainConfig`

    Returns
    -------
    list of tuple
        ``(lr, hr, valid)`` per pair (see `~sunpy_superres.training.pairs.MagnetogramPair.to_arrays`).

    Raises
    ------
    FileNotFoundError
        If no file or no pair is found.
    """
    ft = cfg.finetune
    crop = ft.pair_crop_size or None
    pairs = _synthetic_pairs(cfg, crop) if ft.pairs == "synthetic" else _directory_pairs(ft, crop)
    arrays = [pair.to_arrays() for pair in pairs]
    if not arrays:
        raise FileNotFoundError(f"no fine-tuning pairs ([finetune] pairs = {ft.pairs!r}, dates = {ft.dates})")
    return arrays


def _synthetic_pairs(cfg, crop):
    """Each HMI file of the training side (within ``[finetune] dates``) with its MDI-like degradation."""
    import astropy.units as u

    from .pairs import make_synthetic_pair

    ft = cfg.finetune
    files, _ = data_files(cfg)
    if ft.dates:
        files = [f for f in files if _in_dates(observation_date(f), ft.dates)]
    for i, f in enumerate(files):
        yield make_synthetic_pair(
            _read_map(f),
            crop_size=crop,
            psf_fwhm=ft.synthetic_psf_arcsec * u.arcsec,
            noise=ft.synthetic_noise_gauss * u.G,
            seed=pair_noise_seed(cfg.seed, i),
        )


def _directory_pairs(ft, crop):
    """Each MDI file of ``[finetune] pairs_dir`` (within ``dates``) with the HMI file nearest in time."""
    import astropy.units as u

    from .pairs import make_pair

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
        yield make_pair(_read_map(f), _read_map(hmi_files[k]), crop_size=crop, max_time_difference=limit)


class Weights:
    """
    How a run's network starts, is checkpointed and exported, when it does not fine-tune: as its
    task says.

    Parameters
    ----------
    task : `~sunpy_superres.training.tasks.base.Task`
        The run's task.
    ref : str, optional
        The fine-tuning base model as the config names it (``[finetune] base_model``, expanded).
    base : optional
        That model, loaded.
    """

    def __init__(self, task, ref=None, base=None):
        self.task, self.ref, self.base = task, ref, base

    def new_network(self):
        """The network at step 0."""
        return self.task.build_network()

    def load_network(self, path):
        """The network a checkpoint's ``model`` directory holds."""
        return self.task.load_network(path)

    def save_network(self, model, path):
        """Write ``model`` (unwrapped) into a new checkpoint's ``model`` directory ``path``."""
        model.save_pretrained(path, safe_serialization=True)

    def unwrap(self, net):
        """The network itself, without any fine-tuning wrapper (for its config)."""
        return net

    def export(self, net, ema, step):
        """Write the EMA weights as the run's model; returns ``output_dir/model``."""
        return self.task.export(net, ema, step)


class FullFinetune(Weights):
    """Every weight of the base network trains, as the paper fine-tunes its CNN baselines."""

    def new_network(self):
        """A copy of the base model's network."""
        return copy.deepcopy(self.base.network)


class LoraFinetune(Weights):
    """
    LoRA on the base denoiser, and its U-Net mid block in full (the paper's section 7).

    The frozen base is the config's ``base_model``: a checkpoint holds only what trains.
    """

    def new_network(self):
        """The base denoiser wrapped for LoRA (`sunpy_superres.training.lora.add_lora`)."""
        from .lora import add_lora

        cfg = self.task.cfg
        ft = cfg.finetune
        torch.manual_seed(cfg.seed)  # LoRA A is drawn at random: part of the run's definition
        return add_lora(
            self.base.denoiser,
            rank=ft.lora_rank,
            alpha=ft.lora_alpha or None,
            dropout=ft.lora_dropout,
            target_modules=tuple(ft.lora_target_modules),
            train_mid_block=ft.train_mid_block,
        )

    def load_network(self, path):
        """
        The base denoiser wrapped for LoRA, with a checkpoint's trainable tensors, all of them.

        Raises
        ------
        ValueError
            If the checkpoint holds other trainable tensors than the wrapped model.
        """
        net = self.new_network()
        path = Path(path) / _TRAINABLE_FILE
        saved = load_file(path)
        expected = set(trainable(net))
        if set(saved) != expected:
            raise ValueError(
                f"{path} holds other trainable tensors than the model: missing "
                f"{sorted(expected - set(saved))[:3]}, unexpected "
                f"{sorted(set(saved) - expected)[:3]}"
            )
        with torch.no_grad():
            for n, p in trainable(net).items():
                p.copy_(saved[n])
        return net

    def save_network(self, model, path):
        """Write the trainable tensors (LoRA matrices, mid block) of ``model`` into ``path``."""
        path.mkdir()
        save_file(
            {n: p.detach().cpu().contiguous() for n, p in trainable(model).items()}, path / _TRAINABLE_FILE
        )

    def unwrap(self, net):
        """The denoiser inside the peft wrapper."""
        return net.get_base_model()

    def export(self, net, ema, step):
        """
        Write the EMA adapter alone (``output_dir/adapter``) and the merged model (``output_dir/model``).

        The merged model is made by `~sunpy_superres.training.lora.load_adapter` from the files just
        written, so it is exactly what a user gets from the adapter directory.
        """
        from .lora import load_adapter, save_adapter

        cfg = self.task.cfg
        out = Path(cfg.output_dir)
        adapter, final = out / "adapter", out / "model"
        base = self.ref if Path(self.ref).is_dir() else self.base

        def write(model):
            info = {"training": training_record(cfg, step)}
            save_adapter(
                model, adapter, base=base, name=cfg.name, revision=f"{cfg.name}-step{step}", info=info
            )
            merged = load_adapter(base, adapter, merge=True, device="cpu")
            shutil.rmtree(final, ignore_errors=True)
            merged.save_pretrained(final)
            finish_model_directory(final, cfg, step)

        export_ema(self.task.accelerator, net, ema, adapter, write)
        return final
