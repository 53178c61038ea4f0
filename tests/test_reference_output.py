"""
The default model's output on the shipped MDI cut-out, with a fixed seed, bit for bit.

Guards refactors that must not change behaviour (issue 16): the data's sha256 and every header key
but the package version are compared with a record made on main. A thread count or a CPU's
instruction set changes the order of floating-point sums, so the record holds for one thread and
the instruction set it was made with; elsewhere the test skips and says why.

When a change of output is meant (new embedded weights, a new sampler default), record again with
``python tests/test_reference_output.py`` and say so in the commit message.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sunpy.map
import torch

from sunpy_superres import superresolve
from sunpy_superres.data import MDI_AR_CUTOUT

RECORD = Path(__file__).parent / "data" / "reference_output.json"
SEED = 20161231
# Keys that change with the package's version string, not with the computation.
_VOLATILE = {"srvers", "history"}


def _default_output():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # float32 named, not "auto": auto is bfloat16 on a CPU with AMX, and the record is float32's.
        out = superresolve(sunpy.map.Map(MDI_AR_CUTOUT), seed=SEED, progress=False, precision="fp32")
    finally:
        torch.set_num_threads(threads)
    meta = {k: v for k, v in out.meta.items() if k not in _VOLATILE and not k.startswith("keycomments")}
    return {
        "sha256": hashlib.sha256(np.ascontiguousarray(out.data).tobytes()).hexdigest(),
        "shape": list(out.data.shape),
        "dtype": str(out.data.dtype),
        "meta": json.loads(json.dumps(meta, default=str)),
    }


def _platform():
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def test_default_output_is_unchanged():
    record = json.loads(RECORD.read_text())
    now = _default_output()
    # The header is arithmetic-free (WCS, provenance): it must match on every platform.
    assert now["meta"] == record["meta"]
    assert now["shape"] == record["shape"] and now["dtype"] == record["dtype"]
    if _platform() != record["platform"]:
        pytest.skip(f"the record is bit-exact on {record['platform']}, this is {_platform()}")
    assert now["sha256"] == record["sha256"]


if __name__ == "__main__":
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(
        json.dumps({"platform": _platform(), **_default_output()}, indent=1, sort_keys=True) + "\n"
    )
    print(f"recorded {RECORD}")
