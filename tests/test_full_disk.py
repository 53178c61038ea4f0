"""The full 1024x1024 MDI frame from ../shared/data becomes a 4096x4096 map (skipped without it)."""

import json
import resource
import subprocess
import sys

import astropy.units as u
import numpy as np

from sunpy_superres import superresolve

from .conftest import MDI_FULL_DISK, shared_file

SCRIPT = """
import json, resource, sys, time, warnings
import numpy as np, sunpy.map
from sunpy_superres import superresolve
warnings.simplefilter("ignore")
smap = sunpy.map.Map(sys.argv[1])
t0 = time.perf_counter()
out = superresolve(smap, model="bicubic", progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "shape": out.data.shape,
                  "nan": int(np.isnan(out.data).sum())}))
"""


def test_full_disk_mdi(mdi_full_disk):
    out = superresolve(mdi_full_disk, model="bicubic", progress=False)
    assert out.data.shape == (4096, 4096)
    assert u.allclose(out.scale.axis1, 1.9860081672668457 / 4 * u.arcsec / u.pix, rtol=1e-12)
    assert u.allclose(out.scale.axis2, 1.9860081672668457 / 4 * u.arcsec / u.pix, rtol=1e-12)
    # Off-limb pixels stay NaN, exactly the 4x4 blocks of the input's NaNs; the disk is finite.
    expected_nan = np.kron(np.isnan(mdi_full_disk.data), np.ones((4, 4), dtype=bool))
    np.testing.assert_array_equal(np.isnan(out.data), expected_nan)
    corners = out.pixel_to_world([0, 4095] * u.pix, [0, 4095] * u.pix)
    assert not np.isfinite(out.data[[0, -1], [0, -1]]).any()
    assert np.isfinite(out.data[2048, 2048])
    # Disk centre stays where the input puts it (X0/Y0 follow the grid).
    centre_in = mdi_full_disk.pixel_to_world(
        mdi_full_disk.meta["x0"] * u.pix, mdi_full_disk.meta["y0"] * u.pix
    )
    centre_out = out.pixel_to_world(out.meta["x0"] * u.pix, out.meta["y0"] * u.pix)
    assert centre_in.separation(centre_out) < 1 * u.mas
    assert corners[0].separation(mdi_full_disk.pixel_to_world(-0.375 * u.pix, -0.375 * u.pix)) < 1 * u.mas


def test_full_disk_peak_memory_under_8_gb():
    path = shared_file(MDI_FULL_DISK)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [4096, 4096]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # ru_maxrss is in kB
    assert peak_gb < 8
