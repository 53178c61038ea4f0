"""
The evaluation protocol of Ramunno et al. (2025, sections 5-6, Tables 1-2, Figs. 8-10) as a function.

For each ground-truth map (HMI at 0.5"/pixel): cut an active-region-centred crop, degrade it by 4x4
block means to 2"/pixel (the paper's degradation, sunpy's ``superpixel``), super-resolve it with
every model (``samples`` times for stochastic ones, each sample with its own seed), and score each
output against the crop:

==================  ==========================================================================
column              meaning
==================  ==========================================================================
``psnr``            peak signal-to-noise ratio over +-3000 G [dB] (higher is better)
``ssim``            structural similarity over +-3000 G (higher is better)
``flux_error``      \\|unsigned-flux difference\\| [%]
``flux_bias``       signed unsigned-flux difference [%] (positive: the output has more flux)
``ar_area_error``   \\|active-region area difference\\| at 300 G [%] (NaN where the truth has none)
``spectral_error``  mean \\|ln(P_pred / P_true)\\| between the input's and the output's Nyquist
``small_scale``     power at scales below 2" relative to the truth (1 is right)
``noise_ratio``     quiet-Sun noise of the output over the truth's, both on the blocks whose truth
                    is quiet (`~sunpy_superres.metrics.physics.quiet_sun_noise`; 1 is right, NaN
                    where the crop has too little quiet Sun)
``cancel_ratio``    share of the unsigned flux that cancels inside the input's pixels, output over
                    truth, on the blocks of 4x4 whose truth has ``|mean|`` >= 5 G
                    (`~sunpy_superres.metrics.physics.subpixel_cancellation`; 1 is right)
``lpips``           LPIPS distance, when LPIPS weights are given (lower is better)
``coverage_1sd``    fraction of true pixels within the mean +- 1 std (0.683 when calibrated)
``coverage_2sd``    fraction of true pixels within the mean +- 2 std (0.954 when calibrated)
==================  ==========================================================================

The two signed columns tell where a flux error comes from: weak-field pixels carry most of the
unsigned flux of a quiet or plage crop, so an output whose noise is a few per cent above the truth's
adds a few per cent of flux without any change in structure (``flux_bias`` follows ``noise_ratio``);
a flux bias with the noise right (``noise_ratio`` near 1) is an error in the field's structure,
and ``cancel_ratio`` says whether it is the sub-pixel texture's sign: above 1, the output's texture
crosses zero inside pixels whose truth is of one sign.

A stochastic model scored with ``samples > 1`` has one row per sample and one for the mean of its
samples (``"<name> (mean of N)"``), which carries the coverage of its standard deviation (see
`uncertainty_calibration` for the whole calibration report).

The summary has the mean and standard deviation of each column per model, like the paper's Table 1;
``fid`` per model is added when FID weights are given.
"""

import dataclasses
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.table import Table, vstack

from .maps import _STALE_KEYS
from .memory import keep_freed_memory
from .metrics import image, physics, regions, spectra
from .models import load_model
from .options import Options, fill_doc
from .seeds import evaluation_seed
from .superresolve import _design_name, configured_model, superresolve

__all__ = [
    "Evaluation",
    "evaluate",
    "degrade",
    "plot_boxplots",
    "plot_fourier",
    "plot_power_spectra",
    "METRICS",
    "uncertainty_calibration",
    "sample_spread",
    "SIGNED_ERRORS",
    "COVERAGE_BIN_EDGES",
    "PAPER_TABLE_1",
]

#: Lower edges of the true ``|B|`` bins of `uncertainty_calibration` (the last bin is open).
COVERAGE_BIN_EDGES = (0.0, 100.0, 500.0) * u.G

#: Per-output metrics, in the order of the table, with their units and whether lower is better.
METRICS = {
    "psnr": ("dB", False),
    "ssim": ("", False),
    "flux_error": ("%", True),
    "flux_bias": ("%", None),
    "ar_area_error": ("%", True),
    "spectral_error": ("", True),
    "small_scale": ("", None),
    "noise_ratio": ("", None),
    "cancel_ratio": ("", None),
    "lpips": ("", True),
    "coverage_1sd": ("", None),
    "coverage_2sd": ("", None),
}

#: Table 1 of Ramunno et al. (2025, A&A 698, A140): HMI degraded 4x4 and super-resolved back, 250
#: validation crops of 1024x1024 pixels around the most intense active region, 10 samples of each
#: diffusion model; mean and standard deviation per metric, under this package's model names. FID and
#: LPIPS use the paper's pretrained feature networks; flux and AR-size errors are |differences| in %.
PAPER_TABLE_1 = {
    "ldm-res": {
        "psnr": (38.2, 2.0),
        "ssim": (0.9, 0.03),
        "lpips": (0.03, 0.01),
        "fid": (0.01, 0.0),
        "flux_error": (7.52, 8.56),
        "ar_area_error": (8.0, 11.1),
    },
    "ldm": {
        "psnr": (29.2, 5.0),
        "ssim": (0.23, 0.21),
        "lpips": (0.09, 0.04),
        "fid": (0.38, 0.02),
        "flux_error": (58.3, 27.9),
        "ar_area_error": (17.7, 19.3),
    },
    "ddpm-res": {
        "psnr": (21.8, 6.6),
        "ssim": (0.14, 0.2),
        "lpips": (0.63, 0.21),
        "fid": (1.76, 0.12),
        "flux_error": (73.3, 26.4),
        "ar_area_error": (67.8, 36.3),
    },
    "ddpm": {
        "psnr": (17.2, 7.5),
        "ssim": (0.06, 0.13),
        "lpips": (0.47, 0.17),
        "fid": (3.0, 0.56),
        "flux_error": (81.0, 25.0),
        "ar_area_error": (80.4, 36.6),
    },
    "enhance": {
        "psnr": (37.6, 4.0),
        "ssim": (0.92, 0.01),
        "lpips": (0.19, 0.04),
        "fid": (0.02, 0.01),
        "flux_error": (51.1, 34.6),
        "ar_area_error": (28.5, 58.5),
    },
    "progressive": {
        "psnr": (38.8, 4.0),
        "ssim": (0.94, 0.01),
        "lpips": (0.15, 0.02),
        "fid": (0.02, 0.01),
        "flux_error": (17.7, 12.0),
        "ar_area_error": (9.0, 16.7),
    },
}


def mean_name(name, samples):
    """Row name of the mean of a stochastic model's samples in `evaluate`'s tables."""
    return f"{name} (mean of {samples})"


@dataclass
class Evaluation:
    """
    The result of `evaluate`.

    Attributes
    ----------
    summary : `~astropy.table.Table`
        One row per model: ``n`` outputs scored, ``<metric>_mean`` and ``<metric>_std`` per metric,
        and ``fid`` when FID weights were given.
    records : `~astropy.table.Table`
        One row per (model, image, sample) with every metric, for box plots and further analysis.
    examples : dict
        Maps of the first image: ``"truth"``, ``"lowres"`` and one output per model (the first
        sample), for `plot_fourier`.
    calibration : dict
        Per stochastic model scored with ``samples > 1``, the `uncertainty_calibration` table of
        its uncertainty maps, all images pooled.
    """

    summary: Table
    records: Table
    examples: dict = field(repr=False)
    calibration: dict = field(default_factory=dict)

    def __str__(self):
        return "\n".join(self.summary.pformat(max_width=-1, max_lines=-1))

    @classmethod
    def concatenate(cls, evaluations):
        """
        One `Evaluation` from several of the same images, e.g. one `evaluate` call per model.

        Parameters
        ----------
        evaluations : sequence of `Evaluation`
            Results of `evaluate` on the same maps with the same crop and seed, each with models of
            its own.

        Returns
        -------
        `Evaluation`
            Summaries and records stacked in order, the examples, calibrations and sample designs
            merged, the rest of the summary's metadata the first's.

        Raises
        ------
        ValueError
            If there is nothing to concatenate, a model appears twice, or the evaluations were made
            on different images.

        Warns
        -----
        UserWarning
            When the stochastic models' samples were drawn in different designs.
        """
        evaluations = list(evaluations)
        if not evaluations:
            raise ValueError("no evaluations to concatenate")
        names = [str(n) for ev in evaluations for n in ev.summary["model"]]
        if len(set(names)) != len(names):
            raise ValueError(f"models appear in more than one evaluation: {names}")
        first = evaluations[0].summary.meta
        for ev in evaluations[1:]:
            other = ev.summary.meta
            if any(other.get(k) != first.get(k) for k in ("dates", "crop", "images", "seed")):
                raise ValueError(
                    "the evaluations were made on different images (dates, crop, image count or "
                    "seed differ); concatenate only results of evaluate() on the same maps"
                )
        summary = vstack([ev.summary for ev in evaluations], metadata_conflicts="silent")
        designs = {k: v for ev in evaluations for k, v in ev.summary.meta.get("sample_designs", {}).items()}
        _warn_of_mixed_designs(designs, stacklevel=2)
        summary.meta = {**first, "sample_designs": designs}
        for name in summary.colnames:
            # A metric only some models have (coverage, FID) is NaN for the others, as in `evaluate`.
            if getattr(summary[name], "mask", None) is not None and summary[name].dtype.kind == "f":
                column = summary[name]
                summary[name] = column.filled(np.nan)
                summary[name].unit, summary[name].format = column.unit, column.format
        records = vstack([ev.records for ev in evaluations], metadata_conflicts="silent")
        examples, calibration = {}, {}
        for ev in evaluations:
            examples.update(ev.examples)
            calibration.update(ev.calibration)
        return cls(summary=summary, records=records, examples=examples, calibration=calibration)

    def write(self, directory, *, overwrite=False):
        """
        Write ``summary.ecsv``, ``records.ecsv``, ``boxplots.png``, ``fourier.png`` and
        ``power_spectra.png`` into ``directory``, each through a temporary file and a rename.

        Returns
        -------
        list of `pathlib.Path`
            The files written.
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from .io import atomic_output

        directory = Path(directory)
        targets = {
            name: directory / name
            for name in ("summary.ecsv", "records.ecsv", "boxplots.png", "fourier.png", "power_spectra.png")
        }
        if not overwrite:
            existing = [str(p) for p in targets.values() if p.exists()]
            if existing:
                raise FileExistsError(
                    f"{', '.join(existing)} exist(s); pass overwrite=True (CLI: --overwrite) to replace them."
                )
        for name in ("summary.ecsv", "records.ecsv"):
            with atomic_output(targets[name], overwrite=overwrite) as tmp:
                getattr(self, name.split(".")[0]).write(tmp, format="ascii.ecsv", overwrite=True)
        for name, plot in (
            ("boxplots.png", plot_boxplots),
            ("fourier.png", plot_fourier),
            ("power_spectra.png", plot_power_spectra),
        ):
            fig = plot(self)
            try:
                with atomic_output(targets[name], overwrite=overwrite) as tmp:
                    fig.savefig(tmp, format="png", dpi=100)
            finally:
                plt.close(fig)
        return list(targets.values())


def degrade(smap, factor=4):
    """
    Degrade a map by ``factor`` x ``factor`` block means, the paper's simulation of MDI from HMI.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        High-resolution map whose sides are multiples of ``factor``.
    factor : int, optional
        Block size (4: 0.5"/pixel -> 2"/pixel).

    Returns
    -------
    `~sunpy.map.GenericMap`
        The block-mean map (`sunpy.map.GenericMap.superpixel` with `numpy.mean`); a block with a NaN
        is NaN.

    Raises
    ------
    ValueError
        If the map's sides are not multiples of ``factor``.

    References
    ----------
    .. [1] Ramunno et al. 2025, section 4: "we compute the average value over every 4x4-pixel block".
    """
    ny, nx = smap.data.shape
    if nx % factor or ny % factor:
        raise ValueError(f"the map is {nx}x{ny} pixels, not a multiple of {factor} per side; crop it first")
    coarse = smap.superpixel((factor, factor) * u.pix, func=np.mean)
    # Keys that describe the original data or its integer encoding (BLANK, BSCALE, DATAMEAN, ...) would
    # be wrong for the float block means, and BLANK makes the map unsavable as FITS: drop them.
    stale = [k for k in coarse.meta if k in _STALE_KEYS]
    if not stale:
        return coarse
    meta = coarse.meta.copy()
    for key in stale:
        meta.pop(key)
    return sunpy.map.Map(coarse.data, meta)


def _as_map(item):
    if isinstance(item, sunpy.map.GenericMap):
        return item
    return sunpy.map.Map(item)


def _crop(smap, crop, center, srs):
    """The AR-centred crop (sides a multiple of 4) that is the ground truth of one image."""
    ny, nx = smap.data.shape
    if crop is None:
        size_y, size_x = ny - ny % 4, nx - nx % 4
        return smap.submap([0, 0] * u.pix, top_right=[size_x - 1, size_y - 1] * u.pix)
    size = int(crop)
    if size % 4 or size < 64:
        raise ValueError(f"crop={crop!r}: the crop side must be a multiple of 4 and at least 64 pixels")
    size = min(size, (min(nx, ny) // 4) * 4)
    if center is None:
        center = regions.most_intense_region(smap, size)
    return regions.region_crop(smap, center, size, srs=srs)


def _noise_ratio(pred, truth):
    """Quiet-Sun noise of ``pred`` over ``truth``'s on the truth's quiet blocks; NaN without enough of them."""
    try:
        truth_noise = physics.quiet_sun_noise(truth)
    except ValueError:  # too little quiet Sun in the crop (a plage- or spot-filled field of view)
        return np.nan
    if truth_noise == 0 * u.G:  # a noise-free (synthetic) truth: no ratio to take
        return np.nan
    return (physics.quiet_sun_noise(pred, reference=truth) / truth_noise).to_value(u.one)


def _cancel_ratio(pred, truth):
    """Share of flux cancelling inside 4x4 blocks, ``pred``'s over ``truth``'s, on the truth's blocks."""
    truth_share = physics.subpixel_cancellation(truth)
    if not truth_share > 0:  # no block counted, or a truth without mixed blocks: no ratio to take
        return np.nan
    return (physics.subpixel_cancellation(pred, reference=truth) / truth_share).to_value(u.one)


def _score(pred, truth, lowres, threshold, lpips_weights):
    flux_pred = physics.unsigned_flux(pred)
    flux_true = physics.unsigned_flux(truth)
    flux_bias = physics.percentage_difference(flux_pred, flux_true).to_value(u.percent)
    area_true = physics.active_region_area(truth, threshold).area
    area_pred = physics.active_region_area(pred, threshold).area
    row = {
        "psnr": image.psnr(pred, truth),
        "ssim": image.ssim(pred, truth),
        "flux_error": abs(flux_bias),
        "flux_bias": flux_bias,
        "ar_area_error": (
            abs(physics.percentage_difference(area_pred, area_true).to_value(u.percent))
            if area_true > 0 * u.Mm**2
            else np.nan
        ),
        "spectral_error": spectra.spectral_error(pred, truth, lowres.scale.axis1),
        "small_scale": spectra.small_scale_power_fraction(pred, truth),
        "noise_ratio": _noise_ratio(pred, truth),
        "cancel_ratio": _cancel_ratio(pred, truth),
        "lpips": image.lpips(pred, truth, weights=lpips_weights) if lpips_weights is not None else np.nan,
    }
    return {k: float(v) for k, v in row.items()}


#: Options of `superresolve` that `evaluate` sets itself.
_OWN_OPTIONS = ("model", "samples", "seed", "keep_samples", "calibrate", "progress")


@fill_doc(exclude=_OWN_OPTIONS)
@keep_freed_memory()  # each call reuses the pages the call before freed (see sunpy_superres.memory)
def evaluate(
    models,
    hr_maps,
    *,
    samples=10,
    crop=1024,
    centers=None,
    srs=None,
    seed=0,
    threshold=300 * u.G,
    lpips_weights=None,
    fid_weights=None,
    progress=False,
    options=None,
    **kwargs,
):
    """
    Score models on ground-truth maps with the protocol of the paper's Tables 1 and 2.

    Parameters
    ----------
    models : list of str or `~sunpy_superres.models.SuperResolutionModel`
        Registry names (e.g. ``["nearest", "bicubic"]``) or loaded models.
    hr_maps : list of `~sunpy.map.GenericMap` or paths
        Ground-truth magnetograms at the output resolution (HMI, 0.5"/pixel).
    samples : int, optional
        Outputs per image for stochastic models (the paper: 10); deterministic models give one.
    crop : int or None, optional
        Side of the AR-centred ground-truth crop in high-resolution pixels (multiple of 4; the paper:
        1024). Smaller maps are used whole. `None` uses every map whole.
    centers : list, optional
        Per map, the crop centre as a `~astropy.coordinates.SkyCoord` or a NOAA number (with ``srs``);
        by default the most intense active region (`sunpy_superres.metrics.regions.most_intense_region`).
    srs : str or `~astropy.table.QTable`, optional
        NOAA SRS file or table for NOAA numbers in ``centers``.
    seed : int or None, optional
        Base seed; sample ``k`` of image ``i`` gets its own seed derived from (seed, i, k).
    threshold : `~astropy.units.Quantity`, optional
        Field strength that defines an active region (300 G, as the paper).
    lpips_weights, fid_weights : path-like, optional
        Pretrained feature weights for LPIPS and FID (see `sunpy_superres.metrics.image`); those
        metrics are left out when not given.
    progress : bool, optional
        Show tile progress bars.
    options : `~sunpy_superres.options.Options`, optional
        The options of `sunpy_superres.superresolve` at once; keyword arguments replace its fields.
        ``model``, ``samples``, ``seed``, ``keep_samples``, ``calibrate`` and ``progress`` are the
        evaluation's own (the degraded ground truth is at HMI levels already: no calibration). The
        sampler, adapter and runtime options apply to stochastic models only; each model is loaded
        and configured once. Without ``noise_level`` a noise-conditioned model makes each HMI map's
        own noise (`sunpy_superres.calibration.hmi_noise_level`: 4.8 G before April 2016, 3.5 G
        since, times the rise from disk centre to limb at the crop's place), so that its texture is
        that of the truth it is scored against.
    {options}

    Returns
    -------
    `Evaluation`
        ``summary`` (mean and std per metric per model), ``records`` (every output) and ``examples``.
        ``summary.meta["sample_designs"]`` says how each stochastic model's samples were drawn.

    Warns
    -----
    UserWarning
        When the samples of the stochastic models were drawn in different designs (``"auto"``
        follows each model's uncertainty calibration), so that their scores are not alike.

    Raises
    ------
    ValueError
        For an empty model or map list, a bad crop size, or ``centers`` of the wrong length.

    References
    ----------
    .. [1] Ramunno, F. P. et al. 2025, A&A 698, A140, sections 5-6, Tables 1-2.
    """
    opts = _evaluation_options(options, kwargs, progress)
    if not models:
        raise ValueError("no models to evaluate; pass e.g. models=['nearest', 'bicubic']")
    hr_maps = list(hr_maps)
    if not hr_maps:
        raise ValueError("no ground-truth maps to evaluate on")
    if not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if centers is not None and len(centers) != len(hr_maps):
        raise ValueError(f"{len(centers)} centers for {len(hr_maps)} maps; give one per map or None")
    loaded = [_configured(m, opts) for m in models]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"models listed twice: {names}")

    rows, uncertain, truths, examples, designs = [], {}, [], {}, {}
    outputs = {name: [] for name in names}
    for i, item in enumerate(hr_maps):
        truth = _crop(_as_map(item), crop, None if centers is None else centers[i], srs)
        lowres = degrade(truth)
        truths.append(truth)
        if i == 0:
            examples.update(truth=truth, lowres=lowres)
        for model in loaded:
            preds, um = _model_outputs(model, lowres, opts, samples=samples, seed=evaluation_seed(seed, i, 0))
            for k, pred in enumerate(preds):
                scores = _score(pred, truth, lowres, threshold, lpips_weights)
                rows.append({"model": model.name, "image": i, "sample": k, "date": truth.date.isot, **scores})
                outputs[model.name].append(pred)
                if i == 0 and k == 0:
                    examples[model.name] = pred
            if um is not None:
                # The mean of the samples as its own row, with the coverage of its uncertainty.
                uncertain.setdefault(model.name, []).append((um, truth))
                designs[model.name] = _design_name(um.meta.get("sranti", False), bool(um.meta.get("srsymm")))
                if i == 0:
                    examples[mean_name(model.name, samples)] = um.mean_map
                rows.append(
                    _mean_row(um, truth, lowres, mean_name(model.name, samples), i, threshold, lpips_weights)
                )

    _warn_of_mixed_designs(designs, stacklevel=3)
    names += [mean_name(m.name, samples) for m in loaded if m.stochastic and samples > 1]
    records = _records(rows)
    summary = _summarise(records, names)
    if fid_weights is not None:
        summary["fid"] = [image.fid(outputs[name], truths, weights=fid_weights) for name in names]
    summary.meta.update(
        {
            "protocol": "Ramunno et al. 2025, Tables 1-2",
            "samples": samples,
            "crop": crop,
            "seed": seed,
            "threshold_G": threshold.to_value(u.G),
            "consistency": str(opts.consistency),
            "images": len(hr_maps),
            "dates": sorted({t.date.isot for t in truths}),
            "sample_designs": designs,
        }
    )
    calibration = {
        name: uncertainty_calibration(*zip(*pairs, strict=True)) for name, pairs in uncertain.items()
    }
    return Evaluation(summary=summary, records=records, examples=examples, calibration=calibration)


def _warn_of_mixed_designs(designs, stacklevel):
    """Warn when the stochastic models of one table had their samples drawn in different designs."""
    if len(set(designs.values())) > 1:
        drawn = "; ".join(f"{name}: {design}" for name, design in designs.items())
        warnings.warn(
            f"the models' samples were drawn in different designs ({drawn}), which changes their "
            "scores; antithetic='auto' and symmetric='auto' follow each model's uncertainty "
            "calibration: pass antithetic= and symmetric= to draw them alike",
            UserWarning,
            stacklevel=stacklevel,
        )


def _evaluation_options(options, kwargs, progress):
    """The `Options` of an evaluation: no calibration, its own progress, no own settings."""
    own = sorted(set(kwargs) & set(_OWN_OPTIONS))
    if own:
        raise TypeError(
            f"evaluate sets {', '.join(own)} itself; give samples=, seed= and progress= as its own "
            "arguments (calibrate is always off: the degraded ground truth is at HMI levels)"
        )
    # What an Options given brings for the evaluation's own settings is not used: back to the defaults.
    defaults = {f.name: f.default for f in dataclasses.fields(Options) if f.name in _OWN_OPTIONS}
    own = {**defaults, "calibrate": False, "progress": bool(progress)}
    return Options.from_kwargs(options, **kwargs, **own, stacklevel=4)


# What a model applies once, when it is configured: not passed again with every call.
_MODEL_SETTINGS = (
    "adapter",
    "steps",
    "sampler",
    "start_timestep",
    "spacing",
    "noise_level",
    "precision",
    "compile",
)


def _configured(model, opts):
    """``model`` loaded; a stochastic one with the adapter, sampler and runtime settings applied."""
    loaded = load_model(model, device=opts.device)
    if not loaded.stochastic:
        return loaded  # the baselines as the paper compares them: none of those settings apply
    return configured_model(dataclasses.replace(opts, model=loaded))


def _model_outputs(model, lowres, opts, *, samples, seed):
    """``(outputs, UncertaintyMap or None)`` of ``model`` on ``lowres``: its samples, or its one output."""
    # The model is configured already (`_configured`): the call passes none of its settings.
    opts = dataclasses.replace(opts, model=model, **dict.fromkeys(_MODEL_SETTINGS))
    if not model.stochastic:
        return [superresolve(lowres, options=opts)], None
    opts = dataclasses.replace(opts, seed=seed)
    if samples == 1:
        return [superresolve(lowres, options=opts)], None
    # One call for all samples: the mean and the (calibrated) spread of superresolve.
    um = superresolve(lowres, options=dataclasses.replace(opts, samples=samples, keep_samples=True))
    return [type(um.mean_map)(s.value, um.meta) for s in um.samples], um


def _mean_row(um, truth, lowres, name, image_index, threshold, lpips_weights):
    """The record of the mean of the samples, with the coverage of its standard deviation."""
    cover = uncertainty_calibration([um], [truth])[0]
    return {
        "model": name,
        "image": image_index,
        "sample": -1,
        "date": truth.date.isot,
        **_score(um.mean_map, truth, lowres, threshold, lpips_weights),
        "coverage_1sd": float(cover["coverage_1sd"]),
        "coverage_2sd": float(cover["coverage_2sd"]),
    }


def _records(rows):
    """The records table; rows of single outputs have no coverage (NaN)."""
    blank = {"coverage_1sd": np.nan, "coverage_2sd": np.nan}
    return Table(rows=[{**row, **{k: row.get(k, v) for k, v in blank.items()}} for row in rows])


def _ence(std, err, nbins):
    """Expected normalised calibration error over ``nbins`` equal-count bins of ``std`` (Levi et al. 2022)."""
    order = np.argsort(std, kind="stable")
    parts = [p for p in np.array_split(order, min(nbins, std.size)) if p.size]
    rmv = np.array([np.sqrt(np.mean(std[p] ** 2)) for p in parts])
    rmse = np.array([np.sqrt(np.mean(err[p] ** 2)) for p in parts])
    return float(np.mean(np.abs(rmv - rmse) / np.maximum(rmv, np.finfo(float).tiny)))


def uncertainty_calibration(predictions, truths, *, edges=COVERAGE_BIN_EDGES, ence_bins=10):
    """
    Does the standard deviation of an `~sunpy_superres.UncertaintyMap` mean what it says?

    Pools the pixels of every prediction and reports, overall and per bin of the true ``|B|``:
    the fraction of true pixels inside ``mean +- 1 std`` and ``mean +- 2 std`` (0.683 and 0.954 for
    a calibrated Gaussian uncertainty), the mean squared z-score (1), the ratio of the rms standard
    deviation to the rms error (1), the Spearman rank correlation of the standard deviation with
    ``|error|`` (does the map show *where* the output is less certain?), and the expected normalised
    calibration error, ENCE (0), over ``ence_bins`` equal-count bins of the standard deviation (Levi
    et al. 2022, "Evaluating and calibrating uncertainty prediction in regression tasks", Sensors 22,
    5540). ENCE grows with the number of bins even for a calibrated model: compare it at a fixed count.

    Parameters
    ----------
    predictions : list of `~sunpy_superres.UncertaintyMap`
        Super-resolved maps with their standard deviation.
    truths : list of `~sunpy.map.GenericMap`
        The true maps on the same pixel grids.
    edges : `~astropy.units.Quantity`, optional
        Lower edges of the true ``|B|`` bins, from 0 G (default 0, 100 and 500 G).
    ence_bins : int, optional
        Bins of the ENCE.

    Returns
    -------
    `~astropy.table.Table`
        Rows ``"all"`` and one per bin (``"0-100 G"``, ...): ``n_pixels``, ``coverage_1sd``,
        ``coverage_2sd``, ``mean_z2``, ``std_over_rmse``, ``spearman``, ``ence``.

    Raises
    ------
    ValueError
        If the lists differ in length, a prediction has no standard deviation, or grids differ.
    """
    predictions, truths = list(predictions), list(truths)
    if len(predictions) != len(truths) or not predictions:
        raise ValueError(f"need one truth per prediction, got {len(predictions)} and {len(truths)}")
    err, std, absb = _pooled_errors(predictions, truths)
    lows = np.asarray(u.Quantity(edges, u.G).value, dtype=float)
    highs = list(lows[1:]) + [np.inf]
    subsets = [("all", np.ones(err.shape, dtype=bool))]
    subsets += [
        (f"{lo:g}-{hi:g} G" if np.isfinite(hi) else f">{lo:g} G", (absb >= lo) & (absb < hi))
        for lo, hi in zip(lows, highs, strict=True)
    ]
    table = Table(rows=[_calibration_row(name, err[sel], std[sel], ence_bins) for name, sel in subsets])
    for col in table.colnames[2:]:
        table[col].format = ".3g"
    table.meta.update({"images": len(predictions), "ence_bins": int(ence_bins)})
    return table


#: The columns of `Evaluation.records` that are signed errors, for `sample_spread`.
SIGNED_ERRORS = ("flux_bias",)


def sample_spread(evaluation, metric="flux_bias"):
    """
    Does the spread of a region's quantity over the samples say how far off it is?

    The per-pixel standard deviation carries no correlations between pixels, so the uncertainty of
    a quantity over a region (its unsigned flux, say) is to be read from the samples: compute it on
    each and take their spread. This measures whether that spread means what it says. For every
    stochastic model of ``evaluation`` with several samples of each image: per image, the mean over
    its samples of the signed error ``metric`` (the error of the mean of the samples' values) and
    the standard deviation of the samples' values (``ddof=1``); over the images, the rms of each and
    their ratio, and the fraction of images whose mean lies within 2 of its standard deviations of
    the truth. Were the truth one more draw like the samples, the mean's error would be
    ``sqrt(1 + 1/n)`` of the spread and that fraction 0.90 for 8 samples (Student's t with 7
    degrees of freedom at ``2 / sqrt(1 + 1/8)``), 0.95 for many.

    Parameters
    ----------
    evaluation : `Evaluation`
        The result of `evaluate` with ``samples > 1``.
    metric : str, optional
        A signed error of `Evaluation.records` (`SIGNED_ERRORS`): ``"flux_bias"``, the unsigned
        flux's error in percent of the truth's.

    Returns
    -------
    `~astropy.table.Table`
        One row per stochastic model: ``images``, ``samples`` (per image; the fewest of any
        image), ``error_rms`` (rms over the images of the mean's error), ``spread_rms`` (rms of the
        samples' standard deviation), ``error_over_spread`` and ``within_2sd``; the first two in
        the metric's unit.

    Raises
    ------
    ValueError
        If ``metric`` is not a signed error, or no model has several samples of each image.
    """
    if metric not in SIGNED_ERRORS:
        raise ValueError(
            f"sample_spread needs a signed error, one of {', '.join(map(repr, SIGNED_ERRORS))}; got "
            f"{metric!r} (an absolute error's spread over the samples is not the error's)"
        )
    records = evaluation.records
    rows = []
    for name in dict.fromkeys(str(m) for m in records["model"]):
        mine = records[(records["model"] == name) & (records["sample"] >= 0)]
        per_image = [np.asarray(mine[metric][mine["image"] == i], float) for i in sorted(set(mine["image"]))]
        counts = {v.size for v in per_image}
        if not counts or min(counts) < 2:
            continue  # one output per image (a deterministic model, a single sample), or a mean's row
        means = np.array([v.mean() for v in per_image])
        spreads = np.array([v.std(ddof=1) for v in per_image])
        error, spread = np.sqrt(np.mean(means**2)), np.sqrt(np.mean(spreads**2))
        rows.append(
            {
                "model": name,
                "images": len(per_image),
                "samples": min(counts),
                "error_rms": error,
                "spread_rms": spread,
                "error_over_spread": error / spread if spread > 0 else np.inf,
                "within_2sd": float(np.mean(np.abs(means) <= 2 * spreads)),
            }
        )
    if not rows:
        raise ValueError(
            "no model of this evaluation has several samples of each image: evaluate with samples > 1"
        )
    table = Table(rows=rows)
    unit = METRICS[metric][0]
    table["error_rms"].unit = table["spread_rms"].unit = unit
    for col in ("error_rms", "spread_rms", "error_over_spread", "within_2sd"):
        table[col].format = ".3g"
    table.meta["metric"] = metric
    return table


def _pooled_errors(predictions, truths):
    """Errors, standard deviations and true ``|B|`` (G) of the pixels finite in all three, pooled."""
    from .uncertainty import UncertaintyMap

    errs, stds, absb = [], [], []
    for pred, truth in zip(predictions, truths, strict=True):
        if not isinstance(pred, UncertaintyMap) or pred._std is None:
            raise ValueError("predictions must be UncertaintyMaps (superresolve with samples > 1)")
        if pred.data.shape != truth.data.shape:
            raise ValueError(f"prediction {pred.data.shape} and truth {truth.data.shape} grids differ")
        t = (np.asarray(truth.data, dtype=np.float64) * truth.unit).to_value(u.G)
        m = (np.asarray(pred.data, dtype=np.float64) * pred.unit).to_value(u.G)
        sd = pred.std.to_value(u.G).astype(np.float64)
        ok = np.isfinite(t) & np.isfinite(m) & np.isfinite(sd)
        errs.append((m - t)[ok])
        stds.append(sd[ok])
        absb.append(np.abs(t[ok]))
    return np.concatenate(errs), np.concatenate(stds), np.concatenate(absb)


def _calibration_row(name, e, sd, ence_bins):
    """One row of `uncertainty_calibration` from the errors ``e`` and standard deviations ``sd``."""
    from scipy.stats import spearmanr

    if not e.size:
        return {
            "bin": name,
            "n_pixels": 0,
            **dict.fromkeys(
                ("coverage_1sd", "coverage_2sd", "mean_z2", "std_over_rmse", "spearman", "ence"), np.nan
            ),
        }
    z = np.abs(e) / np.maximum(sd, np.finfo(float).tiny)
    return {
        "bin": name,
        "n_pixels": int(e.size),
        "coverage_1sd": float(np.mean(z <= 1)),
        "coverage_2sd": float(np.mean(z <= 2)),
        "mean_z2": float(np.mean(z**2)),
        "std_over_rmse": float(np.sqrt(np.mean(sd**2)) / max(np.sqrt(np.mean(e**2)), 1e-300)),
        "spearman": float(spearmanr(sd, np.abs(e)).statistic) if e.size > 2 else np.nan,
        "ence": _ence(sd, e, ence_bins),
    }


def _summarise(records, names):
    summary = Table()
    summary["model"] = names
    summary["n"] = [int(np.sum(records["model"] == name)) for name in names]
    for metric, (unit, _) in METRICS.items():
        values = [np.asarray(records[metric][records["model"] == name], dtype=float) for name in names]
        if all(np.isnan(v).all() for v in values):
            continue  # e.g. LPIPS without weights
        means, stds = [], []
        for v in values:
            finite = v[np.isfinite(v)]
            means.append(finite.mean() if finite.size else np.nan)
            stds.append(finite.std() if finite.size else np.nan)
        summary[f"{metric}_mean"] = means
        summary[f"{metric}_std"] = stds
        if unit:
            summary[f"{metric}_mean"].unit = summary[f"{metric}_std"].unit = unit
        summary[f"{metric}_mean"].format = summary[f"{metric}_std"].format = ".4g"
    return summary


def plot_boxplots(evaluation, metrics=("flux_error", "ar_area_error", "spectral_error"), *, fig=None):
    """
    Box plots of per-output metrics per model, like the paper's Figs. 8-9.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    names = list(evaluation.summary["model"])
    fig = fig or plt.figure(figsize=(4 * len(metrics), 4))
    records = evaluation.records
    for j, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), j + 1)
        data = [np.asarray(records[metric][records["model"] == n], dtype=float) for n in names]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot(data, tick_labels=names, showfliers=True)
        unit = METRICS[metric][0]
        ax.set_title(metric.replace("_", " ") + (f" [{unit}]" if unit else ""))
        # Long names ("ldm-res (mean of 8)") slanted and anchored at their tick, so they do not overlap.
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    fig.tight_layout()
    return fig


def plot_fourier(evaluation, *, fig=None, scale=2 * u.arcsec, models=None):
    """
    Fourier amplitude of the truth and of each model's output with the 2" circle (paper's Fig. 10).

    Amplitude outside the circle means features smaller than ``scale``.

    Parameters
    ----------
    evaluation : `Evaluation`
        Its examples (the first image) are shown.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into (default: a new one sized to the panels).
    scale : `~astropy.units.Quantity`, optional
        Feature size of the circle.
    models : sequence of str, optional
        The models shown, in order (default: all of the summary); the paper's Fig. 10 shows
        ``["ldm-res", "progressive", "enhance"]``.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    ex = evaluation.examples
    names = list(evaluation.summary["model"]) if models is None else list(models)
    unknown = [n for n in names if n not in ex]
    if unknown:
        raise ValueError(
            f"no output of {unknown} in this evaluation; it has {sorted(set(ex) - {'truth', 'lowres'})}"
        )
    panels = [("truth", ex["truth"])] + [(n, ex[n]) for n in names]
    fig = fig or plt.figure(figsize=(3.2 * len(panels), 3.6))
    truth_amp = spectra.fourier_amplitude(ex["truth"]).amplitude.value
    vmax = np.percentile(np.log10(truth_amp + 1e-12), 99.9)
    vmin = vmax - 4
    for j, (name, smap) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        amp = spectra.fourier_amplitude(smap).amplitude.value
        ax.imshow(np.log10(amp + 1e-12), origin="lower", cmap="magma", vmin=vmin, vmax=vmax)
        ny, nx = amp.shape
        # fftshift puts zero frequency at index N // 2; features smaller than `scale` lie outside.
        ax.add_patch(
            Circle((nx // 2, ny // 2), spectra.cutoff_radius(smap, scale), fill=False, color="red", lw=1)
        )
        ax.set_title(f"FT - {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_power_spectra(evaluation, *, fig=None):
    """
    Azimuthally averaged power spectra of the truth, the degraded input and each model's output.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    ex = evaluation.examples
    fig = fig or plt.figure(figsize=(6, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for name in ["truth", "lowres", *evaluation.summary["model"]]:
        k, power = spectra.radial_power_spectrum(ex[name])
        ax.loglog(k.to_value(1 / u.arcsec)[1:], power.value[1:], label=name, lw=2 if name == "truth" else 1)
    lowres_nyquist = 1 / (2 * ex["lowres"].scale.axis1.to_value(u.arcsec / u.pix))
    # Features smaller than the input's pixels (2" for MDI) lie beyond its Nyquist frequency.
    ax.axvline(
        lowres_nyquist,
        color="red",
        ls="--",
        lw=1,
        label=f'input Nyquist ({1 / (2 * lowres_nyquist):.1f}" features)',
    )
    ax.set_xlabel("spatial frequency k [1/arcsec]")
    ax.set_ylabel(f"power spectral density [{power.unit.to_string()}]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
