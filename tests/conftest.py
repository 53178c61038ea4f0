"""Shared fixtures: the shipped real cut-outs, and the full-disk files of ../shared/data when present."""

import os
import warnings
from pathlib import Path

import pytest
import sunpy.map

from sunpy_superres.data import HMI_AR_CUTOUT, MDI_AR_CUTOUT, MDI_LIMB_CUTOUT

# Full-disk originals live outside the repository; tests that need them skip cleanly without them.
SHARED_DATA = Path(
    os.environ.get("SUNPY_SUPERRES_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MDI_FULL_DISK = SHARED_DATA / "mdi" / "mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits"
HMI_FULL_DISK = {
    "2011-12-17": SHARED_DATA / "hmi" / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
    "2016-07-07": SHARED_DATA / "hmi" / "hmi.M_720s.20160707_010000_TAI.magnetogram.fits",
    "2019-06-21": SHARED_DATA / "hmi" / "hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
}


@pytest.fixture(autouse=True)
def float32_on_every_cpu(request, monkeypatch):
    """``precision="auto"`` is bfloat16 on a CPU with AMX or AVX-512 BF16
    (`~sunpy_superres.models.accel.cpu_has_native_bf16`):
    the suite runs the reference float32 arithmetic on every CPU, so that recorded values and
    comparisons between two runs do not depend on the machine. Tests of the bfloat16 path mark
    themselves ``native_bf16``."""
    if "native_bf16" not in request.keywords:
        monkeypatch.setattr("sunpy_superres.models.accel.cpu_has_native_bf16", lambda: False)


def read_map(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metadata notes of real instrument headers
        return sunpy.map.Map(path)


def shared_file(path):
    """Return ``path`` or skip the test when the shared data are not beside the repository."""
    if not Path(path).is_file():
        pytest.skip(f"needs the full-disk file {path} (set SUNPY_SUPERRES_SHARED_DATA)")
    return Path(path)


@pytest.fixture
def mdi_cutout():
    """Real MDI 128x128 active-region cut-out (2010-10-15, 1.986 arcsec/pixel)."""
    return read_map(MDI_AR_CUTOUT)


@pytest.fixture
def mdi_limb_cutout():
    """Real MDI 64x64 east-limb cut-out with off-disk NaNs."""
    return read_map(MDI_LIMB_CUTOUT)


@pytest.fixture
def hmi_cutout():
    """Real HMI 512x512 active-region cut-out (2011-12-17, 0.504 arcsec/pixel, CROTA2 ~ 180)."""
    return read_map(HMI_AR_CUTOUT)


@pytest.fixture(scope="session")
def mdi_full_disk():
    return read_map(shared_file(MDI_FULL_DISK))


@pytest.fixture(scope="session")
def hmi_full_disk_paths():
    return {day: shared_file(p) for day, p in HMI_FULL_DISK.items()}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
