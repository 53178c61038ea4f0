"""
The default model's output on the shipped MDI cut-out, with a fixed seed, bit for bit.

Guards refactors that must not change behaviour (issue 16): the data's sha256 and every header key
but the package version are compared with a record made on main. A thread count or a CPU's
instruction set changes the order of floating-point sums (oneDNN picks its kernels by the CPU's
instructions: an Intel Xeon with AMX and an AMD EPYC, both "AVX512" to torch, give different
float32 sums), so each sha256 holds for one thread and the kind of CPU it was made on; the record
keeps one per kind, and on another kind the test skips and says why.

When a change of output is meant (new embedded weights, a new sampler default), record again with
``python tests/test_reference_output.py`` (it drops the other kinds' sha256, which no longer hold)
and say so in the commit message; ``python tests/test_reference_output.py --add`` adds this
machine's sha256 to a record that still holds, after checking the header against it.
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
        # float32 named, not "auto": auto is bfloat16 on a CPU with bfloat16 instructions, and the
        # record is float32's.
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


# torch's CPU probes (``torch.cpu._is_<name>_supported``) that tell the kinds of AVX-512 CPU apart.
_FLAGS = ("amx_tile", "avx512_bf16", "vnni")


def _platform():
    """The kind of CPU, as far as it decides oneDNN's float32 sums."""
    flags = {name: bool(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)()) for name in _FLAGS}
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), **flags}


def test_default_output_is_unchanged():
    record = json.loads(RECORD.read_text())
    now = _default_output()
    # The header is arithmetic-free (WCS, provenance): it must match on every platform.
    assert now["meta"] == record["meta"]
    assert now["shape"] == record["shape"] and now["dtype"] == record["dtype"]
    hashes = [r["sha256"] for r in record["platforms"] if r["platform"] == _platform()]
    if not hashes:
        kinds = [r["platform"] for r in record["platforms"]]
        pytest.skip(f"the record is bit-exact on {kinds}, this is {_platform()}")
    assert now["sha256"] == hashes[0]


def _record(add):
    now = _default_output()
    entry = {"platform": _platform(), "sha256": now.pop("sha256")}
    platforms = [entry]
    if add:
        record = json.loads(RECORD.read_text())
        if any(record[key] != now[key] for key in now):
            raise SystemExit("the header or shape differ from the record's: record again without --add")
        platforms = [r for r in record["platforms"] if r["platform"] != entry["platform"]] + platforms
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps({"platforms": platforms, **now}, indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD} for {entry['platform']}")


if __name__ == "__main__":
    import sys

    _record(add="--add" in sys.argv[1:])
