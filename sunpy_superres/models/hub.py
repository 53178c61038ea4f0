"""
Model weights on the Hugging Face Hub, pinned to a commit and checked by sha256.

A model is a model directory (see `sunpy_superres.models.manifest`: a ``superres.json`` manifest
recording the sha256 of every file). On the Hub a model is named by a *pinned* reference, a 40-hex
commit, never a branch::

    hf://owner/repo@0123456789abcdef0123456789abcdef01234567
    hf://owner/repo/sub/folder@<commit>#sha256=<sha256 of superres.json>

or the equivalent `HubModel` spec. The optional ``sha256`` is the recorded checksum of the
manifest; since the manifest records the checksums of every other file, one recorded hash pins all
the weights. Without it the commit pins the content (a git commit fixes each file's LFS sha256) and
the manifest still catches a corrupted cache.
"""

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

# Re-exported: these lived here before the manifest module existed, and users import them from here.
from .manifest import (  # noqa: F401
    MANIFEST,
    ChecksumError,
    WeightsNotFoundError,
    load_directory,
    read_manifest,
    rewrite_manifest,
    sha256_file,
    verify_directory,
    verify_files,
    write_manifest,
)

__all__ = ["HubModel", "parse_hub_reference", "fetch", "load_hub_model", "PINNED_WEIGHTS", "TRAINED_MODELS"]

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
    manifest = read_manifest(manifest_path.parent)
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
