"""
Fit the uncertainty calibration of a stochastic model and store it in the model's manifest.

Two kinds of calibration crops, never from the held-out 2016-07-07 frame:

* ``--hmi``: crops of full-disk HMI frames (by default the two training frames, 2011-12-17 and
  2019-06-21, as the issue asks): the ``--strong`` crops with the most unsigned flux inside 0.85
  solar radii and ``--random`` others, ``--crop`` x ``--crop`` pixels each. Native HMI pixels: their
  noise and small-scale texture are what the model will meet.
* ``--patches``: non-overlapping crops of active-region patches (0.5" pixels; a SHARP CEA pixel,
  0.03 deg, is taken as 0.5"), by default the nine 2025 SHARP patches, which the shipped
  ``ldm-res-s2d-cpu`` config does not train on. Their CEA remapping smooths the finest scales (near
  the 2-pixel period, relative to periods of 4-8 pixels, about 3.5 times less power than native HMI
  active-region crops), so they are better as an independent check of the coverage than as the
  calibration itself (``--check``).

Each crop is degraded by 4x4 block means as in the paper's protocol and super-resolved ``--samples``
times with the model's own sampler and back-projection (a noise-conditioned model at the quiet-Sun
noise of the crop's own frame, `sunpy_superres.metrics.physics.quiet_sun_noise` within 0.9 solar
radii, or of its patch: the factors then calibrate the spread against a truth whose noise the model
was asked for, as a user's target level would be; ``--noise-level`` fixes one level instead);
`sunpy_superres.conformal.fit_std_calibration` then fits the factors, per bin of the output and
then, raised where needed, per range of the true field. Run from the repository root::

    python tools/calibrate_uncertainty.py runs/cpu-ldm-res-s2d/model --samples 8 --write

Without ``--write`` it only prints the coverage before and after (on the calibration crops
themselves: the held-out check is ``benchmarks/evaluate_heldout.py``). ``--min-coverage`` lets the
fit trade ``+-2 std`` (down to that coverage) for ``+-1 std`` where the errors are heavy-tailed (see
`sunpy_superres.conformal`). ``--save`` keeps the samples (and the check crops' samples), and
``--load`` refits from such a file with the same crops and options, without sampling again.
"""

import argparse
import functools
import glob
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
from sunpy_superres.metrics.physics import quiet_noise_gauss, quiet_sun_noise
from sunpy_superres.models import load_model
from sunpy_superres.models.manifest import rewrite_manifest
from sunpy_superres.training.data import Patch
from sunpy_superres.uncertainty import UncertaintyMap


def patch_crops(path, size):
    """Non-overlapping ``size`` x ``size`` crops of a patch without NaN, as 0.5"/pixel maps at disk centre."""
    patch = Patch(path)
    data = patch.data.astype(np.float64) * NORMALISATION_RANGE.to_value(u.G)
    ny, nx = data.shape
    oy, ox = (ny % size) // 2, (nx % size) // 2
    centre = SkyCoord(
        0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=patch.date)
    )
    crops = []
    for y in range(oy, ny - size + 1, size):
        for x in range(ox, nx - size + 1, size):
            piece = data[y : y + size, x : x + size]
            if np.all(np.isfinite(piece)):
                header = sunpy.map.make_fitswcs_header(
                    piece, centre, scale=[0.5, 0.5] * u.arcsec / u.pix, unit=u.G, instrument="HMI"
                )
                crops.append(sunpy.map.Map(piece, header))
    return crops


def frame_noise(smap, max_radius=0.9):
    """Quiet-Sun noise of a full disk within ``max_radius`` solar radii, in G."""
    coords = sunpy.map.all_coordinates_from_map(smap)
    inside = np.hypot(coords.Tx, coords.Ty) < max_radius * smap.rsun_obs
    data = np.where(inside, np.asarray(smap.data, dtype=np.float64), np.nan)
    return quiet_sun_noise(smap._new_instance(data, smap.meta))


@functools.cache
def _measured_noise(path):
    """Quiet-Sun noise of a full-disk frame (within 0.9 R) or of a patch, in G."""
    if "sharp" in Path(path).name:
        return quiet_noise_gauss(Patch(path).data * NORMALISATION_RANGE.to_value(u.G))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frame_noise(sunpy.map.Map(path)).to_value(u.G)


def noise_level_of(path, args, conditioned, model=None):
    """The target noise level for crops of ``path``: None for an unconditioned model.

    The frame's own noise, or the nearest level ``model`` makes when it cannot make that one (its
    noise-label map's range: the ``ldm`` of the paper's comparison makes no less than about 4.3 G).
    """
    if not conditioned:
        return None
    level = args.noise_level if args.noise_level is not None else _measured_noise(path)
    made = getattr(model, "noise_label_map", None)
    if made is not None:
        level = float(np.clip(level, made["output_gauss"][0], made["output_gauss"][-1]))
    return level


def check_level(model, path, args, conditioned):
    """The level for a check patch: its own noise where the model can make it, else the model's default.

    The CEA remapping of SHARP patches smooths their finest scales, so their measured noise can lie
    below what a model's sampler makes (2025 patches: about 2.7 G).
    """
    level = noise_level_of(path, args, conditioned)
    if level is None:
        return None
    try:
        model.configure_sampler(noise_level=level)
    except ValueError:
        return None
    return level


def disk_crops(path, size, strong, random, seed=0):
    """The ``strong`` crops with most unsigned flux and ``random`` others, inside 0.85 R of a full disk."""
    from astropy.coordinates import SkyCoord

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smap = sunpy.map.Map(path)
        centre = smap.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame))
    radius = (smap.rsun_obs / smap.scale.axis1).to_value(u.pix)
    cy, cx = float(centre.y.value), float(centre.x.value)
    data = np.abs(np.nan_to_num(smap.data))
    origins, flux = [], []
    for y in range(0, data.shape[0] - size + 1, size):
        for x in range(0, data.shape[1] - size + 1, size):
            corners = [(y, x), (y + size, x), (y, x + size), (y + size, x + size)]
            if max(np.hypot(a - cy, b - cx) for a, b in corners) < 0.85 * radius:
                origins.append((y, x))
                flux.append(data[y : y + size, x : x + size].sum())
    order = list(np.argsort(flux)[::-1])
    chosen = order[:strong]
    rest = order[strong:]
    rng = np.random.default_rng(seed)
    chosen += list(rng.choice(rest, size=min(random, len(rest)), replace=False))
    crops = []
    for k in chosen:
        y, x = origins[k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crops.append(smap.submap([x, y] * u.pix, top_right=[x + size - 1, y + size - 1] * u.pix))
    return crops


def _loaded_maps(samples, truth, crops, path):
    """The saved samples of ``crops`` as `UncertaintyMap` objects on the crops' grids, checked."""
    kept = np.stack([(t.data * t.unit).to_value(u.G) for t in crops]).astype(np.float32)
    if samples.shape[0] != len(crops) or not np.array_equal(truth, kept, equal_nan=True):
        raise SystemExit(
            f"{path} holds samples of other crops: save them with --save and the same crop options"
        )
    maps = []
    for s, t in zip(samples, crops, strict=True):
        s = (s.astype(np.float64) * u.G).to_value(t.unit)
        maps.append(UncertaintyMap.from_map(sunpy.map.Map(s.mean(axis=0), t.meta), samples=s))
    return maps


def _samples_of(model, args, truths, levels, seed, loaded, prefix):
    """``args.samples`` samples of each of ``truths`` degraded (seeds from ``seed``), or those ``loaded``
    keeps under ``prefix`` (``""`` for the calibration crops, ``"check_"`` for the check crops)."""
    if loaded is not None and f"{prefix}samples" in loaded:
        return _loaded_maps(loaded[f"{prefix}samples"], loaded[f"{prefix}truth"], truths, args.load)
    return [
        superresolve(
            degrade(truth),
            model=model,
            noise_level=level,
            samples=args.samples,
            antithetic=args.antithetic,
            symmetric=args.symmetric,
            seed=seed + i,
            calibrate=False,
            calibrate_uncertainty=False,
            keep_samples=True,
            progress=False,
        )
        for i, (truth, level) in enumerate(zip(truths, levels, strict=True))
    ]


def _atomic_savez(path, **arrays):
    """Write ``arrays`` to ``path`` through a temporary file and a rename: a failed write loses nothing."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("model", help="model directory (its manifest is updated with --write)")
    parser.add_argument(
        "--hmi",
        nargs="*",
        default=[
            "../shared/data/hmi/hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
            "../shared/data/hmi/hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
        ],
        help="full-disk HMI frames to crop (never the held-out frame)",
    )
    parser.add_argument("--strong", type=int, default=16, help="crops with the most flux per frame")
    parser.add_argument("--random", type=int, default=8, help="other crops per frame")
    parser.add_argument("--patches", default="", help="glob of active-region patches to calibrate on too")
    parser.add_argument(
        "--check",
        default="../shared/data/hmi-sharp/*.2025*.fits",
        help="glob of patches on which to report the calibrated coverage (not fitted on)",
    )
    parser.add_argument("--crop", type=int, default=256, help="HR crop side in pixels (multiple of 4)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument(
        "--noise-level",
        type=float,
        help="target noise (G) of a noise-conditioned model for every crop (default: each frame's own)",
    )
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument(
        "--antithetic",
        nargs="?",
        const="noise",
        choices=["noise", "polarity"],
        help="draw the samples in antithetic pairs (of negated noise; 'polarity': of the input's polarity "
        "reversed, superresolve's antithetic='polarity') and fit the factors for that design",
    )
    parser.add_argument(
        "--symmetric",
        action="store_true",
        help="draw the samples under the input's flips (superresolve's symmetric=True) and fit for that design",
    )
    parser.add_argument("--write", action="store_true", help="store the calibration in the model's manifest")
    parser.add_argument(
        "--min-coverage",
        type=float,
        help="lowest coverage of +-2 std the fit may choose to bring +-1 std nearer 0.683 (default: fixed 0.9545)",
    )
    parser.add_argument("--save", type=Path, help="also save the samples and truths to this .npz file")
    parser.add_argument(
        "--load",
        type=Path,
        help="refit from the samples a --save run of the same crops and options saved, instead of sampling",
    )
    args = parser.parse_args()
    # superresolve's values of the option: False, True (negated noise) or "polarity".
    args.antithetic = {None: False, "noise": True, "polarity": "polarity"}[args.antithetic]

    files = sorted(glob.glob(args.patches)) if args.patches else []
    if any("20160707" in f for f in [*files, *args.hmi]):
        raise SystemExit("the 2016-07-07 frame is held out: never calibrate on it")
    # The network the directory stores (its --write goes there), not a default_sampler's student.
    model = load_model(args.model, device="cpu", stored=True)
    conditioned = getattr(model, "noise_level", None) is not None
    crops, levels = [], []
    for i, f in enumerate(args.hmi):
        new = disk_crops(f, args.crop, args.strong, args.random, seed=i)
        crops += new
        levels += [noise_level_of(f, args, conditioned, model)] * len(new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SHARP headers and observer lookups: not our errors
        for f in files:
            new = patch_crops(f, args.crop)
            crops += new
            levels += [noise_level_of(f, args, conditioned, model)] * len(new)
    if conditioned:
        print(
            "noise levels (G): "
            + ", ".join(
                f"{Path(f).name.split('.')[2]} {noise_level_of(f, args, True, model):.2f}"
                for f in [*args.hmi, *files]
            )
        )
    print(
        f"{len(crops)} calibration crops of {args.crop}x{args.crop} from {len(args.hmi)} frames and "
        f"{len(files)} patches, "
        f"{args.samples} samples each, model {model.name} ({model.revision})"
    )
    loaded = np.load(args.load) if args.load else None
    truths = crops
    preds = _samples_of(model, args, crops, levels, args.seed, loaded, "")
    samples = np.stack([p.samples.to_value(u.G) for p in preds])
    truth = np.stack([(t.data * t.unit).to_value(u.G) for t in truths])
    saving = args.save and loaded is None
    arrays = {"samples": samples.astype(np.float32), "truth": truth.astype(np.float32)}
    if saving:  # before the fit: the samples are the costly part
        _atomic_savez(args.save, **arrays)
    names = ", ".join(
        Path(f).name.split(".")[2] if "sharp" in f else Path(f).name for f in [*args.hmi, *files]
    )
    source = (
        f"{len(crops)} crops of {args.crop}^2 from {names}; "
        f"sampler {model.sampler} {model.steps} steps from t={model.start_timestep}"
        + {True: ", antithetic pairs", "polarity": ", antithetic pairs by polarity reversal"}.get(
            args.antithetic, ""
        )
        + (", under the input's flips" if args.symmetric else "")
    )
    # A noise-conditioned model's factors may follow the level asked of it: each crop's level goes in.
    cal = fit_std_calibration(
        samples * u.G,
        truth * u.G,
        noise_levels=levels * u.G if conditioned else None,
        source=source,
        antithetic=args.antithetic,
        symmetric=args.symmetric,
        min_coverage=args.min_coverage,
    )
    print("raw spread of the samples, on the calibration crops:")
    print("\n".join(uncertainty_calibration(preds, truths).pformat(max_width=-1)))
    if cal.min_coverage is not None:
        print(f"target coverage of +-2 std chosen: {cal.coverage:.4f} (from {cal.min_coverage:g} to 0.9545)")
    print(f"calibration: smoothing {cal.smoothing:g} px; factors per bin at N = {cal.samples}: {cal.scales}")
    print(
        f"of which multipliers for the true ranges from {cal.truth_ranges_gauss} G, at N = {cal.samples}: "
        f"{cal.multipliers}"
    )
    if cal.noise_levels_gauss:
        print(
            f"and ratios at the noise levels {cal.noise_levels_gauss} G, at N = {cal.samples}: {cal.noise_ratios}"
        )

    def calibrated_map(p, level):
        if conditioned and level is None:  # a check patch sampled at the model's default level
            level = model.noise_level
        std = cal.apply(p.data * p.unit, p.std, args.samples, level if conditioned else None)
        return p.from_map(p.mean_map, std=std.to_value(p.unit))

    calibrated = [calibrated_map(p, level) for p, level in zip(preds, levels, strict=True)]
    print("(odd-numbered crops fit the factors, even-numbered ones chose the smoothing)")
    print("calibrated, on the calibration crops (in-sample):")
    print("\n".join(uncertainty_calibration(calibrated, truths).pformat(max_width=-1)))
    # The even-numbered crops chose the smoothing, floors and target and, with the odd ones, fitted
    # the multipliers of the true ranges; the per-bin factors were fitted on the odd ones only.
    halves = (
        ("odd-numbered (the per-bin factors fitted on them)", slice(1, None, 2)),
        ("even-numbered (the per-bin factors not fitted on them)", slice(0, None, 2)),
    )
    for name, part in halves:
        print(f"calibrated, on the {name} calibration crops:")
        print("\n".join(uncertainty_calibration(calibrated[part], truths[part]).pformat(max_width=-1)))
    if args.write:
        path = Path(args.model)
        rewrite_manifest(path, {"uncertainty_calibration": cal.to_dict()})
        print(f"written to {path / 'superres.json'}")
    if args.check:
        check_files = sorted(glob.glob(args.check))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checks = [(c, f) for f in check_files for c in patch_crops(f, args.crop)]
        check_levels = [check_level(model, f, args, conditioned) for _, f in checks]
        checks = [t for t, _ in checks]
        ums = _samples_of(model, args, checks, check_levels, args.seed + 10_000, loaded, "check_")
        calibrated_checks = [calibrated_map(p, level) for p, level in zip(ums, check_levels, strict=True)]
        print(f"calibrated, on {len(checks)} check crops of {len(check_files)} patches (not fitted on):")
        print("\n".join(uncertainty_calibration(calibrated_checks, checks).pformat(max_width=-1)))
        if saving:
            arrays["check_samples"] = np.stack([p.samples.to_value(u.G) for p in ums]).astype(np.float32)
            arrays["check_truth"] = np.stack([(t.data * t.unit).to_value(u.G) for t in checks]).astype(
                np.float32
            )
            _atomic_savez(args.save, **arrays)


if __name__ == "__main__":
    main()
