"""
LoRA fine-tuning of a diffusion denoiser on MDI/HMI pairs (Ramunno et al. 2025, section 7).

The paper fine-tunes its pre-trained residual LDM with "Low-Rank Adaption (LoRA) [...] for the self
attention layers and we unfreeze the bottleneck layers of the U-Net". Here that is:

* LoRA (Hu et al. 2021) on the attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of
  the denoiser's U-Net (`~sunpy_superres.models.unet.UNet2D`, diffusers' ``UNet2DModel`` with its
  module names), through `peft` (`peft.get_peft_model` wraps the `ConditionalDenoiser` directly);
* the bottleneck, ``unet.mid_block``, fully trainable (peft ``modules_to_save``). peft then trains a
  copy of the whole mid block, its own self-attention included, and puts no LoRA inside it;
* everything else frozen.

The adapter directory
---------------------
An adapter is saved *alone* (no base weights), never as a pickle (rule 6 of docs/dev/design.rst)::

    adapter/
      adapter_config.json        peft's LoRA config
      adapter_model.safetensors  peft's save_pretrained(safe_serialization=True): LoRA A/B and the
                                 mid block (peft's modules_to_save key layout)
      mid_block.safetensors      the trained mid block with plain ``unet.mid_block.*`` keys
      adapter.json               manifest: base model name/revision and sha256 of its superres.json,
                                 LoRA settings, sha256 of every file above

The mid block is written twice on purpose: ``mid_block.safetensors`` is loaded with ``strict=True``
*after* `peft.PeftModel.from_pretrained` (loading it before is undone by peft, and a non-strict
load under peft's renamed keys silently skips the attention weights), so a change of peft's key
layout for ``modules_to_save`` fails loudly instead of dropping the fine-tuned bottleneck.

`load_adapter` checks every sha256, refuses directories with pickle files, checks that the base is
the one the adapter was trained on, and merges (`peft.tuners.lora.LoraModel.merge_and_unload`) into
a plain `~sunpy_superres.models.diffusion.DiffusionSuperResolution` that saves as a normal model
directory.

References
----------
.. [1] Ramunno, F. P. et al. 2025, A&A 698, A140, section 7 (LoRA on self-attention, unfrozen bottleneck).
.. [2] Hu, E. J. et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models".
"""

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..models.diffusion import ConditionalDenoiser, DiffusionSuperResolution
from ..models.manifest import (
    MANIFEST,
    DirectoryFormat,
    WeightsNotFoundError,
    sha256_file,
    verify_directory,
)

__all__ = [
    "LORA_TARGET_MODULES",
    "LORA_CONV_TARGET_MODULES",
    "TRAINABLE_BLOCKS",
    "ADAPTER_MANIFEST",
    "add_lora",
    "lora_parameter_counts",
    "save_adapter",
    "verify_adapter",
    "load_adapter",
    "merge_lora",
]

#: Attention projections of diffusers' ``Attention`` that get LoRA (the paper: the self-attention layers).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
#: LoRA targets of a denoiser without self-attention (e.g. the embedded space-to-depth ``ldm-res``):
#: the two 3x3 convolutions of every ResNet block (peft's LoRA for ``Conv2d``).
LORA_CONV_TARGET_MODULES = ("conv1", "conv2")
#: U-Net blocks trained in full (the paper's unfrozen bottleneck).
TRAINABLE_BLOCKS = ("mid_block",)
ADAPTER_MANIFEST = "adapter.json"
ADAPTER_FORMAT = "sunpy-superres-adapter"
ADAPTER_FORMAT_VERSION = 1
_MID_BLOCK_FILE = "mid_block.safetensors"
_PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: An adapter directory, checked like a model directory (and refused if it holds a pickle).
ADAPTER_DIRECTORY = DirectoryFormat(
    "adapter",
    ADAPTER_MANIFEST,
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    "sunpy_superres.training.lora.save_adapter",
    "save the adapter again",
    refuse_pickles=True,
)


def _denoiser_of(model):
    if isinstance(model, DiffusionSuperResolution):
        return model.denoiser
    if isinstance(model, ConditionalDenoiser):
        return model
    raise TypeError(f"expected a DiffusionSuperResolution or ConditionalDenoiser, got {type(model).__name__}")


def add_lora(
    denoiser, *, rank=8, alpha=None, dropout=0.0, target_modules=None, train_mid_block=True, copy_model=True
):
    """
    Wrap a denoiser for LoRA fine-tuning: LoRA on attention projections, mid block trainable.

    The paper puts LoRA on the attention projections. A denoiser without self-attention gets it on
    the convolutions of its ResNet blocks instead (`LORA_CONV_TARGET_MODULES`).

    Parameters
    ----------
    denoiser : `~sunpy_superres.models.diffusion.ConditionalDenoiser`
        The pre-trained denoiser (needs self-attention somewhere for LoRA to have targets).
    rank : int, optional
        LoRA rank ``r``.
    alpha : float, optional
        LoRA scale numerator; the update is ``alpha / rank * B A``. Default: ``rank`` (scale 1).
    dropout : float, optional
        Dropout on the LoRA branch input.
    target_modules : sequence of str, optional
        Module-name suffixes that get LoRA. `None` or empty (default): `LORA_TARGET_MODULES` when the
        denoiser has self-attention, else `LORA_CONV_TARGET_MODULES`.
    train_mid_block : bool, optional
        Train ``unet.mid_block`` in full (the paper's unfrozen bottleneck).
    copy_model : bool, optional
        peft injects its layers in place; by default a deep copy is wrapped so the caller's model
        stays the base.

    Returns
    -------
    `peft.PeftModel`
        Only the LoRA matrices (and the mid block) have ``requires_grad``. LoRA ``B`` starts at zero,
        so the wrapped model computes exactly what the base does.

    Raises
    ------
    ValueError
        If ``rank`` is not positive or no module matches ``target_modules``.
    """
    from peft import LoraConfig, get_peft_model

    if int(rank) < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    den = copy.deepcopy(denoiser) if copy_model else denoiser
    names = [n for n, _ in den.named_modules()]
    if not target_modules:
        has_attention = any(n.endswith(t) for n in names for t in LORA_TARGET_MODULES)
        target_modules = LORA_TARGET_MODULES if has_attention else LORA_CONV_TARGET_MODULES
    if not any(n.endswith(t) for n in names for t in target_modules):
        raise ValueError(
            f"no module of the denoiser matches {list(target_modules)}: LoRA needs "
            "self-attention (set attention_levels) or other target modules"
        )
    config = LoraConfig(
        r=int(rank),
        lora_alpha=float(rank if alpha is None else alpha),
        lora_dropout=float(dropout),
        target_modules=list(target_modules),
        modules_to_save=list(TRAINABLE_BLOCKS) if train_mid_block else None,
    )
    return get_peft_model(den, config)


def lora_parameter_counts(peft_model):
    """
    Trainable parameters of a `add_lora` model, by kind.

    Returns
    -------
    dict
        ``lora`` (LoRA A/B), ``mid_block`` (the trainable bottleneck copy), ``trainable`` (their sum,
        everything with ``requires_grad``), ``base`` (parameters of the base denoiser alone).
    """
    lora = mid = trainable = 0
    for name, p in peft_model.named_parameters():
        if not p.requires_grad:
            continue
        trainable += p.numel()
        if ".lora_" in name:
            lora += p.numel()
        elif ".modules_to_save." in name:
            mid += p.numel()
    base = sum(
        p.numel()
        for n, p in peft_model.named_parameters()
        if ".lora_" not in n and ".modules_to_save." not in n
    )
    return {"lora": lora, "mid_block": mid, "trainable": trainable, "base": base}


def _trained_blocks(peft_model):
    """``{name: module}`` of the trained copies of `TRAINABLE_BLOCKS` inside a peft model."""
    from peft.utils import ModulesToSaveWrapper

    blocks = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            plain = name.removeprefix("base_model.model.")
            blocks[plain] = module.modules_to_save[module.active_adapters[0]]
    return blocks


def _base_info(base):
    """What identifies a base model: name, revision, sha256 of its manifest, denoiser config."""
    info = {"name": None, "revision": None, "manifest_sha256": None, "denoiser_config": None}
    if isinstance(base, (str, Path)):
        path = Path(base)
        manifest = json.loads((path / MANIFEST).read_text())
        info.update(
            name=manifest.get("name"),
            revision=manifest.get("revision"),
            manifest_sha256=sha256_file(path / MANIFEST),
        )
        den_cfg = json.loads((path / "denoiser" / "config.json").read_text())
    else:
        if isinstance(base, DiffusionSuperResolution):
            info.update(name=base.name, revision=base.revision)
        den_cfg = dict(_denoiser_of(base).config)
    info["denoiser_config"] = _comparable_config(den_cfg)
    return info


def _comparable_config(cfg):
    # diffusers adds private keys (_class_name, _diffusers_version, ...) that do not define the network.
    return json.loads(json.dumps({k: v for k, v in dict(cfg).items() if not k.startswith("_")}))


def save_adapter(peft_model, path, *, base, name="lora", revision="untrained", info=None):
    """
    Write a LoRA adapter alone (no base weights) as safetensors with an ``adapter.json`` manifest.

    Parameters
    ----------
    peft_model : `peft.PeftModel`
        A model from `add_lora` (possibly trained).
    path : str or path-like
        Adapter directory (created; existing files of the same names are replaced).
    base : str, path-like, `DiffusionSuperResolution` or `ConditionalDenoiser`
        The base model the adapter was trained on: a model directory (its manifest's sha256 is
        recorded, pinning the base exactly) or a model instance (name, revision and config).
    name : str, optional
        Name of the adapter.
    revision : str, optional
        Revision of the adapter, written into the headers of maps made with it.
    info : dict, optional
        More entries for the manifest (the fine-tuning loop records its config under ``training``).

    Returns
    -------
    `pathlib.Path`
        The adapter directory.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(path, safe_serialization=True)
    # peft also writes a Hub model-card template; adapter.json is this directory's description.
    (path / "README.md").unlink(missing_ok=True)
    blocks = _trained_blocks(peft_model)
    mid = {}
    for block_name, module in blocks.items():
        for k, v in module.state_dict().items():
            mid[f"{block_name}.{k}"] = v.detach().cpu().contiguous()
    files = list(_PEFT_FILES)
    if mid:
        save_file(mid, path / _MID_BLOCK_FILE)
        files.append(_MID_BLOCK_FILE)
    from ..version import __version__

    cfg = peft_model.peft_config[peft_model.active_adapter]
    manifest = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "kind": "lora",
        "name": str(name),
        "revision": str(revision),
        "base": _base_info(base),
        "lora": {
            "rank": cfg.r,
            "alpha": cfg.lora_alpha,
            "dropout": cfg.lora_dropout,
            "target_modules": sorted(cfg.target_modules),
            "modules_to_save": sorted(blocks),
        },
        **(info or {}),
        "package_version": __version__,
        "files": {f: sha256_file(path / f) for f in files},
    }
    (path / ADAPTER_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def verify_adapter(path):
    """
    Check an adapter directory: manifest, sha256 of every listed file, no pickle files.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    WeightsNotFoundError
        If the manifest or a listed file is missing.
    ChecksumError
        If a file's sha256 differs from the recorded one.
    ValueError
        If the directory holds a pickle file or the manifest is not an adapter manifest.
    """
    manifest = verify_directory(path, ADAPTER_DIRECTORY)
    for rel in _PEFT_FILES:
        if rel not in manifest["files"]:
            raise WeightsNotFoundError(f"{Path(path) / ADAPTER_MANIFEST} does not list {rel}")
    return manifest


def _check_base(manifest, base, adapter_dir):
    want, have = manifest["base"], _base_info(base)
    if want.get("denoiser_config") != have["denoiser_config"]:
        raise ValueError(
            f"adapter {adapter_dir} was trained on a denoiser with another architecture or "
            f"scale factors than the given base model {want.get('name')!r} revision "
            f"{want.get('revision')!r}"
        )
    sha_want, sha_have = want.get("manifest_sha256"), have["manifest_sha256"]
    if sha_want and sha_have and sha_want != sha_have:
        raise ValueError(
            f"adapter {adapter_dir} was trained on base model {want.get('name')!r} revision "
            f"{want.get('revision')!r} (superres.json sha256 {sha_want}), not on the given "
            f"directory (sha256 {sha_have}, revision {have['revision']!r}); pass that base "
            "model, or strict_base=False to apply it anyway"
        )
    if want.get("revision") and have["revision"] and want["revision"] != have["revision"]:
        raise ValueError(
            f"adapter {adapter_dir} was trained on base revision {want['revision']!r}, the "
            f"given model has revision {have['revision']!r}; pass strict_base=False to apply "
            "it anyway"
        )


def merge_lora(peft_model):
    """
    Fold LoRA into the attention weights and put the trained mid block in place.

    Returns
    -------
    `~sunpy_superres.models.diffusion.ConditionalDenoiser`
        A plain denoiser (no peft layers), computing what ``peft_model`` computes. ``peft_model`` is
        consumed (peft merges in place); pass a copy to keep it.
    """
    return peft_model.merge_and_unload()


class _UnmergedDiffusionSuperResolution(DiffusionSuperResolution):
    """A diffusion model whose denoiser is a `peft.PeftModel`; saving writes the merged model."""

    def save_pretrained(self, path):
        """Write the *merged* model as a normal model directory (see `DiffusionSuperResolution`)."""
        merged = merge_lora(copy.deepcopy(self.denoiser).cpu())
        plain = DiffusionSuperResolution(
            merged,
            self.autoencoder,
            name=self.name,
            revision=self.revision,
            sampler=self.sampler,
            steps=self.steps,
            tile_size=self.tile_size,
            halo=self.halo,
            device=self.device,
        )
        return plain.save_pretrained(path)


def load_adapter(base_model_or_dir, adapter_dir, *, merge=True, device="auto", strict_base=True):
    """
    A fine-tuned diffusion model: a base model plus a LoRA adapter directory.

    Parameters
    ----------
    base_model_or_dir : str, path-like, `DiffusionSuperResolution` or `~sunpy_superres.models.hub.HubModel`
        The base model: anything `sunpy_superres.models.load_model` accepts that gives a diffusion
        model (a model directory, a pinned ``hf://`` reference, an instance). It is not modified.
    adapter_dir : str or path-like
        Directory written by `save_adapter` (or by the fine-tuning loop, ``output_dir/adapter``).
    merge : bool, optional
        Fold the adapter into the weights (no peft at inference, same speed as the base). With
        ``False`` the denoiser is the `peft.PeftModel`; results agree to float rounding.
    device : str, optional
        Torch device of the returned model.
    strict_base : bool, optional
        Refuse a base whose revision (or, for a directory, manifest sha256) differs from the one the
        adapter records. The architecture and scale factors must match in any case.

    Returns
    -------
    `~sunpy_superres.models.diffusion.DiffusionSuperResolution`
        Name of the base, revision ``"<base revision>+<adapter revision>"``, the base's sampler and
        tiling defaults. ``save_pretrained`` writes a normal (merged) model directory.

    Raises
    ------
    WeightsNotFoundError, ChecksumError
        If a file of the adapter (or of a base directory) is missing or corrupt.
    ValueError
        If the adapter holds pickles, does not match the base, or the base is not a diffusion model.
    """
    from peft import PeftModel

    from ..models.registry import load_model

    adapter_dir = Path(adapter_dir)
    manifest = verify_adapter(adapter_dir)
    ref = str(base_model_or_dir) if isinstance(base_model_or_dir, Path) else base_model_or_dir
    base = load_model(ref, device="cpu", stored=True)  # the adapter fine-tuned the stored network
    if not isinstance(base, DiffusionSuperResolution):
        raise ValueError(f"LoRA adapters apply to diffusion models; the base is {base!r}")
    is_dir = isinstance(base_model_or_dir, (str, Path)) and Path(base_model_or_dir).is_dir()
    if strict_base:
        _check_base(manifest, str(base_model_or_dir) if is_dir else base, adapter_dir)
    else:
        _check_base({"base": {"denoiser_config": manifest["base"]["denoiser_config"]}}, base, adapter_dir)

    denoiser = copy.deepcopy(base.denoiser).cpu()
    peft_model = PeftModel.from_pretrained(denoiser, adapter_dir, is_trainable=False)
    # The mid block last and strictly (see the module notes): nothing of the bottleneck may be skipped.
    blocks = _trained_blocks(peft_model)
    if _MID_BLOCK_FILE in manifest["files"]:
        saved = load_file(adapter_dir / _MID_BLOCK_FILE)
        for block_name, module in blocks.items():
            prefix = block_name + "."
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}, strict=True
            )
    peft_model.eval()
    revision = f"{base.revision}+{manifest['revision']}"
    common = dict(
        name=base.name,
        revision=revision,
        sampler=base.sampler,
        steps=base.steps,
        tile_size=base.tile_size,
        halo=base.halo,
        device=device,
        # A residual to a regression keeps the base's (frozen, not adapted) regression.
        regression=None if base.regression is None else copy.deepcopy(base.regression).cpu(),
        regression_revision=base.regression_revision,
    )
    if merge:
        with torch.no_grad():
            return DiffusionSuperResolution(merge_lora(peft_model), base.autoencoder, **common)
    return _UnmergedDiffusionSuperResolution(peft_model, base.autoencoder, **common)
