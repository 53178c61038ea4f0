"""The sunpy-superres command: output, overwrite refusal, atomic writes, one-line errors."""

import os
import shutil
import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
import sunpy.map

from sunpy_superres import cli
from sunpy_superres.data import MDI_AR_CUTOUT
from sunpy_superres.io import atomic_output

from .helpers import synthetic_map


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_writes_fits_and_png(tmp_path, capsys):
    out, png = tmp_path / "out.fits", tmp_path / "out.png"
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--png", png, "--model", "nearest", "--quiet") == 0
    result = sunpy.map.Map(out)
    assert result.data.shape == (512, 512)
    assert result.meta["srmodel"] == "nearest"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "512x512 px" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits", "out.png"]  # no temporaries left


def test_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "out.fits"
    out.write_bytes(b"precious")
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--quiet") == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--quiet", "--overwrite") == 0
    assert sunpy.map.Map(out).data.shape == (512, 512)


def test_input_is_never_touched(tmp_path):
    src = tmp_path / "in.fits"
    shutil.copyfile(MDI_AR_CUTOUT, src)
    before = (src.read_bytes(), os.stat(src).st_mtime_ns)
    assert run_cli(src, "-o", src, "--overwrite", "--quiet") == 2  # output == input is refused
    assert run_cli(src, "-o", tmp_path / "out.fits", "--quiet") == 0
    assert (src.read_bytes(), os.stat(src).st_mtime_ns) == before


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("not a fits file"), "cannot read"),
        (lambda p: synthetic_map(scale=0.5).save(p), "outside the 1-4 arcsec/pixel"),
        (lambda p: synthetic_map(value=np.nan).save(p), "every pixel"),
    ],
)
def test_bad_input_one_line_reason(tmp_path, capsys, make_input, message):
    src = tmp_path / "in.fits"
    make_input(src)
    out = tmp_path / "out.fits"
    assert run_cli(src, "-o", out, "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sunpy-superres: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_unknown_model(tmp_path, capsys):
    assert run_cli(MDI_AR_CUTOUT, "-o", tmp_path / "o.fits", "--model", "nope", "--quiet") == 2
    assert "available models are" in capsys.readouterr().err


def test_crash_leaves_no_partial_file(tmp_path, monkeypatch):
    """A failure while writing must leave neither the output nor a temporary behind."""
    out = tmp_path / "out.fits"

    def exploding_save(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"SIMPLE  =                    T" + b" " * 100)  # half a header
        raise OSError("disk full")

    monkeypatch.setattr(sunpy.map.GenericMap, "save", exploding_save)
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--model", "nearest", "--quiet") == 2
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_no_clobber_race(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(FileExistsError):
        with atomic_output(target) as tmp:
            tmp.write_text("new")
            target.write_text("appeared meanwhile")  # another process won the race
    assert target.read_text() == "appeared meanwhile"
    assert list(tmp_path.iterdir()) == [target]


def test_console_script_runs(tmp_path):
    out = tmp_path / "o.fits"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sunpy_superres.cli",
            MDI_AR_CUTOUT,
            "-o",
            str(out),
            "--model",
            "nearest",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    proc = subprocess.run(
        [sys.executable, "-m", "sunpy_superres.cli", MDI_AR_CUTOUT, "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "exists" in proc.stderr


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_output_gets_the_usual_file_mode(tmp_path, mask):
    # The temporary file is private while it is written; the finished file follows the umask.
    old = os.umask(mask)
    try:
        with atomic_output(tmp_path / "x.txt") as tmp:
            tmp.write_text("done")
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_sampler_options(tmp_path, capsys):
    from .models.tiny import tiny_model

    src = tmp_path / "in.fits"
    synthetic_map(shape=(16, 16), value=100.0).save(src)
    tiny_model("latent", True).save_pretrained(tmp_path / "model")
    out = tmp_path / "out.fits"
    assert (
        run_cli(
            src,
            "-o",
            out,
            "--model",
            tmp_path / "model",
            "--sampler",
            "ddim",
            "--steps",
            "2",
            "--start-timestep",
            "500",
            "--seed",
            "1",
            "--quiet",
        )
        == 0
    )
    header = sunpy.map.Map(out).meta
    assert (header["srsched"], header["srsteps"], header["srtstart"]) == ("ddim", 2, 500)
    tiny_model(noise_conditioning=True).save_pretrained(tmp_path / "conditioned")
    assert (
        run_cli(
            src,
            "-o",
            tmp_path / "noise.fits",
            "--model",
            tmp_path / "conditioned",
            "--noise-level",
            "4.5",
            "--steps",
            "2",
            "--quiet",
        )
        == 0
    )
    assert sunpy.map.Map(tmp_path / "noise.fits").meta["srnoise"] == 4.5
    # Bad settings and settings a model has no use for: one line, nothing written.
    model = ("--model", tmp_path / "model")
    for args, message in [
        ((*model, "--start-timestep", "1000"), "start_timestep must be"),
        ((*model, "--sampler", "euler"), "unknown sampler"),
        ((*model, "--noise-level", "4"), "not conditioned on a noise level"),
        (("--model", tmp_path / "conditioned", "--noise-level", "0"), "noise_level"),
        (("--model", "bicubic", "--steps", "20"), "deterministic and has no sampler"),
    ]:
        bad = tmp_path / "bad.fits"
        assert run_cli(src, "-o", bad, *args, "--quiet") == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not bad.exists()


def test_samples_and_the_recorded_seed(tmp_path):
    """--samples writes the mean and its uncertainty; the seed drawn is in SRSEED and repeats the run."""
    from sunpy_superres import UncertaintyMap, superresolve

    from .models.tiny import tiny_model

    src = tmp_path / "in.fits"
    synthetic_map(shape=(16, 16), value=100.0).save(src)
    tiny_model("latent", True).save_pretrained(tmp_path / "model")
    out = tmp_path / "three.fits"
    args = ("--model", tmp_path / "model", "--steps", "2", "--quiet")
    assert run_cli(src, "-o", out, "--samples", "3", "--seed", "5", *args) == 0
    um = UncertaintyMap.read(out)
    assert (um.meta["srsample"], um.meta["srseed"]) == (3, 5)
    direct = superresolve(
        sunpy.map.Map(src), model=str(tmp_path / "model"), samples=3, seed=5, steps=2, progress=False
    )
    np.testing.assert_allclose(um.data, direct.data, rtol=1e-6)
    np.testing.assert_allclose(um.std.value, direct.std.value, rtol=1e-5)
    assert np.all(um.std.value > 0)

    # No --seed: the seed drawn is recorded, and passing it back gives the same map.
    assert run_cli(src, "-o", tmp_path / "drawn.fits", *args) == 0
    drawn = sunpy.map.Map(tmp_path / "drawn.fits")
    seed = drawn.meta["srseed"]
    assert isinstance(seed, int) and seed >= 0
    assert run_cli(src, "-o", tmp_path / "again.fits", "--seed", seed, *args) == 0
    np.testing.assert_array_equal(sunpy.map.Map(tmp_path / "again.fits").data, drawn.data)


def test_the_embedded_default_records_its_seed(tmp_path):
    """The shipped ldm-res through the command: SRSEED repeats the sample; another seed changes it."""
    piece = sunpy.map.Map(MDI_AR_CUTOUT).submap([48, 48] * u.pix, top_right=[79, 79] * u.pix)
    src = tmp_path / "piece.fits"
    # float data: the cut-out's BLANK (for its integer original) does not apply to the piece
    sunpy.map.Map(piece.data, {k: v for k, v in piece.meta.items() if k != "blank"}).save(src)
    assert run_cli(src, "-o", tmp_path / "a.fits", "--quiet") == 0
    first = sunpy.map.Map(tmp_path / "a.fits")
    assert first.meta["srmodel"] == "ldm-res" and first.data.shape == (128, 128)
    seed = first.meta["srseed"]
    assert run_cli(src, "-o", tmp_path / "b.fits", "--seed", seed, "--quiet") == 0
    np.testing.assert_array_equal(sunpy.map.Map(tmp_path / "b.fits").data, first.data)
    assert run_cli(src, "-o", tmp_path / "c.fits", "--seed", seed + 1, "--quiet") == 0
    assert not np.array_equal(sunpy.map.Map(tmp_path / "c.fits").data, first.data)


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_png_onto_the_fits_output_is_refused_and_nothing_is_written(tmp_path, capsys, overwrite):
    """Issue 15, case 1: --png naming the FITS output replaced the result with a PNG (exit 0)."""
    out = tmp_path / "out.fits"
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--png", out, "--model", "nearest", "--quiet", *overwrite) == 2
    err = capsys.readouterr().err
    assert "is the FITS output too" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert (
        run_cli(
            MDI_AR_CUTOUT, "-o", out, "--png", tmp_path / "." / "out.fits", "--model", "nearest", "--quiet"
        )
        == 2
    )


@pytest.mark.parametrize(("device", "message"), [("mps", "Apple GPU"), ("xla", "is not supported")])
def test_an_unusable_device_is_one_line_and_exit_2(tmp_path, capsys, device, message):
    """Issue 15, case 5: --device mps gave a traceback and exit 1 on a machine without an Apple GPU."""
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    out = tmp_path / "out.fits"
    assert run_cli(MDI_AR_CUTOUT, "-o", out, "--device", device, "--quiet") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
