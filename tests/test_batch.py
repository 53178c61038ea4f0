"""
Batch runs on dask.distributed: worker death, resume, manifest, bad files, per-file seeds, the CLI.

One module-wide LocalCluster of 2 process workers (a kill is a real process death) serves most tests:
starting one and importing sunpy_superres and torch in its workers takes about 10 s on 2 cores.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from sunpy_superres import UncertaintyMap, __version__, cli, superresolve  # noqa: E402
from sunpy_superres.batch import (  # noqa: E402
    MANIFEST_NAME,
    expand_paths,
    file_seed,
    output_name,
    read_manifest,
    superresolve_files,
)
from sunpy_superres.data import MDI_AR_CUTOUT  # noqa: E402
from sunpy_superres.models.interpolation import NearestModel  # noqa: E402

from .conftest import read_map  # noqa: E402
from .helpers import NoisyNearest, synthetic_map  # noqa: E402

# A free port on this machine only: 8787 may be taken by another cluster, and a dashboard on all
# interfaces (0.0.0.0) counts as network access for pytest-remotedata.
LOCAL_DASHBOARD = "127.0.0.1:0"
# A worker process imports sunpy_superres and torch: about 10 s here, minutes on a loaded machine.
WAIT = 300


@pytest.fixture(scope="module")
def cluster():
    # The nanny writes dask's pre-spawn-environ (OMP_NUM_THREADS=1, ...) into this process's environment
    # too: give the rest of the test session its environment back.
    saved = dict(os.environ)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=LOCAL_DASHBOARD
    ) as cluster:
        yield cluster
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=WAIT)
        yield client


def make_inputs(folder, n=3):
    """``n`` different real MDI maps (submaps of the shipped cut-out) in two sub-folders."""
    mdi = read_map(MDI_AR_CUTOUT)
    paths = []
    for i in range(n):
        sub = folder / ("north" if i % 2 == 0 else "south")
        sub.mkdir(parents=True, exist_ok=True)
        part = mdi.submap([4 * i, 0] * u.pix, top_right=[4 * i + 95, 95] * u.pix)
        part.meta.pop("blank", None)  # the integer file's BLANK does not apply to the scaled float data
        path = sub / f"mdi_{i}.fits"
        part.save(path)
        paths.append(path)
    return paths


def temporaries(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".part")]


def mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*_sr.fits")}


def assert_same_as_direct(src, out, **kwargs):
    direct = superresolve(read_map(src), progress=False, **kwargs)
    result = read_map(out)
    np.testing.assert_array_equal(result.data, direct.data)
    assert result.wcs.wcs.compare(direct.wcs.wcs)
    for key in ("srmodel", "srseed", "srcalfac", "srfactor"):
        assert result.meta[key] == direct.meta[key]


class SlowOnceNearest(NearestModel):
    """
    The "nearest" model, except that the first tile anywhere in the cluster blocks its worker.

    Its worker writes its pid to ``marker`` and sleeps, for the test to kill it there, mid-file. Every
    unpickling (the way a model reaches a worker) appends the process id to ``load_log``.
    """

    name = "nearest"

    def __init__(self, marker, load_log):
        super().__init__(device="cpu")
        self.marker, self.load_log = str(marker), str(load_log)

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.load_log, "a") as fh:
            fh.write(f"{os.getpid()}\n")

    def predict(self, batch, *, seeds=None):
        claim = Path(f"{self.marker}.{os.getpid()}")
        claim.write_text(str(os.getpid()))
        try:
            os.link(claim, self.marker)  # atomic, and only the first caller in the cluster succeeds
        except FileExistsError:
            return super().predict(batch, seeds=seeds)
        finally:
            claim.unlink()
        time.sleep(600)  # the test kills this process meanwhile
        raise RuntimeError("this worker should have been killed")


def kill_when_marked(marker, killed, done):
    """Wait for ``marker`` (until ``done`` is set) and SIGKILL the process whose pid it holds."""
    while not done.is_set():
        if marker.exists():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_worker_killed_mid_file_then_rerun_does_nothing(client, tmp_path):
    """2 workers, 3 real maps, a worker killed mid-file: 3 right outputs and a manifest; a re-run is idle."""
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    marker, load_log = tmp_path / "marker", tmp_path / "loads.txt"
    model = SlowOnceNearest(marker, load_log)
    pids = client.run(os.getpid)  # worker address -> pid
    killed, done = [], threading.Event()
    killer = threading.Thread(target=kill_when_marked, args=(marker, killed, done))
    killer.start()
    try:
        table = superresolve_files(inputs, out, client=client, model=model, progress=False)
    finally:
        done.set()
        killer.join()

    assert list(table["status"]) == ["done"] * 3, list(table["reason"])
    assert len(killed) == 1 and killed[0] in pids.values()
    killed_address = next(a for a, p in pids.items() if p == killed[0])
    assert table.meta["run"] == {"done": 3, "failed": 0, "skipped": 0}
    assert killed_address not in set(table["worker"])  # the killed worker's file was finished elsewhere
    for src in inputs:
        assert_same_as_direct(src, out / output_name(src, tmp_path / "in"), model="nearest")
    assert read_manifest(out)["status"].tolist() == ["done"] * 3
    assert temporaries(tmp_path) == []

    # The model is loaded once per worker process, not per file: no pid unpickled it twice, and a worker
    # that did several files loaded it once.
    loads = Counter(int(p) for p in load_log.read_text().split() if int(p) != os.getpid())
    assert set(loads.values()) == {1}
    busiest, n_files = Counter(table["worker"]).most_common(1)[0]
    assert n_files >= 2 and loads[pids[busiest]] == 1

    before, manifest_before = mtimes(out), (out / MANIFEST_NAME).read_text()
    again = superresolve_files(inputs, out, client=client, model=model, progress=False)
    assert again.meta["run"] == {"done": 0, "failed": 0, "skipped": 3}
    assert mtimes(out) == before and len(before) == 3
    assert (out / MANIFEST_NAME).read_text() == manifest_before
    assert sum(loads.values()) == sum(1 for p in load_log.read_text().split() if int(p) != os.getpid())
    client.wait_for_workers(2, timeout=WAIT)  # the nanny restarts the killed worker; leave the cluster whole


def rewrite_manifest(out, **columns):
    """Rewrite the manifest in ``out`` as another run would have left it: ``columns`` replaced or dropped."""
    table = read_manifest(out)
    for name, value in columns.items():
        if value is None:
            del table[name]
        else:
            table[name] = value
    table.write(out / MANIFEST_NAME, format="ascii.ecsv", overwrite=True)


def test_a_folder_of_other_weights_is_refused_and_one_of_another_version_said(client, tmp_path, capsys):
    """One folder, one dataset: files of other weights are not added to; another version's are kept, with a warning."""
    inputs = make_inputs(tmp_path / "in", n=3)
    out = tmp_path / "out"
    superresolve_files(inputs[:2], out, client=client, model="nearest", progress=False, root=tmp_path / "in")
    first = mtimes(out)

    # The same settings ("nearest") but other weights made the finished files: refused before any work.
    rewrite_manifest(out, model=["nearest@older", "nearest@older"])
    with pytest.raises(ValueError, match="other weights: nearest@older \\(now nearest@none\\)"):
        superresolve_files(inputs, out, client=client, model="nearest", progress=False)
    assert mtimes(out) == first and read_manifest(out)["model"].tolist() == ["nearest@older"] * 2
    # The command says so with its own flag.
    capsys.readouterr()
    cluster = ("--cluster", client.scheduler.address, "--model", "nearest", "--quiet")
    assert run_cli(*map(str, inputs), "-o", out, *cluster) == 2
    err = capsys.readouterr().err
    assert "other weights: nearest@older" in err and "pass --overwrite" in err and "overwrite=True" not in err

    # Another version made one of them: kept and said, per file; the new file says this version.
    rewrite_manifest(out, model=["nearest@none"] * 2, version=["0.0.1", __version__])
    with pytest.warns(UserWarning, match=r"1 of the 2 finished files .* \(1 by 0\.0\.1; this is"):
        table = superresolve_files(inputs, out, client=client, model="nearest", progress=False)
    assert table.meta["run"] == {"done": 1, "failed": 0, "skipped": 2}
    assert table["version"].tolist() == ["0.0.1", __version__, __version__]
    assert all(mtimes(out)[p] == t for p, t in first.items())

    # A manifest written before the per-file records: read, its files' version is the run's that wrote it.
    rewrite_manifest(out, model=None, version=None)
    table = read_manifest(out)
    assert table["model"].tolist() == [""] * 3 and table["version"].tolist() == [""] * 3
    with pytest.warns(UserWarning, match=r"3 by 0\.0\.2"):
        manifest = out / MANIFEST_NAME
        manifest.write_text(manifest.read_text().replace(f"version: {__version__}", "version: 0.0.2"))
        table = superresolve_files(inputs, out, client=client, model="nearest", progress=False)
    assert table.meta["run"]["skipped"] == 3 and table.colnames[-2:] == ["model", "version"]
    # With overwrite=True every file is made again, by this version.
    table = superresolve_files(inputs, out, client=client, model="nearest", overwrite=True, progress=False)
    assert set(table["version"]) == {__version__} and set(table["model"]) == {"nearest@none"}


def test_manifest_and_bad_files(client, tmp_path, capsys):
    good = make_inputs(tmp_path / "in", n=2)
    not_fits = tmp_path / "in" / "south" / "notes.fits"
    not_fits.write_text("not a fits file")
    hmi_scale = tmp_path / "in" / "hmi_scale.fits"
    synthetic_map(scale=0.5).save(hmi_scale)
    out = tmp_path / "out"
    table = superresolve_files(good + [not_fits, hmi_scale], out, client=client, model="nearest", seed=7)
    assert "Dask dashboard" in capsys.readouterr().err
    assert table.colnames == [
        "input",
        "output",
        "status",
        "reason",
        "seconds",
        "bytes",
        "seed",
        "worker",
        "finished",
        "model",
        "version",
    ]
    assert table["seconds"].unit == u.s
    rows = {Path(r["input"]).name: r for r in table}
    assert rows["notes.fits"]["status"] == "failed"
    assert "cannot read it as a sunpy Map" in rows["notes.fits"]["reason"]
    assert rows["hmi_scale.fits"]["status"] == "failed"
    assert "outside the 1-4 arcsec/pixel" in rows["hmi_scale.fits"]["reason"]
    for r in table:
        assert "\n" not in r["reason"] and r["seconds"] >= 0
        assert r["worker"].startswith("tcp://") and r["finished"].startswith("20")
        assert r["seed"] == file_seed(7, r["input"])
        # What made it: the worker's model and version (a failed file too, as its worker had them).
        assert (r["model"], r["version"]) == ("nearest@none", __version__)
    for src in good:  # outputs mirror the sub-folders; the bad files did not stop them
        r = rows[src.name]
        assert r["status"] == "done" and r["reason"] == ""
        assert r["output"] == f"{src.parent.name}/{src.stem}_sr.fits"
        assert (out / r["output"]).stat().st_size == r["bytes"]
        header = read_map(out / r["output"]).meta
        assert header["srseed"] == r["seed"]
        assert r["model"] == f"{header['srmodel']}@{header['srmodrev']}" and r["version"] == header["srvers"]
    assert not (out / "south" / "notes_sr.fits").exists()
    assert temporaries(tmp_path) == []
    on_disk = read_manifest(out)
    assert on_disk.meta["model"] == "nearest" and on_disk.meta["seed"] == 7
    assert on_disk.meta["root"] == str(tmp_path / "in")
    assert [list(r) for r in on_disk] == [list(r) for r in table]

    # Fix one bad file: a re-run retries both failed files and skips the done ones.
    shutil.copyfile(good[0], not_fits)
    before = mtimes(out)
    again = superresolve_files(
        good + [not_fits, hmi_scale], out, client=client, model="nearest", seed=7, progress=False
    )
    assert again.meta["run"] == {"done": 1, "failed": 1, "skipped": 2}, list(again["reason"])
    assert {Path(r["input"]).name: r["status"] for r in again} == {
        "mdi_0.fits": "done",
        "mdi_1.fits": "done",
        "notes.fits": "done",
        "hmi_scale.fits": "failed",
    }
    assert all(mtimes(out)[p] == t for p, t in before.items())


def test_resume_after_partial_run(client, tmp_path):
    inputs = make_inputs(tmp_path / "in", n=4)
    out = tmp_path / "out"
    superresolve_files(inputs[:2], out, client=client, model="nearest", progress=False, root=tmp_path / "in")
    first = mtimes(out)
    # A kill mid-append: the second file's manifest line is cut short (its output is complete on disk).
    manifest = out / MANIFEST_NAME
    text = manifest.read_text()
    manifest.write_text(text[:-20])
    # Someone else's file where the fourth output goes: not ours to replace.
    foreign = out / output_name(inputs[3], tmp_path / "in")
    foreign.write_bytes(b"precious")

    table = superresolve_files(inputs, out, client=client, model="nearest", progress=False)
    assert table.meta["run"] == {"done": 2, "failed": 1, "skipped": 1}, list(table["reason"])
    status = {Path(r["input"]).name: r for r in table}
    assert [status[p.name]["status"] for p in inputs] == ["done", "done", "done", "failed"]
    assert "was not written by sunpy-superres" in status[inputs[3].name]["reason"]
    assert foreign.read_bytes() == b"precious"
    now = mtimes(out)
    out0 = out / output_name(inputs[0], tmp_path / "in")
    out1 = out / output_name(inputs[1], tmp_path / "in")
    assert now[out0] == first[out0]  # done and recorded: skipped
    assert now[out1] != first[out1]  # present but unrecorded: redone, replaced (it was ours)
    for src in inputs[:3]:
        assert_same_as_direct(src, out / output_name(src, tmp_path / "in"), model="nearest")
    assert len(read_manifest(out)) == 4 and temporaries(tmp_path) == []

    with pytest.raises(ValueError, match="other settings: model='nearest' \\(now 'bicubic'\\)"):
        superresolve_files(inputs, out, model="bicubic", progress=False)  # refused before any cluster starts


def test_stochastic_files_match_direct_calls(client, tmp_path):
    """Per-file seeds: an output equals superresolve(map, seed=file_seed(seed, name)), whatever the order."""
    src = tmp_path / "in" / "a.fits"
    src.parent.mkdir()
    shutil.copyfile(MDI_AR_CUTOUT, src)
    twin = tmp_path / "in" / "b.fits"
    shutil.copyfile(MDI_AR_CUTOUT, twin)
    out = tmp_path / "out"
    table = superresolve_files(
        [twin, src], out, client=client, model=NoisyNearest(device="cpu"), samples=2, seed=11, progress=False
    )
    assert list(table["status"]) == ["done", "done"]
    results = {}
    for path in (src, twin):
        direct = superresolve(
            read_map(path),
            model=NoisyNearest(device="cpu"),
            samples=2,
            seed=file_seed(11, path),
            progress=False,
        )
        got = UncertaintyMap.read(out / f"{path.stem}_sr.fits")
        np.testing.assert_array_equal(got.data, direct.data)
        np.testing.assert_array_equal(got.std, direct.std)
        results[path.name] = got.data
    assert not np.array_equal(results["a.fits"], results["b.fits"])  # same map, other name: other noise


def test_sampler_start_timestep_reaches_workers_and_manifest(client, tmp_path):
    from .models.tiny import tiny_model

    tiny_model("latent", True).save_pretrained(tmp_path / "model")
    src = tmp_path / "in" / "a.fits"
    src.parent.mkdir()
    shutil.copyfile(MDI_AR_CUTOUT, src)
    out = tmp_path / "out"
    table = superresolve_files(
        [src], out, client=client, model=str(tmp_path / "model"), seed=3, start_timestep=700, progress=False
    )
    assert list(table["status"]) == ["done"] and table.meta["start_timestep"] == 700
    assert read_map(out / "a_sr.fits").meta["srtstart"] == 700
    with pytest.raises(ValueError, match="start_timestep=700 \\(now 999\\)"):
        superresolve_files(
            [src],
            out,
            client=client,
            model=str(tmp_path / "model"),
            seed=3,
            start_timestep=999,
            progress=False,
        )
    # The same through the command, with the other sampler options.
    assert (
        run_cli(
            src,
            "-o",
            tmp_path / "cli",
            "--cluster",
            client.scheduler.address,
            "--model",
            tmp_path / "model",
            "--sampler",
            "ddpm",
            "--steps",
            "3",
            "--start-timestep",
            "500",
            "--quiet",
        )
        == 0
    )
    header = read_map(tmp_path / "cli" / "a_sr.fits").meta
    assert (header["srsched"], header["srsteps"], header["srtstart"]) == ("ddpm", 3, 500)
    # The target noise level of a noise-conditioned model: to the workers, the header and the manifest.
    tiny_model(noise_conditioning=True).save_pretrained(tmp_path / "conditioned")
    assert (
        run_cli(
            src,
            "-o",
            tmp_path / "noise",
            "--cluster",
            client.scheduler.address,
            "--model",
            tmp_path / "conditioned",
            "--steps",
            "2",
            "--noise-level",
            "4.5",
            "--quiet",
        )
        == 0
    )
    assert read_map(tmp_path / "noise" / "a_sr.fits").meta["srnoise"] == 4.5
    assert read_manifest(tmp_path / "noise").meta["noise_level"] == 4.5
    with pytest.raises(ValueError, match="not conditioned on a noise level"):
        superresolve_files(
            [src],
            tmp_path / "refused",
            client=client,
            model=str(tmp_path / "model"),
            noise_level=4.0,
            progress=False,
        )
    assert not (tmp_path / "refused").exists()


def test_file_seed_output_name_and_planning_errors(tmp_path):
    assert file_seed(None, "a.fits") is None
    assert file_seed(3, "/x/a.fits") == file_seed(3, "/y/z/a.fits")  # the name, not the folder
    assert len({file_seed(3, "a.fits"), file_seed(3, "b.fits"), file_seed(4, "a.fits")}) == 3
    assert 0 <= file_seed(2**40, "a.fits") < 2**63
    root = tmp_path / "data"
    assert (
        str(output_name(root / "2010" / "mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits", root))
        == "2010/mdi.fd_M_96m_lev182.20101015_000000_TAI.data_sr.fits"
    )
    assert str(output_name(root / "x.fits.gz", root)) == "x_sr.fits"
    root.mkdir()
    for name in ("a.fits", "a.fts"):
        (root / name).write_text("x")
    with pytest.raises(ValueError, match="would both be written to a_sr.fits"):
        superresolve_files(sorted(root.iterdir()), tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        superresolve_files([root / "a.fits"], tmp_path / "out", model="nope", progress=False)
    with pytest.raises(ValueError, match="samples"):
        superresolve_files([root / "a.fits"], tmp_path / "out", samples=0, progress=False)
    with pytest.raises(ValueError, match="no file matches"):
        expand_paths([str(root / "*.nothing")])
    assert expand_paths([str(tmp_path / "**" / "*.f*ts")]) == sorted(root.iterdir())
    assert not (tmp_path / "out").exists()  # nothing written for refused runs


def test_import_is_light():
    """Rule 8 of docs/dev/design.rst: dask.distributed only when batch is used."""
    code = "import sys, sunpy_superres, sunpy_superres.cli; assert 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def run_cli(*args):
    return cli.main(["batch", *(str(a) for a in args)])


def test_cli_batch_on_a_scheduler(cluster, client, tmp_path, capsys):
    inputs = make_inputs(tmp_path / "in", n=2)
    out = tmp_path / "out"
    pattern = str(tmp_path / "in" / "**" / "*.fits")
    assert (
        run_cli(pattern, "-o", out, "--cluster", cluster.scheduler_address, "--model", "nearest", "--quiet")
        == 0
    )
    assert "2 files done, 0 done earlier, 0 failed" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*_sr.fits")) == [
        "north/mdi_0_sr.fits",
        "south/mdi_1_sr.fits",
    ]

    (inputs[0].parent / "bad.fits").write_text("nope")
    assert (
        run_cli(pattern, "-o", out, "--cluster", cluster.scheduler_address, "--model", "nearest", "--quiet")
        == 1
    )
    captured = capsys.readouterr()
    assert "0 files done, 2 done earlier, 1 failed" in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and f"1 of 3 files failed; reasons in {out / MANIFEST_NAME}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing-*.fits", "-o", "out"], "no file matches"),
        ([MDI_AR_CUTOUT, "-o", "out", "--workers", "0"], "n_workers must be an integer >= 1"),
        (
            [MDI_AR_CUTOUT, "-o", "out", "--workers", "2", "--cluster", "tcp://127.0.0.1:1"],
            "--workers sizes",
        ),
        ([MDI_AR_CUTOUT, "-o", "out", "--model", "nope"], "available models are"),
        ([MDI_AR_CUTOUT, "-o", "out", "--samples", "0"], "samples must be"),
        ([MDI_AR_CUTOUT, "-o", "out", "--model", "nearest", "--start-timestep", "700"], "deterministic"),
        ([MDI_AR_CUTOUT, "-o", "out", "--sampler", "euler"], "unknown sampler"),
    ],
)
def test_cli_batch_bad_arguments(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sunpy-superres: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_default_local_cluster(tmp_path, capsys):
    """Without a client a LocalCluster is started and closed; the caller's environment is kept."""
    src = make_inputs(tmp_path / "in", n=1)[0]
    environ = dict(os.environ)
    table = superresolve_files(
        src,
        tmp_path / "out",
        n_workers=1,
        model="nearest",
        cluster_kwargs={"dashboard_address": LOCAL_DASHBOARD},
    )
    assert list(table["status"]) == ["done"]
    assert "Dask dashboard: http://127.0.0.1:" in capsys.readouterr().err
    assert_same_as_direct(src, tmp_path / "out" / "mdi_0_sr.fits", model="nearest")
    assert dict(os.environ) == environ


def test_worker_device_pins_one_gpu_per_worker(monkeypatch):
    """GPU pinning, as far as it can be checked without GPUs: worker i gets cuda:(i mod GPUs)."""
    import torch

    from sunpy_superres.batch import _worker_device

    assert _worker_device("cpu", 3) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _worker_device("auto", 0) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [_worker_device("auto", name) for name in (0, 1, "2", 3, 4, 5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
        "cuda:1",
    ]
    assert _worker_device("auto", "gpu-node-7") == _worker_device("auto", "gpu-node-7")  # stable
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # dask-cuda: one visible GPU per worker
    assert _worker_device("auto", 5) == "cuda:0"


class KillerOfConstants(NearestModel):
    """The "nearest" model, except that a constant tile kills its worker process (a segfault, say)."""

    name = "nearest"

    def predict(self, batch, *, seeds=None):
        if np.all(batch == batch.flat[0]):
            os._exit(1)
        return super().predict(batch, seeds=seeds)


def test_file_that_kills_its_workers_is_recorded_failed(cluster, client, tmp_path):
    """After allowed-failures worker deaths on one file, it is recorded as failed; the others finish.

    Last of the tests on the shared cluster: nothing waits for the killed worker to come back.
    """
    good = make_inputs(tmp_path / "in", n=1)[0]
    poison = tmp_path / "in" / "constant.fits"
    synthetic_map(value=100.0).save(poison)
    allowed = cluster.scheduler.allowed_failures
    cluster.scheduler.allowed_failures = 0  # the first death is final (default 3: four deaths)
    try:
        table = superresolve_files(
            [good, poison],
            tmp_path / "out",
            client=client,
            model=KillerOfConstants(device="cpu"),
            progress=False,
        )
    finally:
        cluster.scheduler.allowed_failures = allowed
    rows = {Path(r["input"]).name: r for r in table}
    assert rows["mdi_0.fits"]["status"] == "done"
    assert rows["constant.fits"]["status"] == "failed"
    assert rows["constant.fits"]["reason"].startswith("KilledWorker: ")
    assert rows["constant.fits"]["worker"].startswith("tcp://")
    assert read_manifest(tmp_path / "out")["status"].tolist() == list(table["status"])


def test_old_names_of_the_dask_address_still_work_with_a_warning(tmp_path, monkeypatch, capsys):
    """0.1 took the scheduler address as client= and --scheduler; both now warn and mean address."""
    from sunpy_superres.batch import _cluster_address

    with pytest.warns(FutureWarning, match="address="):
        assert _cluster_address(None, "tcp://127.0.0.1:1") == ("tcp://127.0.0.1:1", None)
    with pytest.raises(ValueError, match="not both"):
        _cluster_address("tcp://127.0.0.1:1", object())
    monkeypatch.chdir(tmp_path)
    with pytest.warns(FutureWarning, match="--cluster"):
        assert run_cli(MDI_AR_CUTOUT, "-o", "out", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1") == 2
    assert "do not combine it with --cluster" in capsys.readouterr().err


def test_a_manifest_of_0_1_is_read_with_the_options_it_had(tmp_path):
    """Settings recorded before an option existed are its default; "scheduler" was the sampler."""
    from sunpy_superres.batch import _recorded_settings, _settings
    from sunpy_superres.options import Options

    old = {"model": "nearest", "samples": 1, "seed": 3, "steps": None, "scheduler": "ddim", "start_timestep": None,
           "spacing": None, "noise_level": None, "calibrate": True, "tile_size": None, "overlap": None}  # fmt: skip
    assert _recorded_settings(old) == _settings(Options(model="nearest", seed=3, sampler="ddim"))
    assert _recorded_settings(old) != _settings(Options(model="nearest", seed=3))


def test_local_cluster_workers_keep_freed_memory(monkeypatch):
    """The workers of a run's own cluster allocate from one glibc arena and use their share of the
    cores, and the model plugin keeps freed memory for reuse from its setup to its teardown
    (sunpy_superres.memory)."""
    import asyncio
    import types

    from sunpy_superres import memory
    from sunpy_superres.batch import _connect, _ModelPlugin
    from sunpy_superres.options import Options

    # A variable set in this process wins over the run's (dask's rule): the module's cluster has
    # left dask's ones here, and a user's shell may set them.
    for lib in ("OMP", "MKL", "OPENBLAS"):
        monkeypatch.delenv(f"{lib}_NUM_THREADS", raising=False)
    environ = dict(os.environ)
    with _connect(
        address=None, client=None, n_workers=1, cluster_kwargs={"dashboard_address": LOCAL_DASHBOARD}
    ) as client:
        client.wait_for_workers(1, timeout=WAIT)
        assert list(client.run(lambda: os.environ.get("MALLOC_ARENA_MAX")).values()) == ["1"]
        # torch in the worker uses the worker's share of the cores (all of them for one worker): dask's
        # MKL_NUM_THREADS=1 would otherwise win over OMP_NUM_THREADS in a torch built with MKL.
        threads = client.run(lambda: __import__("torch").get_num_threads())
        assert list(threads.values()) == [os.cpu_count() or 1]
    assert dict(os.environ) == environ

    monkeypatch.setattr(
        memory, "_glibc", lambda: types.SimpleNamespace(mallopt=lambda *a: 1, malloc_trim=lambda p: 1)
    )
    plugin = _ModelPlugin(Options(model="nearest"))
    depth = memory._depth
    asyncio.run(plugin.setup(types.SimpleNamespace(name=0)))
    during = memory._depth
    plugin.teardown(None)
    assert during == depth + 1 and memory._depth == depth and plugin.model is None
