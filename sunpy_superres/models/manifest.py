"""
Model directories: the ``superres.json`` manifest, sha256 verification, and the model kinds.

A *model directory* holds diffusers-format sub-models (``config.json`` + ``*.safetensors``; never a
pickle, rule 6 of ``docs/dev/design.rst``) and a manifest ``superres.json``::

    {"format": "sunpy-superres-model", "format_version": 1, "kind": "diffusion",
     "name": "ldm-res", "revision": "...", "package_version": "...",
     "inference": {"scheduler": "dpm-solver++", "steps": 20, "tile_size": 256, "halo": 8},
     "files": {"denoiser/config.json": "<sha256>", "denoiser/diffusion_pytorch_model.safetensors": "<sha256>", ...}}

Every file listed is checked against its sha256 before anything is loaded (`verify_directory`, the
one verification path of model directories, LoRA adapters and Hub downloads).

The manifest's ``kind`` names the class that loads the directory. Model kinds register themselves
with `register_kind` when their module is imported; `kind_class` imports that module the first
time a directory of its kind is loaded. This module imports no model (and no torch), so the
registry, the Hub client and the model modules all depend on it and not on each other.
"""

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from ..version import __version__

__all__ = [
    "MANIFEST",
    "WeightsNotFoundError",
    "ChecksumError",
    "sha256_file",
    "write_manifest",
    "rewrite_manifest",
    "read_manifest",
    "verify_directory",
    "verify_files",
    "load_directory",
    "DirectoryFormat",
    "MODEL_DIRECTORY",
    "register_kind",
    "kind_class",
]

MANIFEST = "superres.json"
FORMAT = "sunpy-superres-model"
FORMAT_VERSION = 1

#: Where each model kind registers itself: adding a kind is its module plus one line here.
KIND_MODULES = {
    "diffusion": "sunpy_superres.models.diffusion",
    "enhance": "sunpy_superres.models.enhance",
    "progressive": "sunpy_superres.models.progressive",
}

_KINDS = {}


def register_kind(kind):
    """
    A class decorator: directories whose manifest says ``"kind": kind`` are loaded by this class.

    The class provides ``from_verified(path, manifest, *, device, revision)``, called after every
    file of the directory was checked.
    """

    def decorate(cls):
        _KINDS[kind] = cls
        return cls

    return decorate


def kind_class(kind):
    """The class registered for ``kind`` (its module imported if needed), or `None`."""
    if kind not in _KINDS and kind in KIND_MODULES:
        importlib.import_module(KIND_MODULES[kind])
    return _KINDS.get(kind)


class WeightsNotFoundError(FileNotFoundError):
    """Model weights are neither in the cache nor reachable (e.g. offline with an empty cache)."""


class ChecksumError(ValueError):
    """A weights file does not have the sha256 that was recorded for it."""


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(path, info):
    """
    Write ``superres.json`` into the model directory ``path``, recording every file's sha256.

    Parameters
    ----------
    info : dict
        Model description (``kind``, ``name``, ``revision``, ``inference``, ...).
    """
    path = Path(path)
    for config in path.rglob("config.json"):
        # diffusers records the directory a network was loaded from as "_name_or_path": a local path
        # that says nothing about the weights, differs between machines and would change the checksum.
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    files = {
        p.relative_to(path).as_posix(): sha256_file(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p != path / MANIFEST  # a nested model's manifest is covered too
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **info,
        "package_version": __version__,
        "files": files,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return path / MANIFEST


def rewrite_manifest(path, updates=None):
    """
    Re-record the checksums of a model directory's files, keeping (and optionally updating) its
    description: after a file was added or changed, e.g. a model card or a training record.

    Parameters
    ----------
    path : path-like
        A model directory with a ``superres.json``.
    updates : dict, optional
        Entries to set in the description (``uncertainty_calibration``, ...).
    """
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    set_by_write = ("files", "format", "format_version", "package_version")
    info = {k: v for k, v in manifest.items() if k not in set_by_write}
    return write_manifest(path, {**info, **(updates or {})})


@dataclass(frozen=True)
class DirectoryFormat:
    """What a checked directory holds: its manifest's file name and format, and how one is written."""

    what: str  # "model" or "adapter", in messages
    manifest: str
    format: str
    version: int
    writer: str  # how to write one, in the message of a directory without a manifest
    fix: str  # what to do about a file whose checksum differs
    refuse_pickles: bool = False


#: A model directory (written by a model's ``save_pretrained``).
MODEL_DIRECTORY = DirectoryFormat(
    "model",
    MANIFEST,
    FORMAT,
    FORMAT_VERSION,
    "the model's save_pretrained()",
    "download it again (delete it from the cache) or re-save the model",
)

# Files that a pickle-based loader would run; a directory checked with refuse_pickles holds none.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def read_manifest(path, layout=MODEL_DIRECTORY):
    """The manifest of the directory ``path``, checked to be of the format ``layout`` says."""
    manifest_path = Path(path) / layout.manifest
    if not manifest_path.is_file():
        raise WeightsNotFoundError(
            f"{path} is not a sunpy-superres {layout.what} directory: it has no {layout.manifest} "
            f"(write one with {layout.writer})."
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != layout.format or manifest.get("format_version") != layout.version:
        raise ValueError(f"{manifest_path} is not a {layout.format} manifest of version {layout.version}")
    return manifest


def verify_directory(path, layout=MODEL_DIRECTORY):
    """
    Check a directory: its manifest, and every file it lists against its sha256.

    The one verification path of model directories, Hub downloads and LoRA adapters.

    Parameters
    ----------
    path : path-like
        The directory.
    layout : `DirectoryFormat`, optional
        What it holds; a model directory by default.

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
        If the manifest is of another format, or (where ``layout`` refuses them) a pickle file is
        there.
    """
    path = Path(path)
    manifest = read_manifest(path, layout)
    if layout.refuse_pickles:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(
                f"{layout.what} directory {path} holds pickle files {pickles}; only safetensors are "
                "loaded (a pickle can run code): remove them"
            )
    verify_files(path, manifest["files"], layout.manifest, fix=layout.fix)
    return manifest


def verify_files(directory, files, manifest_name, *, fix):
    """
    Check that every ``{relative path: sha256}`` of ``files`` exists in ``directory`` with that hash.

    Raises
    ------
    WeightsNotFoundError
        If a listed file is missing.
    ChecksumError
        If a file's sha256 differs from the recorded one (the message ends with ``fix``).
    """
    directory = Path(directory)
    for rel, expected in files.items():
        f = directory / rel
        if not f.is_file():
            raise WeightsNotFoundError(f"{directory} lacks {rel}, listed in its {manifest_name}")
        actual = sha256_file(f)
        if actual != expected:
            raise ChecksumError(
                f"{f} has sha256 {actual}, but {expected} was recorded: the file is corrupt or "
                f"was changed; {fix}."
            )


def load_directory(path, *, device="auto", revision=None, kind=None, cls=None):
    """
    Load a verified model directory.

    Parameters
    ----------
    path : str or path-like
        Directory with a ``superres.json`` manifest.
    device : str, optional
        Torch device.
    revision : str, optional
        Revision for output headers (default: the manifest's).
    kind : str, optional
        The kind the directory must hold (`None`: any registered kind).
    cls : type, optional
        The class that builds the model (a subclass of the kind's, say); the kind's by default.

    Raises
    ------
    WeightsNotFoundError, ChecksumError
        See `verify_directory`.
    ValueError
        If the manifest names an unknown model kind or another than ``kind``, or the files it lists
        (checksums matching) cannot be loaded: written by another program, or corrupted before
        their checksums were recorded.
    """
    manifest = verify_directory(path)
    found = manifest.get("kind")
    if kind is not None and found != kind:
        raise ValueError(f"{path} holds a {found!r} model, not {kind!r}")
    cls = cls or kind_class(found)
    if cls is None:
        raise ValueError(f"{path}: unknown model kind {found!r} in {MANIFEST}")
    try:
        return cls.from_verified(Path(path), manifest, device=device, revision=revision)
    except (OSError, RuntimeError, SafetensorError) as err:
        if isinstance(err, WeightsNotFoundError) or (
            isinstance(err, RuntimeError) and "state_dict" not in str(err) and "size mismatch" not in str(err)
        ):
            raise
        reason = " ".join(str(err).split())
        raise ValueError(
            f"{path}: the model's files match its manifest but cannot be loaded ({reason}); they "
            "are corrupt or not this package's format: export or download the model again"
        ) from err
