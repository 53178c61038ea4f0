"""
Issue 15: bad input through the CLI and the API is refused in one line (exit 2), loses nothing and
leaves nothing behind. Each test failed before its fix.
"""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits

from sunpy_superres import cli, superresolve
from sunpy_superres.data import MDI_AR_CUTOUT
from sunpy_superres.io import atomic_output, remove_stale_parts
from sunpy_superres.superresolve import LongRunWarning

from .helpers import NoisyNearest, synthetic_map


def run_cli(*args):
    return cli.main([str(a) for a in args])


def one_line_refusal(capsys, *needles):
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("sunpy-superres: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def mdi_file(tmp_path):
    src = tmp_path / "in.fits"
    shutil.copyfile(MDI_AR_CUTOUT, src)
    return src


def _rewrite(src, dst, data=None, **keys):
    with fits.open(src) as hdus:
        index = next(i for i, h in enumerate(hdus) if h.data is not None)
        header = hdus[index].header.copy()
        data = hdus[index].data.copy() if data is None else data(hdus[index].data)
    for key, value in keys.items():
        header[key] = value
    fits.writeto(dst, data, header)
    return dst


# --- case 2: a cube is not silently reduced to its first plane --------------------------------------


def test_cube_is_refused_not_reduced(mdi_file, tmp_path, capsys):
    cube = _rewrite(mdi_file, tmp_path / "cube.fits", data=lambda d: np.stack([d, d, d]))
    assert run_cli(cube, "-o", tmp_path / "o.fits", "--model", "bicubic", "--quiet") == 2
    one_line_refusal(capsys, "3-D", "(3, ", "first plane")
    assert not (tmp_path / "o.fits").exists()


# --- case 4: uint8 data and a negative CDELT1 -----------------------------------------------------


def test_unsigned_data_are_refused_as_not_a_magnetogram(mdi_file, tmp_path, capsys):
    img = _rewrite(
        mdi_file,
        tmp_path / "u8.fits",
        data=lambda d: np.clip(np.nan_to_num(d) / 10 + 128, 0, 255).astype(np.uint8),
    )
    assert run_cli(img, "-o", tmp_path / "o.fits", "--model", "bicubic", "--quiet") == 2
    line = one_line_refusal(capsys, "uint8", "both polarities")
    assert "'norm'" not in line
    # The API says the same for a Map built in memory.
    m = synthetic_map((32, 32))
    with pytest.raises(ValueError, match="uint8.*both polarities"):
        superresolve(sunpy.map.Map(np.zeros((32, 32), np.uint8), m.meta), model="bicubic", progress=False)


def test_negative_cdelt1_is_a_mirrored_axis_not_a_refusal(mdi_file, tmp_path):
    flipped = _rewrite(mdi_file, tmp_path / "flip.fits", CDELT1=-abs(sunpy.map.Map(mdi_file).meta["cdelt1"]))
    out = tmp_path / "o.fits"
    assert run_cli(flipped, "-o", out, "--model", "bicubic", "--quiet") == 0
    lo, hi = sunpy.map.Map(flipped), sunpy.map.Map(out)
    assert hi.meta["cdelt1"] == pytest.approx(lo.meta["cdelt1"] / 4) and hi.meta["cdelt1"] < 0
    ny, nx = lo.data.shape
    for x, y in [(-0.5, -0.5), (nx - 0.5, ny - 0.5), (3.0, 7.0)]:
        a = lo.pixel_to_world(x * u.pix, y * u.pix)
        b = hi.pixel_to_world((4 * x + 1.5) * u.pix, (4 * y + 1.5) * u.pix)
        assert a.separation(b) < 0.01 * u.arcsec


# --- case 5: tracebacks and wrong hints -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda p: p.mkdir(), ("is a folder", "sunpy-superres batch")),
        (lambda p: p.write_bytes(b""), ("empty (0 bytes)",)),
        (lambda p: p.write_bytes(Path(MDI_AR_CUTOUT).read_bytes()[:20000]), ("truncated",)),
    ],
)
def test_unreadable_inputs_say_what_is_wrong_without_allow_errors(tmp_path, capsys, make, needles):
    src = tmp_path / "in.fits"
    make(src)
    assert run_cli(src, "-o", tmp_path / "o.fits", "--model", "bicubic", "--quiet") == 2
    line = one_line_refusal(capsys, *needles)
    assert "allow_errors" not in line and "does not exist" not in line


def test_empty_model_directory_is_one_line(mdi_file, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert run_cli(mdi_file, "-o", tmp_path / "o.fits", "--model", tmp_path / "model", "--quiet") == 2
    one_line_refusal(capsys, "not a sunpy-superres model directory")


def test_corrupt_weights_with_matching_checksums_are_one_line(mdi_file, tmp_path, capsys):
    from sunpy_superres.data import MODELS_DIR
    from sunpy_superres.models.manifest import rewrite_manifest

    model = tmp_path / "enhance"
    shutil.copytree(MODELS_DIR / "enhance", model)
    weights = next(model.rglob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[8:40] = b"x" * 32  # the safetensors header is now garbage
    weights.write_bytes(bytes(blob))
    rewrite_manifest(model, {})  # checksums re-recorded: the corruption predates them
    assert run_cli(mdi_file, "-o", tmp_path / "o.fits", "--model", model, "--quiet") == 2
    one_line_refusal(capsys, "cannot be loaded", "corrupt")


def test_unreachable_hub_is_told_at_once(mdi_file, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants  # the submodule: the package exposes it only once imported

    # A port nobody listens on: the connection is refused at once, as on a machine without network.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    t0 = time.monotonic()
    code = run_cli(
        mdi_file,
        "-o",
        tmp_path / "o.fits",
        "--quiet",
        "--model",
        "hf://sunpy/nothing-here@0123456789abcdef0123456789abcdef01234567",
    )
    assert code == 2
    one_line_refusal(capsys, "cannot be reached", "local copy")
    assert time.monotonic() - t0 < 15  # huggingface_hub alone retried for about 30 s


def test_output_folder_is_refused_even_with_overwrite(mdi_file, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    assert run_cli(mdi_file, "-o", folder, "--overwrite", "--model", "bicubic", "--quiet") == 2
    one_line_refusal(capsys, "is a folder")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_unwritable_output_folder_is_refused_before_any_work(mdi_file, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode)
    )
    monkeypatch.setattr(cli, "superresolve", None, raising=False)  # not reached
    assert run_cli(mdi_file, "-o", folder / "o.fits", "--model", "bicubic", "--quiet") == 2
    one_line_refusal(capsys, "not writable")


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "Permission denied")],
)
def test_write_failure_is_one_line_and_leaves_nothing(mdi_file, tmp_path, capsys, monkeypatch, error):
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def failing_save(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"SIMPLE  =                    T")
        raise error

    monkeypatch.setattr(sunpy.map.GenericMap, "save", failing_save)
    assert run_cli(mdi_file, "-o", out_dir / "o.fits", "--model", "bicubic", "--quiet") == 2
    one_line_refusal(capsys, error.strerror, "no partial file")
    assert list(out_dir.iterdir()) == []


# --- case 8: SIGTERM cleans up; stale temporaries of killed runs are removed ---------------------------


def test_sigterm_during_the_write_removes_the_temporary(mdi_file, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def killed_save(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"SIMPLE  =                    T")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this

    monkeypatch.setattr(sunpy.map.GenericMap, "save", killed_save)
    before = signal.getsignal(signal.SIGTERM)
    assert (
        run_cli(mdi_file, "-o", out_dir / "o.fits", "--model", "bicubic", "--quiet") == 128 + signal.SIGTERM
    )
    assert "terminated" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # restored for the caller


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    host = socket.gethostname().split(".")[0]
    out = tmp_path / "o.fits"
    stale = tmp_path / f".o.fits.{host}-{_dead_pid()}.abcd1234.part"
    live = tmp_path / f".o.fits.{host}-{os.getppid()}.abcd1234.part"  # a running process's
    other_host = tmp_path / f".o.fits.elsewhere-{_dead_pid()}.abcd1234.part"  # pids of other machines
    other_name = tmp_path / f".p.fits.{host}-{_dead_pid()}.abcd1234.part"
    for p in (stale, live, other_host, other_name):
        p.write_bytes(b"half")
    with atomic_output(out) as tmp:
        assert f".o.fits.{host}-{os.getpid()}." in tmp.name
        tmp.write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (out, live, other_host, other_name)
    )
    assert remove_stale_parts(out) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL")
def test_a_killed_cli_leaves_a_part_the_next_run_removes(mdi_file, tmp_path):
    out = tmp_path / "o.fits"
    # A run that hangs while writing, then is killed: its temporary file stays behind.
    code = (
        "import sys, time, sunpy.map\n"
        "from sunpy_superres import cli\n"
        "def hang(self, path, **kw):\n"
        "    open(path, 'wb').write(b'SIMPLE'); print('writing', flush=True); time.sleep(60)\n"
        "sunpy.map.GenericMap.save = hang\n"
        f"cli.main([{str(mdi_file)!r}, '-o', {str(out)!r}, '--model', 'bicubic', '--quiet'])\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()
    assert len(list(tmp_path.glob(".o.fits.*.part"))) == 1
    assert run_cli(mdi_file, "-o", out, "--model", "bicubic", "--quiet") == 0
    assert list(tmp_path.glob(".o.fits.*.part")) == [] and out.exists()


# --- case 9: the quick-look of a map in T, and the levels -------------------------------------------


def test_quicklook_of_a_map_in_tesla_is_drawn_in_gauss_with_levels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sunpy_superres.visualization import plot_comparison

    mdi = sunpy.map.Map(MDI_AR_CUTOUT)
    tesla = mdi._new_instance(mdi.data * 1e-4, mdi.meta.copy() | {"bunit": "T"})
    result = superresolve(tesla, model="bicubic", progress=False)
    assert result.unit == u.T
    fig = plot_comparison(tesla, result)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 2
    # In G, and on one physical scale: the input times the MDI-to-HMI factor the output records.
    factor = result.meta["srcalfac"]
    assert factor != 1
    for image, smap, k in zip(images, (tesla, result), (factor, 1.0), strict=True):
        shown = np.asarray(image.get_array(), dtype=float)
        assert np.nanmax(np.abs(shown)) == pytest.approx(np.nanmax(np.abs(smap.data)) * 1e4 * k, rel=1e-4)
        assert image.get_clim()[1] > 100  # G, not T: the panels are not blank
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert f"MDI level x{factor:.3g} = HMI level" in titles[0] and "HMI level" in titles[1]
    assert (
        fig._suptitle.get_text()
        == f"MDI {tesla.date.strftime('%Y-%m-%d %H:%M:%S')}, model bicubic, deterministic"
    )
    assert "[G]" in fig.axes[-1].get_ylabel()
    assert tesla.unit == u.T and np.nanmax(np.abs(tesla.data)) < 1  # the input map is untouched


def test_quicklook_of_samples_adds_their_standard_deviation():
    """For an UncertaintyMap the quick-look shows input, mean and the per-pixel std in G on its own scale
    from 0, says whether the std is calibrated, and puts the seed on the title's second line."""
    import matplotlib

    matplotlib.use("Agg")
    from sunpy_superres import UncertaintyMap
    from sunpy_superres.visualization import plot_comparison

    mdi = sunpy.map.Map(MDI_AR_CUTOUT)
    tesla = mdi._new_instance(mdi.data * 1e-4, mdi.meta.copy() | {"bunit": "T"})
    um = superresolve(tesla, model=NoisyNearest(), samples=3, seed=5, progress=False)
    assert um.meta["sruncal"] == "none"
    fig = plot_comparison(tesla, um)
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == 3
    std_gauss = um.std.to_value(u.G)
    image = axes[2].get_images()[0]
    np.testing.assert_allclose(np.asarray(image.get_array(), dtype=float), std_gauss, rtol=1e-6)
    assert np.nanmax(std_gauss) > 10  # G, not T
    assert image.get_clim() == (0, pytest.approx(np.percentile(std_gauss, 99.5)))
    assert axes[1].get_title().startswith("mean, HMI level")
    assert axes[2].get_title().startswith("standard deviation, sample spread, not calibrated\n")
    # Each colour bar is an inset of its panel (it follows the panel when the figure is resized).
    assert [bar.get_ylabel() for ax in axes for bar in ax.child_axes] == ["B_LOS [G]", "std [G]"]
    date = tesla.date.strftime("%Y-%m-%d %H:%M:%S")
    assert fig._suptitle.get_text() == f"MDI {date}, model noisy-nearest, 3 samples\nseed 5"
    calibrated = UncertaintyMap(um.data, um.meta | {"sruncal": "per-bin factors"}, std=um.std)
    fig = plot_comparison(tesla, calibrated)
    assert (
        [ax for ax in fig.axes if ax.get_images()][2]
        .get_title()
        .startswith("standard deviation, calibrated\n")
    )
    unrecorded = UncertaintyMap(um.data, {k: v for k, v in um.meta.items() if k != "sruncal"}, std=um.std)
    fig = plot_comparison(tesla, unrecorded)
    assert (
        [ax for ax in fig.axes if ax.get_images()][2]
        .get_title()
        .startswith("standard deviation, calibration not recorded\n")
    )
    no_std = UncertaintyMap(um.data, um.meta)  # nothing to show beside the mean
    assert len([ax for ax in plot_comparison(tesla, no_std).axes if ax.get_images()]) == 2
    # A revision goes on the second line with the seed; one sample says so.
    one = superresolve(tesla, model=NoisyNearest(), seed=5, progress=False)
    one.meta["srmodrev"] = "r1"
    assert plot_comparison(tesla, one)._suptitle.get_text().endswith(", one sample\nrevision r1, seed 5")


# --- case 10: a huge number of samples, and an UncertaintyMap file as input --------------------------


def test_many_samples_come_with_a_time_estimate(monkeypatch):
    sr_module = sys.modules["sunpy_superres.superresolve"]  # the package exports the function by that name
    monkeypatch.setattr(sr_module, "LONG_RUN_SECONDS", 0.0)
    m = synthetic_map((32, 32), value=10.0)
    # The estimate follows the first group of samples (one per network call here, with batch_size=1).
    with pytest.warns(LongRunWarning, match=r"^3 samples at .* s each \(the first\) will take about .* more"):
        superresolve(m, model=NoisyNearest(), samples=3, seed=0, progress=False, batch_size=1)
    with pytest.warns(LongRunWarning, match=r"^5 samples at .* s each \(the first 2\) will take about"):
        superresolve(m, model=NoisyNearest(), samples=5, seed=0, progress=False, batch_size=2)
    with warnings.catch_warnings():  # all samples in one group: nothing left to estimate
        warnings.simplefilter("error", LongRunWarning)
        superresolve(m, model=NoisyNearest(), samples=3, seed=0, progress=False, batch_size=3)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongRunWarning)
        superresolve(m, model=NoisyNearest(), samples=2, seed=0, progress=False)  # default threshold: quiet


def test_keeping_more_samples_than_memory_holds_is_refused_before_work():
    m = synthetic_map((32, 32), value=10.0)
    with pytest.raises(ValueError, match=r"keep_samples=True with samples=1000000000 needs .* GiB"):
        superresolve(m, model=NoisyNearest(), samples=10**9, keep_samples=True, seed=0, progress=False)


def test_an_uncertainty_map_file_as_input_is_named(tmp_path, capsys):
    m = synthetic_map((32, 32), value=10.0, instrument="MDI")
    um = superresolve(m, model=NoisyNearest(), samples=2, seed=0, progress=False)
    um.save(tmp_path / "u.fits")
    assert isinstance(sunpy.map.Map(tmp_path / "u.fits"), list)  # what a plain reader makes of it
    assert run_cli(tmp_path / "u.fits", "-o", tmp_path / "o.fits", "--model", "bicubic", "--quiet") == 2
    one_line_refusal(capsys, "UncertaintyMap", "UncertaintyMap.read")


# --- found by tests/test_properties.py --------------------------------------------------------------


def _meta_without(m, *keys, **values):
    meta = m.meta.copy()
    for k in keys:
        meta.pop(k, None)
    meta.update(values)
    return meta


def test_a_diagonal_cd_matrix_is_a_valid_wcs():
    """FITS makes left-out CD terms zero; sunpy raised KeyError 'cd1_2' from inside validate_map."""
    m = synthetic_map((32, 32), value=5.0, instrument="MDI")
    meta = _meta_without(m, "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2", cd1_1=2.0, cd2_2=2.0)
    smap = sunpy.map.Map(m.data, meta)
    out = superresolve(smap, model="bicubic", progress=False)
    assert out.meta["cd1_1"] == pytest.approx(0.5) and out.meta["cd1_2"] == 0
    assert "cd1_2" not in smap.meta  # the input is not completed in place


def test_cdelt_zero_names_the_scale_not_the_frame():
    m = synthetic_map((32, 32), value=5.0, instrument="MDI")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sunpy's "could not determine coordinate frame" no longer leaks
        with pytest.raises(ValueError, match="CDELT1 is 0.0; a WCS needs a finite, non-zero pixel scale"):
            superresolve(sunpy.map.Map(m.data, _meta_without(m, cdelt1=0.0)), model="bicubic", progress=False)


def test_a_fully_masked_map_is_refused():
    m = synthetic_map((32, 32), value=5.0, instrument="MDI")
    with pytest.raises(ValueError, match="NaN, infinite or masked"):
        superresolve(
            sunpy.map.Map(m.data, m.meta, mask=np.ones((32, 32), bool)), model="bicubic", progress=False
        )


@pytest.mark.parametrize(("value", "unit"), [(1e40, u.G), (1e36, u.T), (50.0, u.T)])
def test_a_field_no_sun_has_is_refused_not_overflowed(value, unit):
    m = synthetic_map((32, 32), value=value, unit=unit, instrument="MDI")
    with pytest.raises(ValueError, match="field reaches .* G; no solar line-of-sight field"):
        superresolve(m, model="bicubic", progress=False)


def test_sigterm_during_a_batch_says_how_to_resume(tmp_path, capsys, monkeypatch):
    pytest.importorskip("dask.distributed")
    from sunpy_superres import batch

    def killed(*args, **kwargs):
        raise cli._Terminated

    monkeypatch.setattr(batch, "superresolve_files", killed)
    assert run_cli("batch", MDI_AR_CUTOUT, "-o", tmp_path / "out", "--quiet") == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "run the same command again to resume" in err
