"""
Ship a consistency-distilled student inside its teacher's model directory, as its ``"lcm"`` sampler.

The student (a model directory exported by ``sunpy-superres-train`` with ``[model] kind =
"consistency"``, packaged with ``tools/package_model.py`` and calibrated with
``tools/calibrate_noise_level.py`` and ``tools/calibrate_uncertainty.py``, all on its own sampler) is
copied whole to ``MODEL/lcm``, and the teacher's manifest lists it under ``students`` and records
its checksums. ``superresolve(m, model=MODEL, sampler="lcm")`` then runs the student. The teacher's
own files and settings do not change. Run from the repository root::

    python tools/attach_student.py sunpy_superres/data/models/ldm-res /tmp/ldm-res-lcm
"""

import argparse
import shutil
from pathlib import Path

from sunpy_superres.models import load_model
from sunpy_superres.models.manifest import rewrite_manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", type=Path, help="the teacher's model directory (changed in place)")
    parser.add_argument("student", type=Path, help="the packaged and calibrated student")
    args = parser.parse_args()
    teacher, student = load_model(args.model, device="cpu"), load_model(args.student, device="cpu")
    distilled_from = (getattr(student, "consistency", None) or {}).get("teacher")
    if distilled_from != teacher.revision:
        raise SystemExit(
            f"{args.student} is not a student of {args.model} (revision {teacher.revision}): it was "
            f"distilled from {distilled_from!r}"
        )
    if (args.model / "lcm").exists():
        raise SystemExit(f"{args.model / 'lcm'} exists: remove the old student first")
    shutil.copytree(args.student, args.model / "lcm")
    rewrite_manifest(args.model, {"students": {"lcm": "lcm"}})
    print(f"{args.model}: sampler 'lcm' runs {args.student} (revision {student.revision})")


if __name__ == "__main__":
    main()
