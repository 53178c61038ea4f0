"""
`superresolve`: a magnetogram Map in, a 4x finer magnetogram Map out, WCS exact.

Data flow: Map -> validate -> calibrate (MDI 1/1.4) -> normalise (/3000 G) -> overlapping tiles ->
model -> blended tiles -> denormalise -> Map with a derived header and provenance keys.
"""

import contextlib
import functools
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from tqdm.auto import tqdm

from .calibration import (
    HMI_NOISE_LEVELS,
    NORMALISATION_RANGE,
    calibration_factor,
    denormalise,
    hmi_noise_clv,
    hmi_observing_sequence,
    is_mdi,
    normalise,
    warn_if_not_720s,
)
from .consistency import project_block_means, repeat_blocks
from .memory import keep_freed_memory
from .models import load_model
from .options import Options, fill_doc
from .seeds import MAX_SEED, fresh_seed, tile_seed
from .tiling import SharedNoise, blend_window, plan_tiles
from .version import __version__

__all__ = ["superresolve", "MAX_SEED", "UncalibratedInputWarning", "LongRunWarning"]

UNKNOWN_INSTRUMENT = (
    "the map's header names no instrument (TELESCOP and INSTRUME are empty), so no MDI-to-HMI "
    "calibration was applied; if these are MDI data, set smap.meta['telescop'] = 'SOHO' and "
    "smap.meta['instrume'] = 'MDI' (or pass calibrate=1/1.4) and run again"
)
# What `calibration_factor` gives as the reference of a map that names no instrument.
UNKNOWN_REFERENCE = "none (instrument unknown)"


class UncalibratedInputWarning(UserWarning):
    """The input's instrument is unknown, so ``calibrate=True`` applied no calibration factor."""


class LongRunWarning(UserWarning):
    """The samples asked for will take long: the estimate, from the time of the first sample, is in the message."""


#: Estimated remaining seconds of a sampling run above which `superresolve` says how long it will take.
LONG_RUN_SECONDS = 600.0

#: Most memory for the samples that are blended at once (float32 maps on the output grid): the
#: samples of a group share every network call (see ``_sample_groups``).
SAMPLE_GROUP_BYTES = 2**30
#: Most threads that finish a group's samples at once (excess restored, projection, units). Each
#: holds a few float64 maps of the output grid (about 0.4 GB for a full disk).
MAX_FINISH_THREADS = 8
#: Rows of the output grid per task of the sample statistics: a full disk's 64 x 4096 float64 sums
#: (2 MiB) stay in a core's cache while the samples pass (two passes: 0.17 s for ten full-disk
#: samples on 2 cores, against 1.33 s for Welford's update by halves of the map).
STATISTICS_ROWS = 64


def worker_threads():
    """
    Threads for the work on the output grid (blending, finishing, statistics): torch's own count.

    That is ``OMP_NUM_THREADS`` where it is set (``MKL_NUM_THREADS`` where that is set too, in a torch
    built with MKL; `sunpy_superres.batch` gives each worker its share of the cores in both), else
    the cores torch uses; at most `MAX_FINISH_THREADS`.
    """
    import torch  # imported by then: the models need it

    return max(1, min(torch.get_num_threads(), MAX_FINISH_THREADS))


@fill_doc()
def superresolve(smap, *, options=None, **kwargs):
    """
    Super-resolve a line-of-sight magnetogram by the model's factor (4: 2"/pixel -> 0.5"/pixel).

    The method and its baselines follow Ramunno et al. (2025) [1]_.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G (or Mx/cm2) at about 2"/pixel, e.g. a SOHO/MDI
        ``fd_M_96m_lev182`` map or a cut-out of one. Off-limb pixels may be NaN. Not modified.
    options : `~sunpy_superres.options.Options`, optional
        All the options below at once (the defaults when not given); keyword arguments replace its
        fields.
    {options}

    Returns
    -------
    `~sunpy.map.GenericMap` or `~sunpy_superres.UncertaintyMap`
        The super-resolved map (the mean of the samples, with their per-pixel standard deviation,
        when ``samples > 1``), of the input's map class (an `~sunpy.map.sources.MDIMap` stays one),
        float32 in the input's unit at HMI levels, ``factor`` times more pixels per axis, with
        ``CDELTi / factor``, ``CRPIXi' = factor * (CRPIXi - 0.5) + 0.5``, the same observer, date,
        rotation and solar radius, NaN where the input was NaN, the provenance keys listed in
        `sunpy_superres.maps.PROVENANCE_KEYS` and a HISTORY line.

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        If the map is not a usable magnetogram (see `sunpy_superres.maps.validate_map`), the model
        is unknown, or the options are inconsistent (e.g. ``samples > 1`` for a deterministic model).

    Notes
    -----
    Field beyond +-3000 G is never truncated: for networks that only accept [-1, 1] the input is
    clipped and the clipped excess, replicated over each 4x4 block, is added back to the output, so
    each block keeps its input-pixel mean. The number of such pixels is recorded as ``SRNCLIP``.

    References
    ----------
    .. [1] Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent
       diffusion model approach", A&A 698, A140 (doi:10.1051/0004-6361/202453205).
    .. [2] Liu, Y. et al. 2012, Sol. Phys. 279, 295.

    Examples
    --------
    >>> import sunpy.map
    >>> from sunpy_superres import superresolve
    >>> from sunpy_superres.data import MDI_AR_CUTOUT
    >>> mdi = sunpy.map.Map(MDI_AR_CUTOUT)
    >>> hr = superresolve(mdi, model="bicubic", progress=False)
    >>> hr.data.shape
    (512, 512)
    >>> hr.scale.axis1  # doctest: +FLOAT_CMP
    <Quantity 0.49650204 arcsec / pix>
    """
    # sunpy.map (the maps and UncertaintyMap modules) is imported by the first call, not with the
    # package: `import sunpy_superres` and `load_model` stay light (issue 18).
    from .uncertainty import UncertaintyMap

    opts = Options.from_kwargs(options, **kwargs)
    run = _prepare(smap, opts)
    # The tiles' networks reuse the pages the last layer and tile freed: faulting in fresh ones took
    # a quarter of a full disk's time on a 2-core CPU (see sunpy_superres.memory).
    with keep_freed_memory():
        if opts.samples == 1:
            out, std, kept = _samples(run, opts, range(1))[0], None, None
        else:
            out, std, kept = _sample_statistics(run, opts)
    result = type(run.smap)(out, _output_meta(run, opts), plot_settings=dict(run.smap.plot_settings))
    if opts.samples == 1:
        return result
    return UncertaintyMap.from_map(result, std=std, samples=kept)


@dataclass(frozen=True)
class _Run:
    """A map ready for sampling: the configured model, its input in network units, and what to undo."""

    smap: object  # the input with its WCS completed
    model: object
    seed: int | None
    x: np.ndarray  # network input, clipped to [-1, 1] when the model needs it
    target: np.ndarray  # the input in network units, unclipped: what every output block must average to
    excess: np.ndarray | None  # what clipping removed, added back to the output
    n_clipped: int
    missing: np.ndarray  # input pixels without data
    cal_factor: float
    cal_reference: str
    consistency: str | None  # "backprojection", "block" or None
    antithetic: bool | str  # samples drawn in antithetic pairs: False, True (noise negated) or "polarity"
    symmetric: bool  # samples drawn under the tile-shape-keeping symmetries of the training augmentation
    tile: int
    overlap: int
    batch_size: int
    noise_source: str | None  # SRNOISRC: where the noise level came from (a noise-conditioned model)
    noise_clv: float | None  # SRNOICLV: the centre-to-limb factor of an HMI or MDI map's level
    tile_noise: list | None  # each tile's level (G) at its own place, for a placed map of several tiles


def _prepare(smap, opts):
    """Check the map and options, load and configure the model, and bring the data to network units."""
    from .maps import complete_wcs, map_data, validate_map

    validate_map(smap, check_scale=opts.check_scale)
    smap = complete_wcs(smap)  # a new map where the header left out zero CD terms; the input stays as it is
    model, noise_source, noise_clv, frame_level = _with_noise_level(configured_model(opts), smap)
    seed = opts.seed
    if seed is None and model.stochastic:
        # A fresh seed from the operating system's entropy, recorded as SRSEED: every run can be repeated.
        seed = fresh_seed()
    consistency = _consistency_method(opts.consistency, model)
    if opts.samples > 1 and not model.stochastic:
        raise ValueError(
            f"model {model.name!r} is deterministic, so every sample would be the same; "
            "use samples=1, or a diffusion model for an uncertainty estimate."
        )
    antithetic = _sampling_design(opts, model, "antithetic")
    symmetric = _sampling_design(opts, model, "symmetric")
    if opts.keep_samples and opts.samples > 1:
        _check_sample_memory(opts.samples, smap.data.shape, model.factor)
    tile, overlap = _tiling(model, opts)
    tile_noise = None
    if frame_level is not None:
        tile_noise, clipped = _tile_noise_levels(
            smap, model, frame_level, plan_tiles(smap.data.shape, tile, overlap)
        )
        if clipped and not noise_source.endswith(NEAREST_MADE):
            noise_source += NEAREST_MADE

    cal_factor, cal_reference = calibration_factor(smap, opts.calibrate)
    if cal_reference == UNKNOWN_REFERENCE:
        # An MDI map that lost its TELESCOP/INSTRUME keys would come out 1.4 times too strong.
        warnings.warn(UNKNOWN_INSTRUMENT, UncalibratedInputWarning, stacklevel=3)
    data = map_data(smap, u.G) * cal_factor  # a new float64 array: the input is never touched
    missing = ~np.isfinite(data)
    x = target = normalise(np.where(missing, 0.0, data))
    excess, n_clipped = None, 0
    if model.clip_input:
        x = np.clip(target, -1.0, 1.0)
        excess = target - x
        n_clipped = int(np.count_nonzero(excess))
    batch_size = opts.batch_size
    if isinstance(batch_size, str):  # "auto"
        tiles = plan_tiles(x.shape, tile, overlap)
        from .models.accel import auto_batch_size  # torch: imported with the first model, not the package

        shape = (tiles[0].size_y, tiles[0].size_x)
        if model.device.type == "cuda":
            # The batch holds (tile, sample) pairs: a tile's samples run together.
            batch_size = auto_batch_size(model, shape, len(tiles) * opts.samples)
        else:
            # On a CPU, one tile's samples of one symmetry per call: they share the tile's encoding
            # (and regression pass), and a diffusion model's sampler takes them one at a time, as it
            # runs fastest there (`~sunpy_superres.models.accel.CPU_BATCH_SIZE`).
            batch_size = auto_batch_size(model, shape, len(tiles)) * _largest_call(
                opts.samples, antithetic, symmetric
            )
    return _Run(
        smap, model, seed, x, target, excess, n_clipped, missing, cal_factor, cal_reference, consistency,
        antithetic, symmetric, tile, overlap, batch_size, noise_source, noise_clv, tile_noise,
    )  # fmt: skip


def configured_model(opts):
    """
    The model of ``opts`` loaded, with its adapter, sampler and runtime settings applied.

    Used by `superresolve` and by the batch's worker plugin, which loads it once per worker.
    """
    model = load_model(opts.model, device=opts.device)
    if opts.adapter is not None:
        from .training.lora import load_adapter  # peft: extra [train]; the core import stays light

        model = load_adapter(model, opts.adapter, device=opts.device)
    # Only the settings given: a model written for 0.1 takes ``scheduler=``, not ``sampler=``.
    model = model.configure_sampler(**{k: v for k, v in opts.sampler_settings().items() if v is not None})
    return model.configure_runtime(precision=opts.precision, compile=opts.compile)


#: Added to ``SRNOISRC`` where the level of the place is outside what the model makes.
NEAREST_MADE = " (nearest made)"


def _with_noise_level(model, smap):
    """
    ``(model, source, clv, frame)``: the model with the noise level it takes for ``smap``, where that
    level comes from (``SRNOISRC``; `None` for a model without noise conditioning), and for an HMI or
    MDI map that can be placed on the disk the centre-to-limb factor in it (``SRNOICLV``) and the
    level before that factor, in G, with which `_tile_noise_levels` places the map's tiles (else
    `None` for both).

    A level given (``noise_level=``, applied by `configured_model`, or ``configure_sampler``) is
    kept; otherwise the output gets HMI's noise where the map lies: an HMI map its observing
    sequence's level (`sunpy_superres.calibration.HMI_NOISE_LEVELS`), an MDI map the model's own
    (today's HMI), each times `~sunpy_superres.calibration.hmi_noise_clv`, or the nearest level the
    model makes (and each tile of a map of several, the same of its own place: `_tile_noise_levels`);
    any other map gets the model's own level.
    """
    if getattr(model, "noise_level", None) is None:
        return model, None, None, None
    if getattr(model, "noise_level_asked", False):
        return model, "asked", None, None
    if getattr(model, "noise_level_range", None) is None:
        return model, "model", None, None
    sequence = hmi_observing_sequence(smap)
    if sequence is not None:
        # The warning points at superresolve's caller (< _with_noise_level < _prepare < superresolve).
        warn_if_not_720s(smap, stacklevel=4)
        frame, source = HMI_NOISE_LEVELS[sequence].to_value(u.G), f"HMI {sequence}"
    elif is_mdi(smap):
        # The output is to look as HMI would have seen the Sun, whose noise rises towards the limb
        # as HMI's does (the same profile, tile by tile on a map of several tiles).
        frame, source = float(model.noise_level), "model"
    else:
        return model, "model", None, None
    clv = hmi_noise_clv(smap)
    level, clipped = _placed_level(model, frame, clv)
    source += NEAREST_MADE if clipped else ""
    return model.configure_sampler(noise_level=level), source, clv, None if clv is None else frame


def _placed_level(model, frame, clv):
    """``(level, clipped)``: ``frame`` G times ``clv`` to 0.01 G, or the nearest level ``model`` makes."""
    # To 0.01 G, as the noise levels are known to no better (HMI_NOISE_LEVELS: 4.84 G written 4.8 G).
    level = round(frame * (1 if clv is None else clv), 2) * u.G
    low, high = model.noise_level_range
    made = np.clip(level, low, high)
    return made, bool(made != level)


def _tile_noise_levels(smap, model, frame, tiles):
    """
    ``(levels, clipped)``: for a map of several ``tiles``, each tile's level in G, HMI's noise where
    that tile lies (`_placed_level` of ``frame`` and the tile's own
    `~sunpy_superres.calibration.hmi_noise_clv`; the map's level for a tile off the disk), and
    whether any was outside what ``model`` makes; `None` for one tile, which takes the map's level.

    A tile, not a pixel: the denoisers were trained with one level per crop, and their group
    normalisations mix a level that varies inside a tile over the whole tile.
    """
    if len(tiles) < 2:
        return None, False
    levels, clipped = [], False
    for clv in hmi_noise_clv(smap, [t.slices for t in tiles]):
        if clv is None:
            levels.append(float(model.noise_level))
            continue
        level, out = _placed_level(model, frame, clv)
        levels.append(float(level.to_value(u.G)))
        clipped |= out
    return levels, clipped


def _consistency_method(consistency, model):
    """``"backprojection"``, ``"block"`` or `None`, from the ``consistency`` option."""
    if isinstance(consistency, str) and consistency == "auto":
        consistency = model.stochastic
    if isinstance(consistency, bool | np.bool_):
        return "backprojection" if consistency else None
    return consistency


def _sampling_design(opts, model, name):
    """Option ``name`` (``"antithetic"`` or ``"symmetric"``) of the sampling design: asked, or
    (``"auto"``) as the model's uncertainty calibration was fitted. ``False``, ``True``, or for
    ``antithetic`` also ``"polarity"``."""
    if opts.samples < 2 or not model.stochastic:
        return False
    value = getattr(opts, name)
    if isinstance(value, str) and value == "auto":
        calibration = getattr(model, "uncertainty_calibration", None)
        value = False if calibration is None else getattr(calibration, name)
    return value if isinstance(value, str) else bool(value)


def _tiling(model, opts):
    """Tile side and overlap in input pixels, checked against the model's context halo."""
    tile = model.tile_size if opts.tile_size is None else int(opts.tile_size)
    overlap = 2 * model.halo + 8 if opts.overlap is None else int(opts.overlap)
    if tile < 2 * model.halo + 2 or overlap < 2 * model.halo + 1 or overlap >= tile:
        raise ValueError(
            f"tile_size={tile} and overlap={overlap} do not fit model {model.name!r}, "
            f"which needs {model.halo} pixels of context: use overlap > "
            f"{2 * model.halo} and tile_size > overlap."
        )
    return tile, overlap


def _unit_scale(smap):
    """The output unit (the input's, or G) and the factor from G to it."""
    # A BUNIT that sunpy cannot read (e.g. Mx/cm2) is written as G, equal for a line-of-sight flux
    # density, so that the result reads back as a magnetic field.
    out_unit = smap.unit if smap.unit is not None else u.G
    return out_unit, (1 * u.G).to_value(out_unit)


def _sample_groups(run, opts):
    """
    The sample numbers in the groups that run together: one group when the batch and memory allow.

    A group's samples of one symmetry (`sample_plan`) share a network call, side by side in the
    batch, encoded once (and with one regression pass), and its maps are blended at once. So a
    group holds as many samples as `SAMPLE_GROUP_BYTES` of maps allow, while each symmetry's
    samples fit in the batch. On a CPU, whose batch holds one symmetry's samples of one tile, the
    calibrated designs' ten samples are one group: 8 symmetries, 8 passes of each tile through
    the regression (in groups of a pair, as until 2026-12-05: 10).
    """
    per_map = run.x.size * run.model.factor**2 * np.dtype(np.float32).itemsize
    most = max(1, min(opts.samples, SAMPLE_GROUP_BYTES // per_map))
    size = 1
    while size < most and _largest_call(size + 1, run.antithetic, run.symmetric) <= run.batch_size:
        size += 1
    return [range(k, min(k + size, opts.samples)) for k in range(0, opts.samples, size)]


def _largest_call(samples, antithetic, symmetric):
    """The most samples of ``range(samples)`` that one symmetry has (`_symmetry_groups`)."""
    return max(map(len, _symmetry_groups(range(samples), antithetic, symmetric).values()))


def _samples(run, opts, ks):
    """Samples ``ks``: tiles run and blended, clipped excess restored, projected, in the output unit."""
    f = run.model.factor
    _, unit_scale = _unit_scale(run.smap)
    missing = repeat_blocks(run.missing, f)
    excess = repeat_blocks(run.excess, f) if run.n_clipped else None

    def finish(out):
        if excess is not None:
            out += excess
        if run.consistency:
            # Flux-conserving projection (not in the paper): every block's mean becomes the input pixel.
            out = project_block_means(out, run.target, f, method=run.consistency)
        out = denormalise(out)
        out[missing] = np.nan
        return out * np.float32(unit_scale) if unit_scale != 1 else out

    return _run_tiled(
        run.model,
        run.x,
        tile=run.tile,
        overlap=run.overlap,
        seed=run.seed,
        samples=ks,
        antithetic=run.antithetic,
        symmetric=run.symmetric,
        batch_size=run.batch_size,
        progress=opts.progress,
        finish=finish,
        noise_levels=run.tile_noise,
        desc=_progress_label(run.model.name, ks, opts.samples),
    )


def _progress_label(name, ks, total):
    """The progress bar's label: the model, and which samples when they run in several groups."""
    if len(ks) == total:
        return name
    if len(ks) == 1:
        return f"{name}, sample {ks[0] + 1} of {total}"
    return f"{name}, samples {ks[0] + 1}-{ks[-1] + 1} of {total}"


def _sample_statistics(run, opts):
    """Mean, standard deviation (calibrated when asked) and, if kept, every sample of ``opts.samples``."""
    # A running mean and sum of squared deviations, updated group by group: memory of two maps (and
    # of a group), whatever the number of samples.
    kept = [] if opts.keep_samples else None
    mean = m2 = None
    done = 0
    started = time.perf_counter()
    with _thread_map(worker_threads(), "superresolve-statistics") as thread_map:
        for group in _sample_groups(run, opts):
            samples = _samples(run, opts, group)
            if mean is None:
                mean = np.zeros(samples[0].shape, dtype=np.float64)
                m2 = np.zeros_like(mean)
            # Row blocks of a fixed height (the same sums on any number of threads), each small
            # enough for its float64 sums to stay in a core's cache while the group's samples pass.
            blocks = [slice(r, r + STATISTICS_ROWS) for r in range(0, len(mean), STATISTICS_ROWS)]
            list(thread_map(functools.partial(_merge_statistics, mean, m2, done, samples), blocks))
            done += len(samples)
            if kept is not None:
                kept.extend(samples)
            if group.start == 0:
                _warn_if_long((time.perf_counter() - started) / len(group), opts.samples, len(group))
    out = mean.astype(np.float32)
    std = np.sqrt(m2 / (opts.samples - 1)).astype(np.float32)
    calibration = _uncertainty_calibration(run, opts, warn=True)
    if calibration is not None:
        out_unit, _ = _unit_scale(run.smap)
        level = getattr(run.model, "noise_level", None)  # the level asked of a noise-conditioned model
        if run.tile_noise is not None:
            level = _noise_field(run)
        std = calibration.apply(out * out_unit, std * out_unit, opts.samples, level).to_value(out_unit)
        std = std.astype(np.float32)
    return out, std, None if kept is None else np.stack(kept)


def _noise_field(run):
    """The noise level (G) each output pixel was sampled at: the tiles' levels, blended as their samples."""
    tiles = plan_tiles(run.x.shape, run.tile, run.overlap)
    window = dict(factor=1, halo=run.model.halo, overlap=run.overlap)
    total, weight = np.zeros(run.x.shape), np.zeros(run.x.shape)
    for t, level in zip(tiles, run.tile_noise, strict=True):
        w = blend_window(t, run.x.shape, **window)
        total[t.slices] += w * level
        weight[t.slices] += w
    return repeat_blocks((total / weight).astype(np.float32), run.model.factor)


@contextlib.contextmanager
def _thread_map(workers, name):
    """``map`` on a pool of ``workers`` threads named ``name``, or the built-in ``map`` below 2."""
    if workers < 2:
        yield map
        return
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        yield pool.map


def _merge_statistics(mean, m2, n, samples, rows):
    """
    The running ``mean`` and ``m2`` (sum of squared deviations) of ``n`` samples, updated in place
    on ``rows`` by a group of ``samples``.

    The group's own mean and ``m2`` by two passes over it, then merged with the running ones by
    Chan, Golub & LeVeque's pairwise update (1979; `numpy` has no merge of partial moments): as
    exact as Welford's sample-by-sample update, in a third of its memory traffic.
    """
    g = len(samples)
    group_mean = np.zeros(mean[rows].shape, dtype=np.float64)
    for s in samples:
        group_mean += s[rows]
    group_mean /= g
    group_m2 = np.zeros_like(group_mean)
    d = np.empty_like(group_mean)
    for s in samples:
        np.subtract(s[rows], group_mean, out=d)
        d *= d
        group_m2 += d
    if n == 0:
        mean[rows] = group_mean
        m2[rows] = group_m2
        return
    delta = group_mean - mean[rows]
    total = n + g
    mean[rows] += delta * (g / total)
    delta *= delta
    m2[rows] += group_m2 + delta * (n * g / total)


def _uncertainty_calibration(run, opts, *, warn=False):
    """The model's calibration of the standard deviation, when it has one, it is asked for and it fits the samples."""
    if not opts.calibrate_uncertainty:
        return None
    calibration = getattr(run.model, "uncertainty_calibration", None)
    fitted = None if calibration is None else (calibration.antithetic, calibration.symmetric)
    if fitted is not None and fitted != (run.antithetic, run.symmetric):
        if warn:
            warnings.warn(
                f"the uncertainty calibration of {run.model.name} ({run.model.revision}) was fitted on "
                f"{_design_name(*fitted)}, and these are {_design_name(run.antithetic, run.symmetric)}, "
                "so the standard deviation is the raw spread of the samples (SRUNCAL = 'none'); leave "
                "antithetic='auto' and symmetric='auto' for a calibrated one",
                UserWarning,
                stacklevel=4,  # superresolve's caller: _uncertainty_calibration < _sample_statistics < superresolve
            )
        return None
    return calibration


def _design_name(antithetic, symmetric):
    """How samples were drawn, in words."""
    if antithetic == POLARITY_PAIRS:
        name = "antithetic pairs by polarity reversal"
    else:
        name = "antithetic pairs" if antithetic else "independent samples"
    return name + (" under the input's flips" if symmetric else "")


def _output_meta(run, opts):
    """The output header: the input's, on the finer grid, with the provenance keys and HISTORY."""
    from .maps import add_history, finer_meta

    model, smap, f = run.model, run.smap, run.model.factor
    meta = finer_meta(smap.meta, f, smap.data.shape)
    provenance = {
        "srfactor": f,
        "srmodel": model.name,
        "srmodrev": model.revision,
        "srseed": -1 if run.seed is None else int(run.seed),
        "srsample": int(opts.samples),
        "srvers": __version__,
        "srcalfac": run.cal_factor,
        "srcalref": run.cal_reference,
        "srnorm": NORMALISATION_RANGE.to_value(u.G),
        "srnclip": run.n_clipped,
        "srconsis": run.consistency is not None,
        "srconmet": run.consistency or "none",
        "srprec": model.precision,
        **model.provenance(),
    }
    if run.noise_source is not None:
        provenance["srnoisrc"] = run.noise_source
    if run.noise_clv is not None:
        provenance["srnoiclv"] = round(run.noise_clv, 4)
    if run.tile_noise is not None:
        provenance["srnoilo"], provenance["srnoihi"] = min(run.tile_noise), max(run.tile_noise)
    if opts.samples > 1:
        provenance["sranti"] = run.antithetic
        provenance["srsymm"] = run.symmetric
        calibration = _uncertainty_calibration(run, opts)
        provenance["sruncal"] = (
            "none"
            if calibration is None
            else calibration.describe(opts.samples, getattr(model, "noise_level", None))
        )
    meta.update(provenance)
    if run.cal_reference == UNKNOWN_REFERENCE:
        add_history(meta, "sunpy-superres: WARNING " + UNKNOWN_INSTRUMENT)
    if smap.unit is None:
        add_history(meta, f"sunpy-superres: BUNIT {smap.meta.get('bunit')!r} (not a FITS unit) written as G")
        meta["bunit"] = "G"
    add_history(
        meta,
        f"sunpy-superres {__version__}: {f}x super-resolution with model '{model.name}' "
        f"(revision {model.revision}), seed {provenance['srseed']}, samples {opts.samples}, "
        f"calibration x{run.cal_factor:.6g} ({run.cal_reference})",
    )
    return meta


#: The symmetries of the diffusion models' training augmentation that keep a tile's shape, as
#: (flip rows, flip columns, reverse polarity): the four flips (none, columns, rows, both: a
#: 180-degree rotation), then the same with the polarity reversed. Each is its own inverse.
TILE_SYMMETRIES = tuple((bool(j & 2), bool(j & 1), bool(j & 4)) for j in range(8))


#: The ``antithetic`` design whose pairs are formed by reversing the input's polarity.
POLARITY_PAIRS = "polarity"
#: The bit of a `TILE_SYMMETRIES` index that reverses the polarity.
_POLARITY_BIT = 4


def sample_plan(k, antithetic=False, symmetric=False):
    """
    How sample ``k`` of a sampling design is drawn: ``(seed number, noise sign, symmetry)``.

    The seed number is the ``k`` of `tile_seed`; the sign (``1`` or ``-1``) multiplies the initial
    noise that seed draws; the symmetry, an index into `TILE_SYMMETRIES`, is applied to the input
    and undone on the output.

    - ``antithetic=False``: each sample its own seed, sign 1.
    - ``antithetic=True``: sample ``2k + 1`` has the seed of sample ``2k`` and sign -1.
    - ``antithetic="polarity"``: sample ``2k + 1`` has the seed of sample ``2k`` and sign 1, and
      the input's polarity reversed (then reversed back). A model whose samples do not depend on
      the field's sign, ``S(-x, z) = -S(x, -z)``, gives it the negated noise's sample: the same pair.
    - ``symmetric``: group ``j`` (pair ``j`` with ``antithetic``, else sample ``j``) is drawn under
      symmetry ``j % 8``; with ``"polarity"`` the pair's second sample has its polarity bit flipped.
    """
    pair = k // 2 if antithetic else k
    number = k - k % 2 if antithetic else k
    sign = -1 if antithetic is True and k % 2 else 1
    symmetry = pair % len(TILE_SYMMETRIES) if symmetric else 0
    if antithetic == POLARITY_PAIRS and k % 2:
        symmetry ^= _POLARITY_BIT
    return number, sign, symmetry


def tile_symmetry(a, j):
    """
    ``a`` under symmetry ``j`` of `TILE_SYMMETRIES` (on its last two axes), or ``a`` itself for ``j = 0``.

    Every symmetry is an involution, so the same call undoes it.
    """
    rows, cols, polarity = TILE_SYMMETRIES[j]
    if not (rows or cols or polarity):
        return a
    if rows:
        a = a[..., ::-1, :]
    if cols:
        a = a[..., ::-1]
    return np.ascontiguousarray(-a if polarity else a)


def _run_tiled(
    sr_model,
    x,
    *,
    tile,
    overlap,
    seed,
    samples,
    batch_size,
    progress,
    finish,
    antithetic=False,
    symmetric=False,
    noise_levels=None,
    desc=None,
):
    """
    Run ``sr_model`` over overlapping tiles of ``x`` and blend them on the finer grid, for each sample.

    Returns the list of ``len(samples)`` maps ``finish`` makes of the blended float32 maps
    ``(f * ny, f * nx)`` (a function of one blended map that returns the finished one). A
    network call takes ``batch_size`` (tile, sample) pairs: every sample (of one symmetry) of as many
    tiles as fit. Each pair's seed follows from the sample number and the tile's position only, so a
    sample does not depend on how the pairs were batched. Sample ``k`` is drawn with the seed, noise
    sign and `tile_symmetry` of `sample_plan` (the symmetry undone on its output), each tile at its
    ``noise_levels`` (G, per tile of `plan_tiles`; `None`: a noise-conditioned model's own). A
    model that draws an initial noise gets one noise where tiles overlap (`_shared_noise`).

    On an accelerator the work on the output grid is a pipeline beside the network: each call's
    samples are blended (and, after the last chunk of tiles, finished) on threads while the next
    call runs, since NumPy, OpenCV and torch release the GIL; that work would otherwise add to the
    network's time. On the CPU, where it would take the network's cores, a chunk's samples are
    blended on threads after its calls. A sample's blends keep their order, so the sums are those of
    one thread. The progress bar, over the tiles, is labelled ``desc`` (the model's name by default).
    """
    f = sr_model.factor
    ny, nx = x.shape
    tiles = plan_tiles(x.shape, tile, overlap)
    # Blended in float32, each tile's window divided by the windows' sum first: the maps of many
    # samples, in half the memory and time of float64 (a full disk's 10 samples, 1.3 GB less).
    window = dict(factor=f, halo=sr_model.halo, overlap=overlap)
    weight = _window_sum(tiles, x.shape, f, window)
    out = np.zeros((len(samples), f * ny, f * nx), dtype=np.float32)
    finished = [None] * len(samples)
    groups = _symmetry_groups(samples, antithetic, symmetric)
    plan = [sample_plan(k, antithetic, symmetric) for k in samples]
    # A network call runs one symmetry's samples of every tile of a chunk.
    per_call = max(1, batch_size // max(len(idx) for idx in groups.values()))
    last = {}  # sample position -> the future of its latest blend (and finishing)
    beside = _blends_beside_network(sr_model)
    shared = _shared_noise(sr_model, tiles, seed)

    def blend(y, j, pos, i, where, windows, done):
        _blend_sample(out[i], tile_symmetry(y[:, pos], j), where, windows)
        if done:
            finished[i] = finish(out[i])

    with (
        tqdm(
            total=len(tiles), desc=desc or sr_model.name, unit="tile", disable=not progress, leave=False
        ) as bar,
        ThreadPoolExecutor(min(len(samples), worker_threads()), thread_name_prefix="superresolve") as pool,
    ):

        def submit(tasks):
            for task in tasks:
                i = task[3]
                if i in last:
                    last[i].result()  # the previous chunk's blend of this sample first
                last[i] = pool.submit(blend, *task)

        for start in range(0, len(tiles), per_call):
            chunk = tiles[start : start + per_call]
            done = start + per_call >= len(tiles)
            batch = np.stack([x[t.slices] for t in chunk])
            levels = None if noise_levels is None else noise_levels[start : start + per_call]
            where = [t.scaled_slices(f) for t in chunk]
            windows = [
                (blend_window(t, x.shape, **window) / weight[w]).astype(np.float32)
                for t, w in zip(chunk, where, strict=True)
            ]
            tasks = []  # submitted after each call beside the network, else after the chunk's calls
            for j, idx in groups.items():
                y = _predict_group(
                    sr_model, batch, chunk, start, [plan[i] for i in idx], j, seed, levels, shared
                )
                tasks += [(y, j, pos, i, where, windows, done) for pos, i in enumerate(idx)]
                if beside:
                    submit(tasks)
                    tasks = []
            submit(tasks)
            if shared is not None:
                shared.forget_before(start + per_call)
            if not beside:
                _results(last.values())
            bar.update(len(chunk))
        _results(last.values())
    return finished


def _window_sum(tiles, shape, f, window):
    """The sum of the tiles' blend windows on the output grid (float64), what each window is divided by."""
    weight = np.zeros((f * shape[0], f * shape[1]), dtype=np.float64)
    for t in tiles:
        weight[t.scaled_slices(f)] += blend_window(t, shape, **window)
    return weight


def _predict_group(sr_model, batch, chunk, first, plan, j, seed, levels, shared):
    """
    One network call: the samples of ``plan`` (`sample_plan`'s, all of `tile_symmetry` ``j``) of
    the tiles ``chunk`` (from tile ``first`` on) of ``batch``: ``(T, S, fH, fW)``.
    """
    seeds = [[tile_seed(seed, number, t) for number, _, _ in plan] for t in chunk]
    signs = [[sign for _, sign, _ in plan] for _ in chunk]  # -1: antithetic=True's negated noise
    noise = None
    if shared is not None:  # one noise where tiles overlap
        noise = shared.batch(
            range(first, first + len(chunk)), [n for n, _, _ in plan], TILE_SYMMETRIES[j][:2]
        )
    return sr_model.predict_samples(
        tile_symmetry(batch, j), seeds, signs=signs, noise_levels=levels, noise=noise
    )


def _shared_noise(sr_model, tiles, seed):
    """
    The `~sunpy_superres.tiling.SharedNoise` of ``tiles`` for a model that draws an initial noise
    (`None` for another, for one tile, without a seed, and for noise whose points are not on the input grid).
    """
    if len(tiles) < 2 or seed is None or getattr(sr_model, "noise_grid", None) is None:
        return None

    def draw(tile, number):
        return sr_model.draw_noise(tile_seed(seed, number, tile), (tile.size_y, tile.size_x))

    return SharedNoise(tiles, sr_model.noise_grid, draw, threads=worker_threads())


def _results(futures):
    """Wait for ``futures``, raising the first error among them."""
    for future in futures:
        future.result()


def _blends_beside_network(sr_model):
    """
    Whether the blends run beside ``sr_model``'s next call: on an accelerator, not on the CPU.

    Measured on the 2-core CPU (512x512 in, 9 tiles one at a time, 3 samples), blending beside the
    network's threads made a map 5-9 % slower than blending after its calls.
    """
    device = getattr(sr_model, "device", None)
    return device is not None and device.type != "cpu"


def _blend_sample(out, pred, where, windows):
    """Add each tile's prediction ``pred[n]``, weighted by its window, to the map ``out`` at ``where``."""
    weighted = {}  # one buffer per tile shape: the predictions are the model's, not changed here
    for w, window, p in zip(where, windows, pred, strict=True):
        if window.shape not in weighted:
            weighted[window.shape] = np.empty(window.shape, dtype=np.float32)
        out[w] += np.multiply(p, window, out=weighted[window.shape])


def _symmetry_groups(samples, antithetic, symmetric):
    """``{symmetry: positions in samples}``: the samples drawn under each `tile_symmetry` (see `sample_plan`)."""
    groups = {}
    for i, k in enumerate(samples):
        groups.setdefault(sample_plan(k, antithetic, symmetric)[2], []).append(i)
    return groups


def _warn_if_long(seconds_each, samples, done):
    """Warn with an estimate when ``samples`` samples, ``done`` of them in ``seconds_each`` each, will take long."""
    remaining = seconds_each * (samples - done)
    if remaining > LONG_RUN_SECONDS:
        hours = remaining / 3600.0
        when = f"{hours:.1f} h" if hours >= 1 else f"{remaining / 60:.0f} min"
        first = "the first" if done == 1 else f"the first {done}"
        warnings.warn(
            f"{samples} samples at {seconds_each:.2g} s each ({first}) will take about {when} more; "
            "8 to 16 samples give a calibrated standard deviation. Interrupt (Ctrl-C) and ask for "
            "fewer if that is not what you meant",
            LongRunWarning,
            stacklevel=4,  # superresolve's caller: _warn_if_long < _sample_statistics < superresolve
        )


def _check_sample_memory(samples, shape, factor):
    """Refuse ``keep_samples`` when the samples cannot fit in this machine's memory."""
    need = samples * shape[0] * shape[1] * factor**2 * np.dtype(np.float32).itemsize
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare with
        return
    if need > total:
        raise ValueError(
            f"keep_samples=True with samples={samples} needs {need / 2**30:.1f} GiB for the samples, "
            f"more than this machine's {total / 2**30:.1f} GiB of memory; ask for fewer samples, or "
            "keep_samples=False (the mean and standard deviation need memory of two maps only)"
        )
