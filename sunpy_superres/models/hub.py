"""
Model weights: local directories and pinned Hugging Face Hub references, checked by sha256.

A *model directory* holds diffusers-format sub-models (``config.json`` + ``*.safetensors``; never a
pickle, DESIGN.md rule 6) and a manifest ``superres.json``::

    {"format": "sunpy-superres-model", "format_version": 1, "kind": "diffusion",
     "name": "ldm-res", "revision": "...", "package_version": "...",
     "inference": {"scheduler": "dpm-solver++", "steps": 20, "tile_size": 256, "halo": 8},
     "files": {"denoiser/config.json": "<sha256>", "denoiser/diffusion_pytorch_model.safetensors": "<sha256>", ...}}

Every file listed is checked against its sha256 before anything is loaded. On the Hub a model is
named by a *pinned* reference, a 40-hex commit, never a branch::

    hf://owner/repo@0123456789abcdef0123456789abcdef01234567
    hf://owner/repo/sub/folder@<commit>#sha256=<sha256 of superres.json>

or the equivalent `HubModel` spec. The optional ``sha256`` is the recorded checksum of the
manifest; since the manifest records the checksums of every other file, one recorded hash pins all
the weights. Without it the commit pins the content (a git commit fixes each file's LFS sha256) and
the manifest still catches a corrupted cache.
"""

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

__all__ = [
    "HubModel",
    "WeightsNotFoundError",
    "ChecksumError",
    "parse_hub_reference",
    "write_manifest",
    "rewrite_manifest",
    "verify_directory",
    "verify_files",
    "load_directory",
    "fetch",
    "load_hub_model",
    "PINNED_WEIGHTS",
    "TRAINED_MODELS",
    "MANIFEST",
]

MANIFEST = "superres.json"
FORMAT = "sunpy-superres-model"
FORMAT_VERSION = 1

#: The trained models of the paper that ship as weights (diffusion variants and CNN baselines).
TRAINED_MODELS = {
    "ldm-res": "latent diffusion on the residual (Ramunno et al. 2025, their best model)",
    "ldm": "latent diffusion predicting the HR latent directly",
    "ddpm-res": "pixel-space diffusion on the scaled residual (Palette with residuals)",
    "ddpm": "pixel-space diffusion predicting the HR image directly (Palette)",
    "enhance": "Enhance CNN (Diaz Baso & Asensio Ramos 2018), deterministic",
    "progressive": "Progressive x2->x4 CNN (Rahman et al. 2020), deterministic",
}

#: Trained weights shipped under a registry name: ``{name: HubModel}``. Empty until trained
#: defaults are published (issue 5); a variant registers only when it has weights here.
PINNED_WEIGHTS = {}

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REFERENCE = re.compile(
    r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?P<sub>(/[\w.-]+)*)@(?P<rev>[^#]+)(#sha256=(?P<sha>.*))?$"
)


class WeightsNotFoundError(FileNotFoundError):
    """Model weights are neither in the cache nor reachable (e.g. offline with an empty cache)."""


class ChecksumError(ValueError):
    """A weights file does not have the sha256 that was recorded for it."""


@dataclass(frozen=True)
class HubModel:
    """
    A pinned model on the Hugging Face Hub.

    Parameters
    ----------
    repo_id : str
        ``"owner/name"``.
    revision : str
        The 40-hex commit; branch and tag names are refused because they can move.
    sha256 : str, optional
        Recorded sha256 of the model's ``superres.json`` manifest (which records the sha256 of every
        weights file).
    subfolder : str, optional
        Folder of the model inside the repository.
    """

    repo_id: str
    revision: str
    sha256: str | None = None
    subfolder: str = ""

    def __post_init__(self):
        if not _COMMIT.match(self.revision):
            raise ValueError(
                f"Hub revision must be a full 40-hex commit hash, got {self.revision!r}: a branch "
                "or tag can move, so the weights would not be pinned."
            )
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")

    def __str__(self):
        sub = f"/{self.subfolder}" if self.subfolder else ""
        sha = f"#sha256={self.sha256}" if self.sha256 else ""
        return f"hf://{self.repo_id}{sub}@{self.revision}{sha}"


def parse_hub_reference(reference):
    """
    Parse ``"hf://owner/repo[/subfolder]@<commit>[#sha256=<hex>]"`` into a `HubModel`.

    Raises
    ------
    ValueError
        If the reference is malformed or not pinned to a commit.
    """
    match = _REFERENCE.match(reference)
    if not match:
        raise ValueError(
            f"cannot parse Hub reference {reference!r}; expected "
            "'hf://owner/repo@<40-hex commit>' or 'hf://owner/repo/subfolder@<commit>#sha256=<hex>'"
        )
    return HubModel(match["repo"], match["rev"], match["sha"], match["sub"].strip("/"))


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
    from .. import __version__

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
        if p.is_file() and p.name != MANIFEST
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


def _read_manifest(path):
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise WeightsNotFoundError(
            f"{path} is not a sunpy-superres model directory: it has no {MANIFEST} "
            "(write one with the model's save_pretrained())."
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path} is not a {FORMAT} manifest of version {FORMAT_VERSION}")
    return manifest


def verify_directory(path):
    """
    Check every file listed in the manifest of ``path`` against its sha256.

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
    """
    path = Path(path)
    manifest = _read_manifest(path)
    verify_files(
        path,
        manifest["files"],
        MANIFEST,
        fix="download it again (delete it from the cache) or re-save the model",
    )
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


def load_directory(path, *, device="auto", revision=None):
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

    Raises
    ------
    WeightsNotFoundError, ChecksumError
        See `verify_directory`.
    ValueError
        If the manifest names an unknown model kind, or the files it lists (checksums matching) cannot
        be loaded: written by another program, or corrupted before their checksums were recorded.
    """
    manifest = verify_directory(path)
    try:
        return _load_verified(path, manifest, device=device, revision=revision)
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


def _load_verified(path, manifest, *, device, revision):
    if manifest.get("kind") == "diffusion":
        from .diffusion import DiffusionSuperResolution

        return DiffusionSuperResolution.from_pretrained(path, device=device, revision=revision)
    if manifest.get("kind") in ("enhance", "progressive"):
        from .enhance import EnhanceSuperResolution
        from .progressive import ProgressiveSuperResolution

        cls = EnhanceSuperResolution if manifest["kind"] == "enhance" else ProgressiveSuperResolution
        return cls.from_pretrained(path, device=device, revision=revision)
    raise ValueError(f"{path}: unknown model kind {manifest.get('kind')!r} in {MANIFEST}")


def _offline():
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at its import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


#: Seconds to wait for a TCP connection to the Hub before telling the user it cannot be reached.
HUB_CONNECT_TIMEOUT = 5.0


def _hub_unreachable(timeout=HUB_CONNECT_TIMEOUT):
    """Why the Hub endpoint cannot be reached (one TCP connection, ``timeout`` s), or `None` if it can.

    huggingface_hub retries a failed request with back-off for about half a minute before it falls back
    to the cache; one connection tells an offline machine at once.
    """
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{url.hostname}:{port} cannot be reached ({type(err).__name__}: {err})"


def _download(spec, filename, cache_dir):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    def missing(why):
        return WeightsNotFoundError(
            f"model weights {spec} are not available {why}: file {filename!r} of repository "
            f"{spec.repo_id!r} (revision {spec.revision}) is not in the Hugging Face cache "
            f"({cache_dir or 'the default cache, see HF_HUB_CACHE'}). Either download it once while online "
            f"(`hf download {spec.repo_id} --revision {spec.revision} --local-dir DIR`), or pass a local copy "
            "of the model directory as model='DIR'."
        )

    kwargs = dict(subfolder=spec.subfolder or None, revision=spec.revision, cache_dir=cache_dir)
    # A pinned commit never changes: a cached file is final, and needs no connection.
    try:
        return hf_hub_download(spec.repo_id, filename, local_files_only=True, **kwargs)
    except LocalEntryNotFoundError as err:
        if _offline():
            raise missing("with HF_HUB_OFFLINE=1") from err
    unreachable = _hub_unreachable()
    if unreachable:
        raise missing(f"without a connection to the Hub ({unreachable})")
    try:
        return hf_hub_download(spec.repo_id, filename, **kwargs)
    except LocalEntryNotFoundError as err:
        raise missing("without a connection to the Hub") from err
    except (EntryNotFoundError, RepositoryNotFoundError) as err:
        raise WeightsNotFoundError(
            f"model weights {spec}: file {filename!r} does not exist in repository "
            f"{spec.repo_id!r} at revision {spec.revision}."
        ) from err


def fetch(spec, *, cache_dir=None):
    """
    Download (or find in the cache) the model ``spec`` and verify it.

    Parameters
    ----------
    spec : `HubModel`
    cache_dir : str or path-like, optional
        Hugging Face cache; the default cache (``HF_HUB_CACHE``) when not given.

    Returns
    -------
    `pathlib.Path`
        The verified snapshot directory.

    Raises
    ------
    WeightsNotFoundError
        If a file is neither cached nor downloadable (the message names the repository and file and
        says how to use a local copy).
    ChecksumError
        If the manifest or a weights file does not match its recorded sha256.
    """
    manifest_path = Path(_download(spec, MANIFEST, cache_dir))
    if spec.sha256 is not None:
        actual = sha256_file(manifest_path)
        if actual != spec.sha256:
            raise ChecksumError(f"{MANIFEST} of {spec} has sha256 {actual}, but {spec.sha256} was recorded.")
    manifest = _read_manifest(manifest_path.parent)
    for rel in manifest["files"]:
        _download(spec, rel, cache_dir)
    verify_directory(manifest_path.parent)
    return manifest_path.parent


def load_hub_model(spec, *, device="auto", cache_dir=None):
    """Fetch and load a `HubModel` (or an ``"hf://..."`` string); its revision goes into headers."""
    if isinstance(spec, str):
        spec = parse_hub_reference(spec)
    path = fetch(spec, cache_dir=cache_dir)
    return load_directory(path, device=device, revision=spec.revision)


def no_weights_message(name):
    """Why a known diffusion variant cannot be loaded by name yet, and what to do instead."""
    return (
        f"model {name!r} ({TRAINED_MODELS[name]}) has no trained weights shipped with this version "
        "of sunpy-superres yet. Train one with `sunpy-superres-train CONFIG` (extra [train]) and pass the "
        "exported model directory as model='/path/to/dir', or a pinned Hub reference as "
        "model='hf://owner/repo@<40-hex commit>'."
    )
