"""
Ship a distilled student inside its teacher's model directory, as the teacher's few-step sampler.

The student (a model directory exported by ``sunpy-superres-train`` with ``[model] kind =
"consistency"`` or ``"trajectory"``, packaged with ``tools/package_model.py`` and calibrated with
``tools/calibrate_noise_level.py`` and ``tools/calibrate_uncertainty.py``, all on its own sampler) is
copied whole to ``MODEL/lcm`` or ``MODEL/distilled`` (its sampler's name), and the teacher's manifest
lists it under ``students`` and records its checksums. ``superresolve(m, model=MODEL,
sampler="distilled")`` (or ``"lcm"``) then runs the student. The teacher's own files and settings do
not change. Run from the repository root::

    python tools/attach_student.py sunpy_superres/data/models/ldm-res /tmp/ldm-res-distilled
"""

import argparse
import json
import shutil
from pathlib import Path

from sunpy_superres.models import load_model
from sunpy_superres.models.manifest import MANIFEST, rewrite_manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", type=Path, help="the teacher's model directory (changed in place)")
    parser.add_argument("student", type=Path, help="the packaged and calibrated student")
    args = parser.parse_args()
    # Both as their directories store them: the teacher's own network, the student itself.
    teacher = load_model(args.model, device="cpu", stored=True)
    student = load_model(args.student, device="cpu", stored=True)
    sampler = getattr(student, "own_sampler", None)
    record = (student.consistency if sampler == "lcm" else student.trajectory) if sampler else None
    distilled_from = (record or {}).get("teacher")
    if distilled_from != teacher.revision:
        raise SystemExit(
            f"{args.student} is not a student of {args.model} (revision {teacher.revision}): it was "
            f"distilled from {distilled_from!r}"
        )
    if (args.model / sampler).exists():
        raise SystemExit(f"{args.model / sampler} exists: remove the old student first")
    shutil.copytree(args.student, args.model / sampler)
    students = json.loads((args.model / MANIFEST).read_text()).get("students", {})
    rewrite_manifest(args.model, {"students": {**students, sampler: sampler}})
    print(f"{args.model}: sampler {sampler!r} runs {args.student} (revision {student.revision})")


if __name__ == "__main__":
    main()
