"""
Helpers for the resume tests: what a resumed run logged, and a killed run copied with one tensor of its
checkpoint changed.

Training is seeded per step, so a run that ignored its checkpoint and started again from step 0 would end
with the same weights as one that resumed: equal weights alone prove nothing. A resume test therefore also
checks that the resumed run logged only the steps after the checkpoint, and that a changed checkpoint
changes the result (it was read).
"""

import json
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sunpy_superres.training.loop import latest_checkpoint


def logged_steps(output_dir):
    """The ``step`` of every line of the run's ``log.jsonl``, in the order written (runs append)."""
    lines = (Path(output_dir) / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def checkpoint_step(output_dir):
    """The step of the newest complete checkpoint of a run."""
    return json.loads((latest_checkpoint(output_dir) / "state.json").read_text())["step"]


def copy_run(src, dst):
    """
    Copy a run's output directory to ``dst``, as if it had been written there: its checkpoints' configs
    name ``dst`` as ``output_dir``, so a config for ``dst`` resumes from them.
    """
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    for state_file in (dst / "checkpoints").glob("*/state.json"):
        state = json.loads(state_file.read_text())
        assert state["config"]["output_dir"] == str(src)
        state["config"]["output_dir"] = str(dst)
        state_file.write_text(json.dumps(state, indent=2))
    return dst


def perturb_checkpoint(output_dir, filename, delta=1e-2):
    """
    Add ``delta`` to the largest floating-point tensor of ``filename`` in the newest checkpoint of a run.

    Returns the name of that tensor. The file keeps its safetensors metadata (diffusers reads it).
    """
    path = latest_checkpoint(output_dir) / filename
    with safe_open(path, "pt") as fh:
        metadata = fh.metadata()
    tensors = load_file(path)
    key = max((k for k, t in tensors.items() if t.is_floating_point()), key=lambda k: (tensors[k].numel(), k))
    tensors[key] = tensors[key] + delta
    save_file(tensors, path, metadata=metadata)
    return key


def differing_tensors(a, b):
    """Names of the tensors of two safetensors files that are not bit for bit equal (same names required)."""
    a, b = load_file(a), load_file(b)
    assert a.keys() == b.keys()
    return sorted(k for k in a if not (a[k].shape == b[k].shape and (a[k] == b[k]).all()))
