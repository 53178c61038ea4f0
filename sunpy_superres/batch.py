"""
Super-resolve many magnetogram files on a Dask distributed cluster, resumably.

``superresolve_files(expand_paths(["mdi/**/*.fits"]), "out")`` runs `sunpy_superres.superresolve` on every
file, one Dask task per file, on a `distributed.LocalCluster` (or on any cluster a `distributed.Client` is
connected to), and writes ``<stem>_sr.fits`` beside a manifest of what was done. A killed run is
resumed by running the same call again: finished files are skipped, failed ones are retried.

Needs the ``[batch]`` extra (``pip install sunpy-superres[batch]``). `dask.distributed` is imported
by this module only, never by ``import sunpy_superres`` (DESIGN.md rule 8).

How it works
------------
* **The model is loaded once per worker**, not per file: a `distributed.WorkerPlugin` loads it in its
  ``setup`` (in a thread, so the worker keeps answering the scheduler) when the run registers the
  plugin, and again on a worker that joins or is restarted later. Tasks only carry file names. The
  plugin is unregistered at the end of the run, which frees the model (and its GPU memory).
* **GPUs are pinned one per worker**: with ``device="auto"`` a worker on a machine with CUDA GPUs uses
  ``cuda:<i>``, ``i`` its index (`distributed.LocalCluster` names workers 0, 1, ...) modulo the
  number of GPUs it sees; under ``dask-cuda`` (one ``CUDA_VISIBLE_DEVICES`` per worker) that is
  ``cuda:0``, its own GPU. The default local cluster starts one worker per GPU.
* **Outputs are atomic**: each is written to a temporary file beside it and renamed into place, so a
  file under its final name is always complete.
* **Worker deaths**: when a worker dies mid-file (killed, out of memory, segfault) the scheduler
  re-runs the file on another worker. After ``distributed.scheduler.allowed-failures`` deaths
  (default 3) on the same file it gives up with `distributed.KilledWorker`, recorded as that file's
  failure. Dask's ``retries=`` is not used: it re-runs tasks that *raise*, and a file that raises
  (not a magnetogram, say) fails the same way every time; it is recorded as failed with its reason,
  the other files go on, and a later run tries it again.
* **The manifest** ``manifest.ecsv`` in the output folder is an astropy ECSV table, one row per file
  (see `read_manifest`). During a run each finished file appends one row, flushed to disk, so a kill
  loses at most the line being written (dropped on reading); at the start and end of a run the table
  is rewritten atomically with one row per file. Appending keeps the cost per file constant for runs
  of many thousands of files, where rewriting the whole table after each one would not be.

Only one run at a time may write to an output folder.
"""

import asyncio
import contextlib
import glob
import importlib.util
import io
import os
import sys
import time
import uuid
import warnings
import zlib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import astropy.units as u
import dask.config
import numpy as np
from astropy.io import fits
from astropy.table import Table
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from tqdm.auto import tqdm

from . import __version__
from .io import atomic_output, read_map, save_map
from .models import available_models, load_model
from .models.base import SuperResolutionModel
from .seeds import file_seed
from .uncertainty import UncertaintyMap

__all__ = ["superresolve_files", "read_manifest", "file_seed", "output_name", "expand_paths", "MANIFEST_NAME"]

#: Name of the manifest file in the output folder.
MANIFEST_NAME = "manifest.ecsv"

#: Suffix added to an input's stem to name its output.
OUTPUT_SUFFIX = "_sr.fits"

_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".fz", ".z"}

# The manifest columns: name, dtype, unit, description (written into the ECSV header).
_COLUMNS = (
    ("input", str, None, "input file, absolute path"),
    ("output", str, None, "output file, relative to the output folder"),
    ("status", str, None, "done or failed"),
    ("reason", str, None, "why it failed, one line; empty when done"),
    ("seconds", np.float64, u.s, "wall time of the file on its worker"),
    ("bytes", np.int64, None, "size of the output file; -1 when failed"),
    (
        "seed",
        np.int64,
        None,
        "seed of this file as its header records it (SRSEED): from the run's seed and "
        "the file name, or drawn for the file; -1 for none",
    ),
    ("worker", str, None, "Dask worker address"),
    ("finished", str, None, "UTC time the file was finished (ISO 8601)"),
)

# Settings that change the output values: a folder holds results of one combination of them.
_SETTINGS = (
    "model",
    "samples",
    "seed",
    "steps",
    "scheduler",
    "start_timestep",
    "spacing",
    "noise_level",
    "calibrate",
    "tile_size",
    "overlap",
)


def output_name(path, root):
    """
    The output of ``path`` relative to the output folder: its folder under ``root``, ``<stem>_sr.fits``.

    Parameters
    ----------
    path : str or `pathlib.Path`
        Input file, under ``root``.
    root : str or `pathlib.Path`
        Folder whose tree is mirrored into the output folder.

    Returns
    -------
    `pathlib.PurePosixPath`
        E.g. ``2010/mdi.fd_M_96m_lev182.20101015_000000_TAI.data_sr.fits`` for
        ``ROOT/2010/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits``. A compression suffix is
        dropped with the extension (``x.fits.gz`` gives ``x_sr.fits``).
    """
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    name = rel.name
    stem, ext = os.path.splitext(name)
    if ext.lower() in _COMPRESSION_SUFFIXES and "." in stem:
        stem = os.path.splitext(stem)[0]
    return PurePosixPath(*rel.parent.parts, stem + OUTPUT_SUFFIX)


def expand_paths(patterns):
    """
    Expand glob patterns (``**`` matches folders recursively) into sorted, distinct file paths.

    Parameters
    ----------
    patterns : iterable of str or `pathlib.Path`
        Patterns or plain paths.

    Returns
    -------
    list of `pathlib.Path`
        Absolute paths of the matching files, sorted; directories are left out.

    Raises
    ------
    ValueError
        If a pattern matches no file, naming it.
    """
    found = []
    for pattern in patterns:
        matches = [Path(p) for p in glob.glob(os.fspath(pattern), recursive=True)]
        files = [p for p in matches if p.is_file()]
        if not files:
            raise ValueError(f"no file matches {os.fspath(pattern)!r}")
        found.extend(files)
    return sorted({Path(os.path.abspath(p)) for p in found})


def read_manifest(out_dir):
    """
    Read the manifest of an output folder: one row per file, the latest record of each.

    Parameters
    ----------
    out_dir : str or `pathlib.Path`
        Output folder of `superresolve_files`, or the manifest file itself.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``input`` (absolute path), ``output`` (relative to the folder), ``status``
        (``"done"`` or ``"failed"``), ``reason`` (one line, empty when done), ``seconds`` (s, wall time
        on the worker), ``bytes`` (output size, -1 when failed), ``seed`` (the file's seed, -1 for
        none), ``worker`` (Dask address) and ``finished`` (UTC, ISO 8601), sorted by ``input``; the
        run's settings (model, samples, seed, steps, scheduler, start_timestep, calibrate, tile_size,
        overlap, root, version) in ``meta``. Empty when there is no manifest yet.

    Raises
    ------
    ValueError
        If the file exists but is not a manifest.
    """
    path = Path(out_dir)
    if path.is_dir() or not path.suffix:
        path = path / MANIFEST_NAME
    return _Manifest(path).load().table()


class _Manifest:
    """The manifest file: loaded tolerantly, rewritten atomically, appended to one row at a time."""

    def __init__(self, path):
        self.path = Path(path)
        self.meta = {}
        self.rows = {}  # input -> row dict, the latest record of each file

    def load(self):
        if not self.path.exists():
            return self
        text = self.path.read_text()
        text = text[: text.rfind("\n") + 1]  # a line cut short by a kill mid-append is dropped
        try:
            table = Table.read(text, format="ascii.ecsv") if text else None
        except Exception as err:  # noqa: BLE001 - any parse failure means "not a manifest"
            raise ValueError(
                f"{self.path} is not a sunpy-superres manifest ({' '.join(str(err).split())}); "
                "move it away or choose another output folder."
            ) from err
        if table is None or [c[0] for c in _COLUMNS] != table.colnames:
            raise ValueError(
                f"{self.path} is not a sunpy-superres manifest; move it away or choose another output folder."
            )
        self.meta = dict(table.meta)
        for row in table:
            rec = {name: _plain(row[name]) for name, *_ in _COLUMNS}
            self.rows[rec["input"]] = rec  # later rows supersede earlier ones
        return self

    def table(self):
        table = _empty_table(self.meta)
        for key in sorted(self.rows):
            table.add_row([self.rows[key][name] for name, *_ in _COLUMNS])
        return table

    def write(self):
        """Rewrite the whole manifest, one row per file, through a temporary file and a rename."""
        with atomic_output(self.path, overwrite=True) as tmp:
            self.table().write(tmp, format="ascii.ecsv", overwrite=True)

    def append(self, rec):
        """Record one finished file: one ECSV data line, flushed to disk before returning."""
        self.rows[rec["input"]] = rec
        one = _empty_table({})
        one.add_row([rec[name] for name, *_ in _COLUMNS])
        buf = io.StringIO()
        one.write(buf, format="ascii.ecsv")
        line = buf.getvalue().splitlines()[-1]
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def is_done(self, key, out_dir):
        rec = self.rows.get(key)
        if rec is None or rec["status"] != "done":
            return False
        out = out_dir / rec["output"]
        # Outputs are renamed into place complete; a size that differs means someone else changed it.
        return out.is_file() and out.stat().st_size == rec["bytes"]


def _empty_table(meta):
    table = Table(names=[c[0] for c in _COLUMNS], dtype=[c[1] for c in _COLUMNS], meta=dict(meta))
    for name, _, unit, description in _COLUMNS:
        table[name].unit = unit
        table[name].description = description
    return table


def _plain(value):
    """A table cell as a plain Python value; ECSV reads an empty string back as masked."""
    if np.ma.is_masked(value):
        return ""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return str(value)


class _ModelPlugin(WorkerPlugin):
    """
    Loads the model once on each worker, on the worker's own device, and keeps it for the run.

    ``setup`` runs when the plugin is registered and on every worker that joins later (a restarted
    one included). Where it fails on a late worker, that worker's files fail with a reason saying so.
    """

    def __init__(self, model, *, device, sampler, samples):
        self.spec = model
        self.device = device
        self.sampler = sampler  # keyword arguments of configure_sampler
        self.samples = samples
        self.model = None

    async def setup(self, worker):
        device = _worker_device(self.device, worker.name)
        # In a thread: a large model takes seconds to load, and the worker must keep answering the
        # scheduler meanwhile. An error raised here reaches Client.register_plugin: the run stops
        # before any file is touched.
        self.model = await asyncio.to_thread(self._load, device)

    def _load(self, device):
        model = load_model(self.spec, device=device)
        model = model.configure_sampler(**self.sampler)
        if self.samples > 1 and not model.stochastic:
            raise ValueError(
                f"model {model.name!r} is deterministic, so every sample would be the same; "
                "use samples=1, or a diffusion model for an uncertainty estimate."
            )
        return model

    def teardown(self, worker):
        self.model = None
        if "torch" in sys.modules:  # give the GPU memory back to other processes
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _worker_device(device, worker_name):
    """``device`` for this worker: with ``"auto"`` and CUDA GPUs, one GPU per worker, by its index."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    try:
        index = int(worker_name)
    except (TypeError, ValueError):
        index = zlib.crc32(str(worker_name).encode())  # stable, unlike hash()
    return f"cuda:{index % torch.cuda.device_count()}"


def _written_by_us(path):
    """Whether ``path`` is a FITS file that sunpy-superres wrote (it carries the SRVERS key)."""
    try:
        with fits.open(path) as hdul:
            return any("SRVERS" in hdu.header for hdu in hdul[:2])
    except Exception:  # noqa: BLE001 - unreadable means "not ours"
        return False


def _one_line(err):
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _run_file(job, plugin_name):
    """One file, on a worker. Every error becomes the file's one-line reason; nothing is raised."""
    t0 = time.perf_counter()
    worker = get_worker()
    rec = {"status": "failed", "reason": "", "bytes": -1, "worker": worker.address}
    try:
        plugin = worker.plugins.get(plugin_name)
        if plugin is None or plugin.model is None:
            raise RuntimeError(f"the model is not loaded on worker {worker.address} (see its log)")
        out = Path(job["output"])
        if out.exists() and not job["overwrite"] and not _written_by_us(out):
            raise FileExistsError(
                f"{out} exists and was not written by sunpy-superres; remove it or pass "
                "overwrite=True (CLI: --overwrite)"
            )
        from .superresolve import superresolve

        result = superresolve(read_map(job["input"]), model=plugin.model, progress=False, **job["options"])
        if isinstance(result, UncertaintyMap):  # writes its own extensions, also atomically
            result.save(out, overwrite=True)
        else:
            save_map(result, out, overwrite=True)
        # The seed the output records (one drawn by superresolve when the run has none).
        rec.update(status="done", bytes=out.stat().st_size, seed=int(result.meta["srseed"]))
    except Exception as err:  # noqa: BLE001 - a bad file must not stop the run (see module docstring)
        rec["reason"] = _one_line(err)
    rec["seconds"] = time.perf_counter() - t0
    rec["finished"] = _now()
    return rec


def _now():
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "")


def _model_setting(model):
    if isinstance(model, SuperResolutionModel):
        return f"{type(model).__module__}.{type(model).__qualname__}:{model.name}@{model.revision}"
    return os.fspath(model) if isinstance(model, os.PathLike) else str(model)


def _check_int(name, value, minimum, allow_none):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}"
        )


def _default_workers():
    """Workers of a local cluster: one per CUDA GPU, else one per 4 CPU cores."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // 4)


@contextlib.contextmanager
def _connect(client, n_workers, cluster_kwargs):
    """The client to use: the caller's as it is, one to an address, or a new local cluster's."""
    if isinstance(client, Client):
        yield client
        return
    if client is not None:
        with Client(client) as own:
            yield own
        return
    n = _default_workers() if n_workers is None else n_workers
    threads = max(1, (os.cpu_count() or 1) // n)
    # Before it spawns a worker the nanny writes dask's pre-spawn-environ (OMP_NUM_THREADS=1, ...) into
    # its own process, which is this one: give the caller its environment back once the cluster is gone.
    saved = dict(os.environ)
    try:
        # One file at a time per worker (threads_per_worker=1); torch uses this worker's share of
        # the cores through OMP_NUM_THREADS, which must be set before the worker imports torch.
        kwargs = {
            "n_workers": n,
            "threads_per_worker": 1,
            "processes": True,
            # The dashboard has no authentication: this machine only (reach it with ssh -L).
            "dashboard_address": "127.0.0.1:8787",
            **(cluster_kwargs or {}),
        }
        with dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": threads}):
            with warnings.catch_warnings():
                # Dask serves the dashboard on another port when 8787 is taken, and says so with a
                # warning; the link printed at the start of the run has the port actually used.
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                cluster = LocalCluster(**kwargs)
        with cluster, Client(cluster) as own:
            yield own
    finally:
        for k in set(os.environ) - set(saved):
            del os.environ[k]
        os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})


def superresolve_files(
    paths,
    out_dir,
    *,
    client=None,
    model="default",
    samples=1,
    seed=None,
    steps=None,
    scheduler=None,
    start_timestep=None,
    spacing=None,
    noise_level=None,
    overwrite=False,
    n_workers=None,
    root=None,
    device="auto",
    calibrate=True,
    check_scale=True,
    tile_size=None,
    overlap=None,
    batch_size=4,
    resources=None,
    cluster_kwargs=None,
    progress=True,
):
    """
    Super-resolve many magnetogram files on a Dask cluster; resumable, one output per input.

    Each input ``ROOT/sub/name.fits`` gives ``out_dir/sub/name_sr.fits`` (the folder tree under
    ``root`` is mirrored), written atomically. A manifest ``out_dir/manifest.ecsv`` records every
    file as done or failed, with the reason, the time it took and its output. Running the same call
    again skips the files that are done (recorded as done and their output present, of the recorded
    size), retries those that failed, and does the rest: a killed run resumes without redoing or
    losing finished files.

    Parameters
    ----------
    paths : str, path-like or iterable of them
        Input magnetogram FITS files (e.g. SOHO/MDI ``fd_M_96m_lev182`` at 2"/pixel). Glob patterns
        are not expanded here; see `expand_paths`.
    out_dir : str or `pathlib.Path`
        Output folder, created if needed. Holds the outputs and the manifest.
    client : `distributed.Client` or str, optional
        Client of the cluster to run on, used as it is (and not closed), or a scheduler address to
        connect to. By default a `distributed.LocalCluster` is started for the run and closed after it.
    model : str or `~sunpy_superres.models.SuperResolutionModel`, optional
        As for `sunpy_superres.superresolve`; loaded once on each worker.
    samples : int, optional
        Stochastic samples per file; more than one writes an `~sunpy_superres.UncertaintyMap` (mean
        and per-pixel standard deviation in G).
    seed : int, optional
        Seed of the run. Each file gets its own seed, `file_seed` ``(seed, file name)``, recorded in
        the manifest and in the output header (``SRSEED``), so a file's result depends neither on the
        scheduling order nor on the worker, and can be reproduced alone with
        ``superresolve(map, seed=...)``. Without one, each file of a stochastic model gets a seed
        drawn by `~sunpy_superres.superresolve`, recorded the same way.
    steps, scheduler, start_timestep, spacing, noise_level : optional
        Sampler steps, name, first timestep and step spacing of diffusion models (``scheduler`` is the
        sampler, not Dask's), and the target noise level of a noise-conditioned one (G); see
        `sunpy_superres.superresolve`.
    overwrite : bool, optional
        Redo every file and replace existing outputs. Without it, finished files are skipped, and an
        output file that is not in the manifest is replaced only if sunpy-superres wrote it (a run
        killed between writing it and recording it); any other file in the way fails that input.
    n_workers : int, optional
        Workers of the local cluster (not used with ``client``): by default one per CUDA GPU, else one
        per 4 CPU cores. Each runs one file at a time with its share of the cores for torch.
    root : str or `pathlib.Path`, optional
        Folder whose tree is mirrored under ``out_dir``. By default the one recorded in the manifest
        when every input lies under it, else the deepest folder holding all inputs.
    device : str, optional
        ``"auto"`` pins one GPU per worker where there are GPUs (``cuda:<worker index mod GPUs>``),
        else uses the CPU; or a device for every worker (``"cpu"``, ``"cuda:0"``).
    calibrate, check_scale, tile_size, overlap, batch_size : optional
        As for `sunpy_superres.superresolve`.
    resources : dict, optional
        Dask resources each file needs, e.g. ``{"GPU": 1}`` on a cluster whose workers were started
        with ``--resources GPU=1``.
    cluster_kwargs : dict, optional
        More keyword arguments of the local `distributed.LocalCluster` (not used with ``client``), e.g.
        ``{"memory_limit": "16GiB"}``, or ``{"dashboard_address": ":8787"}`` to serve the dashboard
        beyond this machine (by default it listens on 127.0.0.1 only).
    progress : bool, optional
        Print the Dask dashboard link and show a progress bar of finished files (on stderr).

    Returns
    -------
    `~astropy.table.Table`
        The manifest after the run (see `read_manifest`): every file recorded in ``out_dir``, this
        run's and earlier ones'. ``meta["run"]`` counts this run's files: ``done``, ``failed``,
        ``skipped`` (done earlier).

    Raises
    ------
    ValueError
        For bad options, an unknown model, inputs that would share an output, or an ``out_dir``
        whose manifest was made with other settings (model, samples, seed, ...): use another folder
        or ``overwrite=True``, which starts a new manifest.

    Notes
    -----
    A worker that dies mid-file (killed, out of memory) has its file re-run on another worker by
    the Dask scheduler, up to ``distributed.scheduler.allowed-failures`` times (default 3); then the
    file is recorded as failed with `distributed.KilledWorker`. A file that raises (not a
    magnetogram, unreadable) is recorded as failed with a one-line reason, and the run goes on.
    Only one run at a time may use an output folder. Workers of your own cluster should run one
    task at a time (``dask worker --nthreads 1``): their tasks share the worker's model.

    Examples
    --------
    >>> from sunpy_superres.batch import expand_paths, superresolve_files
    >>> table = superresolve_files(expand_paths(["mdi/**/*.fits"]), "mdi_sr", seed=0)  # doctest: +SKIP
    >>> table[table["status"] == "failed"]["input", "reason"]  # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    inputs = sorted({Path(os.path.abspath(p)) for p in paths})
    _check_int("samples", samples, 1, False)
    _check_int("seed", seed, 0, True)
    _check_int("n_workers", n_workers, 1, True)
    if client is not None and (n_workers is not None or cluster_kwargs):
        raise ValueError(
            "n_workers and cluster_kwargs apply to the local cluster only; with client=, "
            "size your own cluster instead."
        )
    if (
        isinstance(model, str)
        and not model.startswith("hf://")
        and not os.path.isdir(model)
        and model not in available_models()
    ):
        load_model(model, device="cpu")  # raises the registry's ValueError, before any cluster starts
    sampler = {
        "steps": steps,
        "scheduler": scheduler,
        "start_timestep": start_timestep,
        "spacing": spacing,
        "noise_level": noise_level,
    }
    if any(v is not None for v in sampler.values()):
        # Sampler settings a model cannot take fail here, before any cluster starts or folder is made.
        load_model(model, device="cpu").configure_sampler(**sampler)
    if not inputs:
        raise ValueError("no input files given")
    out_dir = Path(os.path.abspath(out_dir))

    settings = {
        "model": _model_setting(model),
        "samples": int(samples),
        "seed": None if seed is None else int(seed),
        **sampler,
        "calibrate": calibrate,
        "tile_size": tile_size,
        "overlap": overlap,
    }
    manifest = _Manifest(out_dir / MANIFEST_NAME).load()
    recorded = {k: manifest.meta.get(k) for k in _SETTINGS}
    if manifest.rows and recorded != settings:
        if not overwrite:
            diff = ", ".join(
                f"{k}={recorded[k]!r} (now {settings[k]!r})" for k in _SETTINGS if recorded[k] != settings[k]
            )
            raise ValueError(
                f"{out_dir} holds results made with other settings: {diff}; choose another "
                "output folder, or pass overwrite=True to start it again."
            )
        manifest.rows = {}

    # Outputs that earlier runs wrote are never inputs (an output folder inside the input tree).
    ours = {str(out_dir / r["output"]) for r in manifest.rows.values()}
    inputs = [p for p in inputs if str(p) not in ours]
    if root is None:
        old = manifest.meta.get("root")
        root = (
            old
            if old and all(p.is_relative_to(old) for p in inputs)
            else os.path.commonpath([str(p.parent) for p in inputs])
        )
    root = Path(os.path.abspath(root))
    if not all(p.is_relative_to(root) for p in inputs):
        raise ValueError(
            f"root {root} does not hold every input, e.g. "
            f"{next(p for p in inputs if not p.is_relative_to(root))}"
        )
    manifest.meta = {**settings, "root": str(root), "version": __version__}

    planned = {}
    for p in inputs:
        rel = str(manifest.rows[str(p)]["output"]) if str(p) in manifest.rows else str(output_name(p, root))
        if rel in planned:
            raise ValueError(
                f"{planned[rel]} and {p} would both be written to {rel}; rename one or run "
                "them into different output folders."
            )
        planned[rel] = p
    taken = {r["output"]: k for k, r in manifest.rows.items() if k not in {str(p) for p in inputs}}
    for rel, p in planned.items():
        if rel in taken:
            raise ValueError(f"{p} would be written to {rel}, which holds the result of {taken[rel]}.")

    options = {
        "samples": int(samples),
        "calibrate": calibrate,
        "check_scale": check_scale,
        "tile_size": tile_size,
        "overlap": overlap,
        "batch_size": batch_size,
    }
    jobs, counts = [], {"done": 0, "failed": 0, "skipped": 0}
    for rel, p in sorted(planned.items(), key=lambda kv: str(kv[1])):
        if not overwrite and manifest.is_done(str(p), out_dir):
            counts["skipped"] += 1
            continue
        s = file_seed(seed, p)
        jobs.append(
            {
                "input": str(p),
                "output": str(out_dir / rel),
                "rel": rel,
                "seed": s,
                "overwrite": overwrite,
                "options": {**options, "seed": s},
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write()  # the settings, and a clean file to append to (no line cut short by a kill)

    def record(job, rec):
        seed_used = -1 if job["seed"] is None else job["seed"]
        rec = {"input": job["input"], "output": job["rel"], "seed": seed_used, **rec}  # a done file: its own
        manifest.append(rec)
        counts[rec["status"]] += 1

    try:
        if jobs:
            _run_jobs(
                jobs,
                client=client,
                n_workers=n_workers,
                cluster_kwargs=cluster_kwargs,
                model=model,
                device=device,
                sampler=sampler,
                samples=int(samples),
                resources=resources,
                progress=progress,
                record=record,
                n_skipped=counts["skipped"],
            )
        elif progress:
            print(f"sunpy-superres: nothing to do; {counts['skipped']} files done earlier", file=sys.stderr)
    finally:
        manifest.write()
    table = manifest.table()
    table.meta["run"] = counts
    return table


def _run_jobs(
    jobs,
    *,
    client,
    n_workers,
    cluster_kwargs,
    model,
    device,
    sampler,
    samples,
    resources,
    progress,
    record,
    n_skipped,
):
    plugin_name = f"sunpy-superres-model-{uuid.uuid4().hex}"
    with _connect(client, n_workers, cluster_kwargs) as dask_client:
        if progress:
            if "dashboard" not in dask_client.scheduler_info().get("services", {}):
                print("Dask dashboard: not running", file=sys.stderr)
            else:  # without bokeh dask serves a page that says to install it
                hint = "" if importlib.util.find_spec("bokeh") else " (install bokeh>=3.1 to see it)"
                print(f"Dask dashboard: {dask_client.dashboard_link}{hint}", file=sys.stderr)
        dask_client.register_plugin(
            _ModelPlugin(model, device=device, sampler=sampler, samples=samples), name=plugin_name
        )
        try:
            futures = {}
            for job in jobs:
                key = f"superresolve-{Path(job['rel']).name}-{uuid.uuid4().hex[:8]}"
                futures[
                    dask_client.submit(_run_file, job, plugin_name, key=key, pure=False, resources=resources)
                ] = job
            desc = f"files ({n_skipped} done earlier)" if n_skipped else "files"
            with tqdm(total=len(jobs), unit="file", desc=desc, disable=not progress) as bar:
                try:
                    for future in as_completed(futures):
                        job = futures.pop(future)
                        if future.status == "finished":
                            rec = future.result()
                        else:  # KilledWorker after repeated worker deaths, or a task lost with the cluster
                            exc = future.exception()
                            last = getattr(exc, "last_worker", None)
                            rec = {
                                "status": "failed",
                                "reason": _one_line(exc),
                                "bytes": -1,
                                "worker": getattr(last, "address", ""),
                                "seconds": float("nan"),
                                "finished": _now(),
                            }
                        record(job, rec)
                        bar.update()
                finally:
                    if futures:  # interrupted: stop the rest; what finished is in the manifest
                        dask_client.cancel(list(futures))
        finally:
            with contextlib.suppress(Exception):  # a lost cluster must not hide the real error
                dask_client.unregister_worker_plugin(plugin_name)
