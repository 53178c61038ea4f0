"""The model cards' held-out numbers are what the benchmark gives today (slow: run with --runslow)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sunpy_superres.data import MODELS_DIR

from .conftest import HMI_FULL_DISK, shared_file

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|\s*\**([a-z][^|*]*?)\**\s*\|")


def decimals(text_value):
    return len(text_value.split(".")[1]) if "." in text_value else 0


@pytest.mark.slow
def test_baseline_rows_of_the_cards_are_reproduced():
    # The deterministic models' rows of every card, from one run of the held-out benchmark: a card
    # whose numbers no longer come out of the code fails here.
    stdout = heldout_run(
        "--model", "enhance", "--model", "progressive", "--samples", "1", "--baseline-consistency"
    )
    # nearest has no back-projected row: block replication already keeps every block mean.
    names = {
        "nearest",
        *(
            f"{m}{suffix}"
            for m in ("bicubic", "enhance", "progressive")
            for suffix in ("", " + back-projection")
        ),
    }
    measured, col = {}, benchmark_columns(stdout)
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1).strip() in names:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            measured[cells[0]] = {
                key: cells[col[name]]
                for key, name in (
                    ("psnr", "psnr"), ("flux", "flux_error"), ("area", "ar_area_error"), ("spectral", "spectral_error")
                )
            }  # fmt: skip
    assert names <= set(measured), sorted(names - set(measured))
    checked = 0
    for card in sorted(MODELS_DIR.glob("*/MODEL_CARD.md")):
        text = card.read_text()
        metrics_table = False
        for line in text.splitlines():
            if line.startswith("| model |"):
                # Only the tables of the benchmark's metrics (others, e.g. the signed flux, have rows
                # named alike).
                metrics_table = "SSIM" in line
            m = ROW.match(line)
            if not (metrics_table and m and m.group(1).strip() in names):
                continue
            cells = [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
            if cells[1].isdigit():  # the ldm-res card has an "n" column
                cells.pop(1)
            card_values = {
                key: cells[k].replace("*", "")
                for key, k in (("psnr", 1), ("flux", 3), ("area", 4), ("spectral", 5))
            }
            for key, shown in card_values.items():
                value = float(shown.split("±")[0])
                got = float(measured[cells[0]][key].split("±")[0])
                tolerance = 0.5 * 10 ** -decimals(shown.split("±")[0].strip()) + 1e-9
                assert abs(got - value) <= tolerance, (
                    f"{card.parent.name} card, {cells[0]}, {key}: {shown} vs {got}"
                )
                checked += 1
    assert checked >= 3 * 7 * 4  # three cards, seven baseline rows, four numbers


def benchmark_columns(stdout):
    """The column index of each metric in the benchmark's table, by the name in its header."""
    header = next(line for line in stdout.splitlines() if line.startswith("| model | n |"))
    return {name.strip(): k for k, name in enumerate(header.strip().strip("|").split("|"))}


def heldout_run(*args):
    """The stdout of `benchmarks/evaluate_heldout.py` on the held-out frame's four 256x256 crops."""
    heldout = shared_file(HMI_FULL_DISK["2016-07-07"])
    run = subprocess.run(
        [
            sys.executable,
            "benchmarks/evaluate_heldout.py",
            "--hmi",
            str(heldout),
            "--crop",
            "256",
            "--regions",
            "4",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout


def table_cells(text):
    """Each markdown table row of ``text`` as its cells, bold marks dropped, keyed by the first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.replace("*", "").strip() for c in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], cells)
    return rows


def assert_shown(card, label, shown, got):
    """``shown`` (a card's cell, ``"0.74 ± 0.5"``) is ``got`` rounded as the card rounds it."""
    shown = shown.split("±")[0].strip()
    tolerance = 0.5 * 10 ** -decimals(shown) + 1e-9
    assert abs(float(got.split("±")[0]) - float(shown)) <= tolerance, f"{card}, {label}: {shown} vs {got}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ldm-res", "ldm", "ddpm-res", "ddpm"])
def test_diffusion_rows_of_the_cards_are_reproduced(name):
    # A diffusion model's own rows (one sample, mean of 8) and its coverage table, from the command its
    # card quotes: 8 samples of each crop with seed 0, so the card's numbers come out again to their
    # last digit.
    card = MODELS_DIR / name / "MODEL_CARD.md"
    shown = table_cells(card.read_text())
    # The cards' tables were made in float32 ("auto" is bfloat16 on a CPU that has it).
    stdout = heldout_run("--model", name, "--samples", "8", "--precision", "fp32")
    out, col = table_cells(stdout), benchmark_columns(stdout)
    # The card's columns: model, n, PSNR, SSIM, flux, AR area, spectral, below 2".
    metrics = ("psnr", "ssim", "flux_error", "ar_area_error", "spectral_error", "small_scale")
    for label, row in (("this model, one sample", name), ("this model, mean of 8", f"{name} (mean of 8)")):
        assert shown[label][1] == out[row][1]  # n
        for k, metric in enumerate(metrics, start=2):
            assert_shown(card.name, f"{label} {metric}", shown[label][k], out[row][col[metric]])
    # coverage columns: bin, n_pixels, 1 sd, 2 sd, mean z^2, std/rmse, spearman, ence; the card has
    # no n_pixels column.
    for label, row in (("all pixels", "all"), ("0-100 G", "0-100 G"), ("100-500 G", "100-500 G")):
        for k in range(1, 7):
            assert_shown(card.name, f"{label} column {k}", shown[label][k], out[row][k + 1])
    strong = next(key for key in shown if key.startswith("> 500 G"))
    assert f"({out['>500 G'][1]} pixels)" in strong
    for k in range(1, 7):
        assert_shown(card.name, f"{strong} column {k}", shown[strong][k], out[">500 G"][k + 1])
