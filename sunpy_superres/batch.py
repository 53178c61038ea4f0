"""
Super-resolve many magnetogram files on a Dask distributed cluster, resumably.

``superresolve_files(expand_paths(["mdi/**/*.fits"]), "out")`` runs `sunpy_superres.superresolve` on every
file, one Dask task per file, on a `distributed.LocalCluster` (or on any cluster a `distributed.Client` is
connected to), and writes ``<stem>_sr.fits`` beside a manifest of what was done. A killed run is
resumed by running the same call again: finished files are skipped, failed ones are retried.

Needs the ``[batch]`` extra (``pip install sunpy-superres[batch]``). `dask.distributed` is imported
by this module only, never by ``import sunpy_superres`` (rule 8 of docs/dev/design.rst).

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
import dataclasses
import glob
import importlib.util
import io
import os
import sys
import time
import uuid
import warnings
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import astropy.units as u
import dask.config
import numpy as np
from astropy.io import fits
from astropy.table import Table
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from tqdm.auto import tqdm

from .io import atomic_output, read_map, save_map
from .memory import keep_freed_memory
from .models import available_models, load_model
from .models.base import SuperResolutionModel
from .options import Options, fill_doc
from .seeds import file_seed
from .uncertainty import UncertaintyMap
from .version import __version__

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
    (
        "model",
        str,
        None,
        "model and weights that made the output, name@revision (SRMODEL@SRMODREV; a failed file: "
        "those its worker had loaded); empty where not recorded",
    ),
    (
        "version",
        str,
        None,
        "sunpy-superres version that made the output (SRVERS; a failed file: its worker's); empty "
        "where not recorded",
    ),
)

#: The columns of manifests written before the model and version of each file were recorded: read
#: with both empty (unknown).
_COLUMNS_BEFORE_PER_FILE_PROVENANCE = tuple(c[0] for c in _COLUMNS[:9])


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
        none), ``worker`` (Dask address), ``finished`` (UTC, ISO 8601), ``model`` (the model and
        weights that made the output, ``name@revision`` as its header's ``SRMODEL`` and ``SRMODREV``)
        and ``version`` (the sunpy-superres version that made it, ``SRVERS``; both empty where a
        manifest written before 2026-12-05 did not record them), sorted by ``input``; the
        run's settings (the options that change output values,
        `sunpy_superres.options.Options.output_settings`: model, samples, seed, sampler, ...; and
        root, version) in ``meta``. Empty when there is no manifest yet.

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
        names = [c[0] for c in _COLUMNS]
        if table is None or table.colnames not in (names, list(_COLUMNS_BEFORE_PER_FILE_PROVENANCE)):
            raise ValueError(
                f"{self.path} is not a sunpy-superres manifest; move it away or choose another output folder."
            )
        self.meta = dict(table.meta)
        for row in table:
            rec = {name: _plain(row[name]) if name in table.colnames else "" for name in names}
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
    Until ``teardown`` the worker keeps freed memory for reuse (`keep_freed_memory`), so that each
    file's networks reuse the pages of the file before instead of faulting in new ones.
    """

    def __init__(self, options):
        self.options = options
        self.model = None
        self._kept = None  # made on the worker: the plugin travels pickled

    async def setup(self, worker):
        device = _worker_device(self.options.device, worker.name)
        # In a thread: a large model takes seconds to load, and the worker must keep answering the
        # scheduler meanwhile. An error raised here reaches Client.register_plugin: the run stops
        # before any file is touched.
        self.model = await asyncio.to_thread(self._load, device)
        self._kept = contextlib.ExitStack()
        self._kept.enter_context(keep_freed_memory())

    def _load(self, device):
        from .superresolve import configured_model

        model = configured_model(dataclasses.replace(self.options, device=device))
        if self.options.samples > 1 and not model.stochastic:
            raise ValueError(
                f"model {model.name!r} is deterministic, so every sample would be the same; "
                "use samples=1, or a diffusion model for an uncertainty estimate."
            )
        return model

    def teardown(self, worker):
        self.model = None
        if self._kept is not None:
            self._kept.close()
            self._kept = None
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
    rec.update(model="", version=__version__)
    try:
        plugin = worker.plugins.get(plugin_name)
        if plugin is None or plugin.model is None:
            raise RuntimeError(f"the model is not loaded on worker {worker.address} (see its log)")
        rec["model"] = _model_identity(plugin.model)
        out = Path(job["output"])
        if out.exists() and not job["overwrite"] and not _written_by_us(out):
            raise FileExistsError(
                f"{out} exists and was not written by sunpy-superres; remove it or pass "
                "overwrite=True (CLI: --overwrite)"
            )
        from .superresolve import superresolve

        # The worker's model, loaded with the adapter, sampler and runtime settings applied.
        result = superresolve(
            read_map(job["input"]), options=dataclasses.replace(job["options"], model=plugin.model)
        )
        if isinstance(result, UncertaintyMap):  # writes its own extensions, also atomically
            result.save(out, overwrite=True)
        else:
            save_map(result, out, overwrite=True)
        # The seed, model and version the output records (a seed drawn by superresolve when the run has none).
        header = result.meta
        rec.update(
            status="done",
            bytes=out.stat().st_size,
            seed=int(header["srseed"]),
            model=f"{header['srmodel']}@{header['srmodrev']}",
            version=header["srvers"],
        )
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
def _connect(*, address, client, n_workers, cluster_kwargs):
    """The client to use: the caller's as it is, one to an address, or a new local cluster's."""
    if client is not None:
        yield client
        return
    if address is not None:
        with Client(address) as own:
            yield own
        return
    n = _default_workers() if n_workers is None else n_workers
    threads = max(1, (os.cpu_count() or 1) // n)
    # Before it spawns a worker the nanny writes dask's pre-spawn-environ (OMP_NUM_THREADS=1, ...) into
    # its own process, which is this one: give the caller its environment back once the cluster is gone.
    saved = dict(os.environ)
    try:
        # One file at a time per worker (threads_per_worker=1); torch and the BLAS libraries use
        # this worker's share of the cores, set before the worker imports them. Dask sets all three
        # to 1, and in a torch built with MKL (x86 wheels) MKL_NUM_THREADS wins over
        # OMP_NUM_THREADS: with it left at 1 a CPU worker ran on one core (24 s a full disk on two
        # cores, against 14 s). A variable already set in this process's environment (the user's
        # shell) wins over these, by dask's rule.
        kwargs = {
            "n_workers": n,
            "threads_per_worker": 1,
            "processes": True,
            # The dashboard has no authentication: this machine only (reach it with ssh -L).
            "dashboard_address": "127.0.0.1:8787",
            **(cluster_kwargs or {}),
        }
        # MALLOC_ARENA_MAX=1: the worker's task thread allocates from glibc's main arena, where
        # keep_freed_memory lets the networks reuse freed pages (sunpy_superres.memory); glibc reads
        # it when the worker process starts.
        environ = {
            **{f"{lib}_NUM_THREADS": threads for lib in ("OMP", "MKL", "OPENBLAS")},
            "MALLOC_ARENA_MAX": 1,
        }
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}):
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


@fill_doc(exclude=("progress",))
def superresolve_files(
    paths,
    out_dir,
    *,
    address=None,
    client=None,
    overwrite=False,
    n_workers=None,
    root=None,
    resources=None,
    cluster_kwargs=None,
    progress=True,
    options=None,
    **kwargs,
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
    address : str, optional
        Address of a running Dask scheduler to connect to, e.g. ``"tcp://10.0.0.5:8786"``. By
        default a `distributed.LocalCluster` is started for the run and closed after it.
    client : `distributed.Client`, optional
        Client of a cluster to run on, used as it is (and not closed). Not with ``address``.
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
    resources : dict, optional
        Dask resources each file needs, e.g. ``{"GPU": 1}`` on a cluster whose workers were started
        with ``--resources GPU=1``.
    cluster_kwargs : dict, optional
        More keyword arguments of the local `distributed.LocalCluster` (not used with ``client``), e.g.
        ``{"memory_limit": "16GiB"}``, or ``{"dashboard_address": ":8787"}`` to serve the dashboard
        beyond this machine (by default it listens on 127.0.0.1 only).
    progress : bool, optional
        Print the Dask dashboard link and show a progress bar of finished files (on stderr).
    options : `~sunpy_superres.options.Options`, optional
        The options of `sunpy_superres.superresolve` at once; keyword arguments replace its fields.
        ``seed`` seeds the run: each file gets `file_seed` ``(seed, file name)``, recorded in the
        manifest and the header (``SRSEED``). ``device="auto"`` gives a worker on a machine with GPUs
        ``cuda:<worker index mod GPUs>``. ``batch_size`` is 4 unless given (``"auto"`` would let
        every worker take 70 % of its GPU's free memory).
    {options}

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
        whose manifest was made with other settings (model, samples, seed, ...) or whose finished
        files were made with other weights (a model directory trained again, or another release's
        default): use another folder or ``overwrite=True``, which starts a new manifest.

    Warns
    -----
    UserWarning
        When finished files in ``out_dir`` were made by another version of sunpy-superres: they are
        kept, and the manifest's ``version`` column says which version made each file.

    Notes
    -----
    Worker deaths and files that raise are recorded, not fatal (see the module's notes). Workers of
    your own cluster should run one task at a time (``dask worker --nthreads 1``) with their share of
    the cores in ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``: dask's nanny sets both to 1 (its
    ``distributed.nanny.pre-spawn-environ`` setting), and torch then runs each file on one core.

    Examples
    --------
    >>> from sunpy_superres.batch import expand_paths, superresolve_files
    >>> table = superresolve_files(expand_paths(["mdi/**/*.fits"]), "mdi_sr", seed=0)  # doctest: +SKIP
    >>> table[table["status"] == "failed"]["input", "reason"]  # doctest: +SKIP
    """
    # Tiles per call: 4 unless asked, as before the options were shared. With "auto" each worker would
    # take 70 % of its GPU's free memory, too much where workers share a GPU.
    opts = Options.from_kwargs(options if options is not None else Options(batch_size=4), **kwargs)
    address, client = _cluster_address(address, client)
    inputs = _check_request(
        paths, opts, address=address, client=client, n_workers=n_workers, cluster_kwargs=cluster_kwargs
    )
    out_dir = Path(os.path.abspath(out_dir))
    manifest = _Manifest(out_dir / MANIFEST_NAME).load()
    identity = _model_identity(_client_model(opts))
    planned = _plan(manifest, inputs, out_dir, root, _settings(opts), overwrite=overwrite, identity=identity)
    counts = {"done": 0, "failed": 0, "skipped": 0}
    jobs = _jobs(manifest, planned, out_dir, opts, overwrite=overwrite, counts=counts)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write()  # the settings, and a clean file to append to (no line cut short by a kill)

    def record(job, rec):
        seed_used = -1 if job["seed"] is None else job["seed"]
        rec = {"input": job["input"], "output": job["rel"], "seed": seed_used, **rec}  # a done file: its own
        manifest.append(rec)
        counts[rec["status"]] += 1

    try:
        if jobs:
            cluster = dict(address=address, client=client, n_workers=n_workers, cluster_kwargs=cluster_kwargs)
            _run_jobs(
                jobs, cluster, opts, resources=resources, progress=progress, record=record, counts=counts
            )
        elif progress:
            print(f"sunpy-superres: nothing to do; {counts['skipped']} files done earlier", file=sys.stderr)
    finally:
        manifest.write()
    table = manifest.table()
    table.meta["run"] = counts
    return table


def _jobs(manifest, planned, out_dir, opts, *, overwrite, counts):
    """One job per planned file not done yet (``counts["skipped"]`` counts those done)."""
    jobs = []
    for rel, p in sorted(planned.items(), key=lambda kv: str(kv[1])):
        if not overwrite and manifest.is_done(str(p), out_dir):
            counts["skipped"] += 1
            continue
        s = file_seed(opts.seed, p)
        # Tasks carry no model (the plugin loads it once per worker, adapter included): this file's
        # seed, no tile bar.
        options = dataclasses.replace(opts, model=None, adapter=None, seed=s, progress=False)
        jobs.append(
            {
                "input": str(p),
                "output": str(out_dir / rel),
                "rel": rel,
                "seed": s,
                "overwrite": overwrite,
                "options": options,
            }
        )
    return jobs


def _cluster_address(address, client):
    """``(address, client)``, with a scheduler address given as ``client=`` (0.1) moved to ``address``."""
    if isinstance(client, str):
        warnings.warn(
            "client= takes a distributed.Client; give a scheduler address as address= (client= will "
            "stop taking one in a future release)",
            FutureWarning,
            stacklevel=3,
        )
        address, client = address or client, None
    if address is not None and client is not None:
        raise ValueError(
            "give address= (a scheduler to connect to) or client= (a connected Client), not both"
        )
    return address, client


def _check_request(paths, opts, *, address, client, n_workers, cluster_kwargs):
    """The inputs, sorted absolute paths; bad settings refused before any cluster starts or folder is made."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    inputs = sorted({Path(os.path.abspath(p)) for p in paths})
    _check_int("n_workers", n_workers, 1, True)
    if (address is not None or client is not None) and (n_workers is not None or cluster_kwargs):
        raise ValueError(
            "n_workers and cluster_kwargs apply to the local cluster only; with address= or client=, "
            "size your own cluster instead."
        )
    model = opts.model
    if (
        isinstance(model, str)
        and not model.startswith("hf://")
        and not os.path.isdir(model)
        and model not in available_models()
    ):
        load_model(model, device="cpu")  # raises the registry's ValueError, before any cluster starts
    if opts.adapter is not None:
        from .training.lora import verify_adapter  # peft: extra [train]

        verify_adapter(opts.adapter)  # a missing or corrupt adapter fails here, not on every worker
    if not inputs:
        raise ValueError("no input files given")
    return inputs


def _settings(opts):
    """The options that change output values, as the manifest records them."""
    settings = opts.output_settings()
    settings["model"] = _model_setting(opts.model)
    if settings["adapter"] is not None:
        settings["adapter"] = os.path.abspath(settings["adapter"])
    return settings


def _recorded_settings(meta):
    """The settings a manifest's header records; one written before an option existed had its default."""
    meta = dict(meta)
    if "scheduler" in meta and "sampler" not in meta:  # the sampler's name in 0.1
        meta["sampler"] = meta.pop("scheduler")
    defaults = {f.name: f.default for f in dataclasses.fields(Options)}
    return {k: meta.get(k, defaults[k]) for k in Options().output_settings()}


def _plan(manifest, inputs, out_dir, root, settings, *, overwrite, identity=None):
    """
    ``{output relative to out_dir: input}``, the manifest's settings and root updated, clashes refused.

    ``identity`` is the model the run would use, ``name@revision`` (`_model_identity`): a folder
    whose finished files another model's weights made is refused, as one of other settings is.
    """
    recorded = _recorded_settings(manifest.meta)
    if manifest.rows and recorded != settings:
        if not overwrite:
            diff = ", ".join(
                f"{k}={recorded[k]!r} (now {v!r})" for k, v in settings.items() if recorded[k] != v
            )
            raise ValueError(
                f"{out_dir} holds results made with other settings: {diff}; choose another "
                "output folder, or pass overwrite=True to start it again."
            )
        manifest.rows = {}
    if manifest.rows and not overwrite:
        _check_made_alike(manifest, out_dir, identity)

    # Outputs that earlier runs wrote are never inputs (an output folder inside the input tree).
    ours = {str(out_dir / r["output"]) for r in manifest.rows.values()}
    inputs = [p for p in inputs if str(p) not in ours]
    root = _root(root, inputs, manifest.meta.get("root"))
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
    return planned


def _check_made_alike(manifest, out_dir, identity):
    """
    Refuse to add to finished files of other weights; warn of finished files of another version.

    The same settings (`_plan`) can still mean other weights (a model directory trained again, or
    the default of another release) or another version of the code around them, whose outputs can
    differ (e.g. an HMI map's noise level, 2026-12-04). A run over an archive can take weeks, and
    one folder should hold one dataset: other weights are refused; another version is said, per
    file in the manifest, and its files are kept.
    """
    done = [r for r in manifest.rows.values() if r["status"] == "done"]
    other = sorted({r["model"] for r in done if r["model"] and identity and r["model"] != identity})
    if other:
        raise ValueError(
            f"{out_dir} holds results made with other weights: {', '.join(other)} (now {identity}); "
            "choose another output folder, pass overwrite=True to start it again, or finish it with "
            "the model (or sunpy-superres version) that made them."
        )
    # A manifest from before the per-file records: the version of the run that last wrote it.
    last = manifest.meta.get("version", "")
    versions = Counter(r["version"] or last for r in done)
    versions.pop(__version__, None)
    if versions:
        made = ", ".join(f"{n} by {v or 'an unrecorded version'}" for v, n in sorted(versions.items()))
        warnings.warn(
            f"{sum(versions.values())} of the {len(done)} finished files in {out_dir} were made by "
            f"another version of sunpy-superres ({made}; this is {__version__}), whose outputs can "
            "differ from this one's. They are kept and not made again; the manifest's version column "
            "says which version made each file. Pass overwrite=True (sunpy-superres batch: "
            "--overwrite) to make every file again with this version.",
            UserWarning,
            stacklevel=4,
        )


def _model_identity(model):
    """``name@revision`` of a loaded model, as its outputs' headers record it (``SRMODEL@SRMODREV``)."""
    return f"{model.name}@{model.revision}"


def _client_model(opts):
    """
    The model of ``opts`` as the workers will configure it, loaded on this process's CPU.

    Only for what it is (`_model_identity`), before any cluster starts or folder is made: a folder of
    other weights is refused first, and so are sampler settings the model cannot take. Precision and
    compilation do not change what it is.
    """
    from .superresolve import configured_model

    return configured_model(dataclasses.replace(opts, device="cpu", precision=None, compile=None))


def _root(root, inputs, recorded):
    """The folder mirrored under the output folder: given, recorded when it holds every input, or common."""
    if root is None:
        root = (
            recorded
            if recorded and all(p.is_relative_to(recorded) for p in inputs)
            else os.path.commonpath([str(p.parent) for p in inputs])
        )
    root = Path(os.path.abspath(root))
    if not all(p.is_relative_to(root) for p in inputs):
        raise ValueError(
            f"root {root} does not hold every input, e.g. "
            f"{next(p for p in inputs if not p.is_relative_to(root))}"
        )
    return root


def _run_jobs(jobs, cluster, opts, *, resources, progress, record, counts):
    """Run ``jobs`` on the cluster (``_connect``'s keywords), each result passed to ``record`` as it comes."""
    plugin_name = f"sunpy-superres-model-{uuid.uuid4().hex}"
    with _connect(**cluster) as dask_client:
        if progress:
            if "dashboard" not in dask_client.scheduler_info().get("services", {}):
                print("Dask dashboard: not running", file=sys.stderr)
            else:  # without bokeh dask serves a page that says to install it
                hint = "" if importlib.util.find_spec("bokeh") else " (install bokeh>=3.1 to see it)"
                print(f"Dask dashboard: {dask_client.dashboard_link}{hint}", file=sys.stderr)
        dask_client.register_plugin(_ModelPlugin(opts), name=plugin_name)
        try:
            futures = {}
            for job in jobs:
                key = f"superresolve-{Path(job['rel']).name}-{uuid.uuid4().hex[:8]}"
                futures[
                    dask_client.submit(_run_file, job, plugin_name, key=key, pure=False, resources=resources)
                ] = job
            n_skipped = counts["skipped"]
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
                                "model": "",  # the worker died: what it ran is not known here
                                "version": "",
                            }
                        record(job, rec)
                        bar.update()
                finally:
                    if futures:  # interrupted: stop the rest; what finished is in the manifest
                        dask_client.cancel(list(futures))
        finally:
            with contextlib.suppress(Exception):  # a lost cluster must not hide the real error
                dask_client.unregister_worker_plugin(plugin_name)
