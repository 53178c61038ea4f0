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
    heldout = shared_file(HMI_FULL_DISK["2016-07-07"])
    run = subprocess.run(
        [
            sys.executable,
            "benchmarks/evaluate_heldout.py",
            "--hmi",
            str(heldout),
            "--model",
            "enhance",
            "--model",
            "progressive",
            "--crop",
            "256",
            "--regions",
            "4",
            "--samples",
            "1",
            "--baseline-consistency",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
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
    measured = {}
    for line in run.stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1).strip() in names:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            # benchmark columns: model, n, psnr, ssim, flux, area, spectral, below 2"
            measured[cells[0]] = {"psnr": cells[2], "flux": cells[4], "area": cells[5], "spectral": cells[6]}
    assert names <= set(measured), sorted(names - set(measured))
    checked = 0
    for card in sorted(MODELS_DIR.glob("*/MODEL_CARD.md")):
        text = card.read_text()
        for line in text.splitlines():
            m = ROW.match(line)
            if not (m and m.group(1).strip() in names):
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
