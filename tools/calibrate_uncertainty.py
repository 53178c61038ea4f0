"""
Fit the uncertainty calibration of a stochastic model and store it in the model's manifest.

The calibration set is active-region patches the model was never trained on: by default the nine
2025 SHARP patches of ``../shared/data/hmi-sharp`` (the shipped ``ldm-res-s2d-cpu`` config trains on
the 2012 ones only), never the held-out 2016-07-07 frame. Each patch is cut into non-overlapping
``--crop`` x ``--crop`` pieces (0.5" pixels; a SHARP CEA pixel, 0.03 deg, is taken as 0.5"),
degraded by 4x4 block means as in the paper's protocol, and super-resolved ``--samples`` times
with the model's own sampler and back-projection; `sunpy_superres.conformal.fit_std_calibration`
then fits one split-conformal factor per ``|B|`` bin. Run from the repository root::

    python tools/calibrate_uncertainty.py runs/cpu-ldm-res-s2d/model --samples 8 --write

Without ``--write`` it only prints the coverage before and after (on the calibration crops
themselves: the held-out check is ``benchmarks/evaluate_heldout.py``).
"""

import argparse
import glob
import json
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames

from sunpy_superres import superresolve
from sunpy_superres.calibration import NORMALISATION_RANGE
from sunpy_superres.conformal import fit_std_calibration
from sunpy_superres.evaluation import degrade, uncertainty_calibration
from sunpy_superres.models import load_model
from sunpy_superres.models.hub import write_manifest
from sunpy_superres.training.data import Patch


def patch_crops(path, size):
    """Non-overlapping ``size`` x ``size`` crops of a patch without NaN, as 0.5"/pixel maps at disk centre."""
    patch = Patch(path)
    data = patch.data.astype(np.float64) * NORMALISATION_RANGE.to_value(u.G)
    ny, nx = data.shape
    oy, ox = (ny % size) // 2, (nx % size) // 2
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective(observer="earth",
                                                                               obstime=patch.date))
    crops = []
    for y in range(oy, ny - size + 1, size):
        for x in range(ox, nx - size + 1, size):
            piece = data[y:y + size, x:x + size]
            if np.all(np.isfinite(piece)):
                header = sunpy.map.make_fitswcs_header(piece, centre, scale=[0.5, 0.5] * u.arcsec / u.pix,
                                                       unit=u.G, instrument="HMI")
                crops.append(sunpy.map.Map(piece, header))
    return crops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", help="model directory (its manifest is updated with --write)")
    parser.add_argument("--patches", default="../shared/data/hmi-sharp/*.2025*.fits",
                        help="glob of the calibration patches (never the held-out frame)")
    parser.add_argument("--crop", type=int, default=256, help="HR crop side in pixels (multiple of 4)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--write", action="store_true", help="store the calibration in the model's manifest")
    parser.add_argument("--save", type=Path, help="also save the samples and truths to this .npz file")
    args = parser.parse_args()

    files = sorted(glob.glob(args.patches))
    if not files:
        raise SystemExit(f"no calibration patches match {args.patches!r}")
    if any("20160707" in f for f in files):
        raise SystemExit("the 2016-07-07 frame is held out: never calibrate on it")
    model = load_model(args.model, device="cpu")
    truths, preds = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SHARP headers and observer lookups: not our errors
        crops = [c for f in files for c in patch_crops(f, args.crop)]
    print(f"{len(crops)} calibration crops of {args.crop}x{args.crop} from {len(files)} patches, "
          f"{args.samples} samples each, model {model.name} ({model.revision})")
    for i, truth in enumerate(crops):
        lowres = degrade(truth)
        um = superresolve(lowres, model=model, samples=args.samples, seed=args.seed + i, calibrate=False,
                          calibrate_uncertainty=False, keep_samples=True, progress=False)
        truths.append(truth)
        preds.append(um)
    samples = np.stack([p.samples.to_value(u.G) for p in preds])
    truth = np.stack([(t.data * t.unit).to_value(u.G) for t in truths])
    if args.save:
        np.savez_compressed(args.save, samples=samples.astype(np.float32), truth=truth.astype(np.float32))
    source = (f"{len(crops)} crops of {args.crop}^2 from {', '.join(Path(f).name for f in files)}; "
              f"sampler {model.scheduler} {model.steps} steps from t={model.start_timestep}")
    cal = fit_std_calibration(samples * u.G, truth * u.G, source=source)
    print("raw spread of the samples, on the calibration crops:")
    print("\n".join(uncertainty_calibration(preds, truths).pformat(max_width=-1)))
    print(f"calibration: smoothing {cal.smoothing:g} px; factors per bin at N = {cal.samples}: {cal.scales}")
    calibrated = [p.from_map(p.mean_map, std=cal.apply(p.data * p.unit, p.std, args.samples).to_value(p.unit))
                  for p in preds]
    print("(odd-numbered crops fit the factors, even-numbered ones chose the smoothing)")
    print("calibrated, on the calibration crops (in-sample):")
    print("\n".join(uncertainty_calibration(calibrated, truths).pformat(max_width=-1)))
    if args.write:
        path = Path(args.model)
        manifest = json.loads((path / "superres.json").read_text())
        recorded = ("files", "format", "format_version", "package_version")  # write_manifest sets these
        info = {k: v for k, v in manifest.items() if k not in recorded}
        info["uncertainty_calibration"] = cal.to_dict()
        write_manifest(path, info)
        print(f"written to {path / 'superres.json'}")


if __name__ == "__main__":
    main()
