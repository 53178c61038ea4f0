"""
Training of the autoencoder and the diffusion variants (extra ``[train]``: accelerate, peft).

``train(config)`` runs one `accelerate` loop for every model; what it trains is the task of the
config's model kind (`sunpy_superres.training.tasks`, one module per kind). `sunpy_superres.training.data`
makes crops from full-disk HMI files; configs are dataclasses (`sunpy_superres.training.config`) read
from TOML and saved with every checkpoint. Importing `sunpy_superres` never imports this subpackage.
"""

from .config import DataConfig, FinetuneConfig, ModelConfig, TrainConfig, load_config, shipped_configs
from .data import CropDataset, degrade, split_by_date
from .loop import export_checkpoint, latest_checkpoint, train
from .lora import load_adapter, save_adapter
from .pairs import (
    MagnetogramPair,
    degrade_to_mdi,
    fetch_pair,
    make_pair,
    make_synthetic_pair,
    split_paper_dates,
)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
    "shipped_configs",
    "CropDataset",
    "degrade",
    "split_by_date",
    "train",
    "latest_checkpoint",
    "export_checkpoint",
    "MagnetogramPair",
    "degrade_to_mdi",
    "fetch_pair",
    "make_pair",
    "make_synthetic_pair",
    "split_paper_dates",
    "FinetuneConfig",
    "load_adapter",
    "save_adapter",
]
