"""
`superresolve`: a magnetogram Map in, a 4x finer magnetogram Map out, WCS exact.

Data flow: Map -> validate -> calibrate (MDI 1/1.4) -> normalise (/3000 G) -> overlapping tiles ->
model -> blended tiles -> denormalise -> Map with a derived header and provenance keys.
"""

import numbers
import os
import time
import warnings

import astropy.units as u
import numpy as np
from tqdm.auto import tqdm

from . import __version__
from .calibration import NORMALISATION_RANGE, calibration_factor, denormalise, normalise
from .consistency import project_block_means
from .maps import add_history, complete_wcs, finer_meta, map_unit, validate_map
from .models import load_model
from .models.accel import auto_batch_size
from .seeds import MAX_SEED, check_seed, fresh_seed, tile_seed
from .tiling import blend_window, plan_tiles
from .uncertainty import UncertaintyMap

__all__ = ["superresolve", "MAX_SEED", "UncalibratedInputWarning", "LongRunWarning"]

UNKNOWN_INSTRUMENT = (
    "the map's header names no instrument (TELESCOP and INSTRUME are empty), so no MDI-to-HMI "
    "calibration was applied; if these are MDI data, set smap.meta['telescop'] = 'SOHO' and "
    "smap.meta['instrume'] = 'MDI' (or pass calibrate=1/1.4) and run again"
)


class UncalibratedInputWarning(UserWarning):
    """The input's instrument is unknown, so ``calibrate=True`` applied no calibration factor."""


class LongRunWarning(UserWarning):
    """The samples asked for will take long: the estimate, from the time of the first sample, is in the message."""


#: Estimated remaining seconds of a sampling run above which `superresolve` says how long it will take.
LONG_RUN_SECONDS = 600.0


def superresolve(
    smap,
    *,
    model="default",
    adapter=None,
    samples=1,
    seed=None,
    steps=None,
    scheduler=None,
    start_timestep=None,
    spacing=None,
    noise_level=None,
    device="auto",
    precision=None,
    compile=None,
    calibrate=True,
    consistency="auto",
    check_scale=True,
    tile_size=None,
    overlap=None,
    batch_size="auto",
    keep_samples=False,
    calibrate_uncertainty=True,
    progress=True,
):
    """
    Super-resolve a line-of-sight magnetogram by the model's factor (4: 2"/pixel -> 0.5"/pixel).

    The method and its baselines follow Ramunno et al. (2025) [1]_.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Line-of-sight magnetogram in G (or Mx/cm2) at about 2"/pixel, e.g. a SOHO/MDI
        ``fd_M_96m_lev182`` map or a cut-out of one. Off-limb pixels may be NaN. Not modified.
    model : str, path-like or `~sunpy_superres.models.SuperResolutionModel`, optional
        Registry name (see `sunpy_superres.models.available_models`), a model directory, a pinned
        Hub reference ``"hf://owner/repo@<40-hex commit>"``, or a loaded model. ``"default"`` is the
        embedded default model.
    adapter : path-like, optional
        A LoRA adapter directory (from ``sunpy-superres-train finetune``) applied to a diffusion
        ``model`` and merged before sampling; needs the ``[train]`` extra (peft).
    samples : int, optional
        Number of stochastic samples. With more than one the result is an
        `~sunpy_superres.UncertaintyMap` of their mean and standard deviation. Deterministic models
        take only 1.
    seed : int, optional
        Seed of the random numbers of stochastic models (0 to 2**63 - 1); each tile and sample gets
        its own seed derived from it, so a result does not depend on tiling or batch size. When not
        given, a stochastic model draws one from the operating system's entropy; either way the seed
        used is recorded as ``SRSEED`` (-1 for deterministic models), so every result can be repeated.
    steps : int, optional
        Sampler steps of a diffusion model (its default when not given).
    scheduler : str, optional
        Sampler of a diffusion model, e.g. ``"ddpm"``, ``"ddim"``, ``"dpm-solver++"``.
    start_timestep : int, optional
        Timestep (0 to 999) at which a diffusion model's reverse process starts; by default the
        model's own (999, the paper's whole chain, for the embedded ``ldm-res`` and for models that
        set none). Recorded as ``SRTSTART``.
    spacing : {"linear", "log-snr"}, optional
        How a DPM-Solver sampler spaces its steps: ``"linear"`` in timestep, or ``"log-snr"``,
        uniformly in log signal-to-noise ratio after the first
        (`sunpy_superres.models.diffusion.log_snr_timesteps`), which spends the steps where the
        small scales are decided; the model's own by default. Recorded as ``SRSPACE``.
    noise_level : `~astropy.units.Quantity`, optional
        For a model conditioned on the noise level: the quiet-Sun noise (G) of the output's
        small-scale texture, as `sunpy_superres.metrics.physics.quiet_sun_noise` measures it on an
        HMI map (HMI's changed over the mission; match the HMI data you compare with). The model's
        own by default; refused for other models. Recorded as ``SRNOISE``.
    device : str, optional
        ``"auto"`` (a CUDA GPU when present, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {None, "auto", "fp32", "bf16", "fp16"}, optional
        Arithmetic of a diffusion model's networks (`torch.autocast`); the sampler update, the
        blending and the consistency projection stay in float32 or float64. ``"auto"`` is bfloat16 on
        a CUDA GPU that has it natively (compute capability 8.0+) and float32 on the CPU. `None`
        (default) keeps the model's own setting, which is ``"auto"`` for a model loaded by name or
        directory. The baselines run in float32 only. Recorded as ``SRPREC``.
    compile : bool or None, optional
        Compile a diffusion model's denoiser with ``torch.compile``: worth it on a GPU for full
        disks or many samples (the first call compiles, which takes about a minute), rarely on the
        CPU. `None` (default) keeps the model's own setting (eager unless ``model.compile()`` was
        called). Falls back to eager execution, with a warning, where ``torch.compile`` does not work.
    calibrate : bool or float, optional
        ``True`` (default) scales MDI maps by 1/1.4 to HMI levels (Liu et al. 2012 [2]_); ``False`` does
        not; a number is used as the factor. Recorded as ``SRCALFAC`` in the output header.
    consistency : bool, "auto", "backprojection" or "block", optional
        After sampling, correct the output so that the mean of every ``factor x factor`` block equals
        the (calibrated) input pixel: the field, and so the net flux, at the input's scale is kept by
        construction (not in the paper). ``True`` or ``"backprojection"`` spreads the correction
        smoothly (iterative back-projection, `sunpy_superres.consistency.project_block_means`);
        ``"block"`` adds a constant per block, which leaves steps at block edges. ``"auto"``
        (default) back-projects for stochastic (diffusion) models and leaves the deterministic
        baselines as the paper compares them. Recorded as ``SRCONSIS`` and ``SRCONMET``.
    check_scale : bool, optional
        Refuse pixel scales outside 1-4"/pixel (default `True`). The models are trained at 2".
    tile_size : int, optional
        Tile side in input pixels; the model's default when not given.
    overlap : int, optional
        Overlap of neighbouring tiles in input pixels; by default twice the model's context halo
        plus 8 pixels of blending ramp.
    batch_size : int or "auto", optional
        Tiles per model call. ``"auto"`` (default): on a GPU, as many as fit in 70% of the free
        memory (one tile's peak memory is measured first, see
        `sunpy_superres.models.accel.auto_batch_size`), at most 64; on the CPU, 4. The result does
        not depend on it beyond floating-point rounding.
    keep_samples : bool, optional
        Keep every sample in the `~sunpy_superres.UncertaintyMap` (memory: ``samples`` output maps).
    calibrate_uncertainty : bool, optional
        With ``samples > 1``, scale the standard deviation of the samples by the model's calibration
        (`sunpy_superres.conformal`: split-conformal factors per ``|B|`` bin, fitted on calibration
        crops and checked on held-out data, so that ``mean +- 2 std`` covers about 95 % of true pixels), when
        the model has one (default `True`). `False` returns the raw spread of the samples. Recorded
        as ``SRUNCAL``.
    progress : bool, optional
        Show a progress bar of tiles done.

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
    validate_map(smap, check_scale=check_scale)
    smap = complete_wcs(smap)  # a new map where the header left out zero CD terms; the input stays as it is
    if not isinstance(samples, numbers.Integral) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    check_seed(seed)
    auto_batch = isinstance(batch_size, str) and batch_size == "auto"
    if not auto_batch and (
        not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    sr_model = load_model(model, device=device)
    if adapter is not None:
        from .training.lora import load_adapter  # peft: extra [train]; the core import stays light

        sr_model = load_adapter(sr_model, adapter, device=device)
    sr_model = sr_model.configure_sampler(
        steps=steps,
        scheduler=scheduler,
        start_timestep=start_timestep,
        spacing=spacing,
        noise_level=noise_level,
    )
    if seed is None and sr_model.stochastic:
        # A fresh seed from the operating system's entropy, recorded as SRSEED: every run can be repeated.
        seed = fresh_seed()
    sr_model = sr_model.configure_runtime(precision=precision, compile=compile)
    if isinstance(consistency, str) and consistency == "auto":
        consistency = sr_model.stochastic
    if isinstance(consistency, bool | np.bool_):
        consistency_method = "backprojection" if consistency else None
    elif isinstance(consistency, str) and consistency in ("backprojection", "block"):
        consistency_method = consistency
    else:
        raise ValueError(
            f"consistency must be True, False, 'auto', 'backprojection' or 'block', got {consistency!r}"
        )
    if samples > 1 and not sr_model.stochastic:
        raise ValueError(
            f"model {sr_model.name!r} is deterministic, so every sample would be the same; "
            "use samples=1, or a diffusion model for an uncertainty estimate."
        )
    uncertainty_calibration = getattr(sr_model, "uncertainty_calibration", None)
    f = sr_model.factor
    if keep_samples and samples > 1:
        _check_sample_memory(samples, smap.data.shape, f)
    tile = sr_model.tile_size if tile_size is None else int(tile_size)
    overlap = 2 * sr_model.halo + 8 if overlap is None else int(overlap)
    if tile < 2 * sr_model.halo + 2 or overlap < 2 * sr_model.halo + 1 or overlap >= tile:
        raise ValueError(
            f"tile_size={tile} and overlap={overlap} do not fit model {sr_model.name!r}, "
            f"which needs {sr_model.halo} pixels of context: use overlap > "
            f"{2 * sr_model.halo} and tile_size > overlap."
        )

    cal_factor, cal_reference = calibration_factor(smap, calibrate)
    if cal_reference == "none (instrument unknown)":
        # An MDI map that lost its TELESCOP/INSTRUME keys would come out 1.4 times too strong.
        warnings.warn(UNKNOWN_INSTRUMENT, UncalibratedInputWarning, stacklevel=2)
    data = _as_gauss(smap) * cal_factor  # a new float64 array: the input is never touched
    missing = ~np.isfinite(data)
    x = normalise(np.where(missing, 0.0, data))
    target = x  # the input in network units, unclipped: what every output block must average to
    excess = None
    n_clipped = 0
    if sr_model.clip_input:
        clipped = np.clip(x, -1.0, 1.0)
        excess = x - clipped
        n_clipped = int(np.count_nonzero(excess))
        x = clipped

    if auto_batch:
        tiles = plan_tiles(x.shape, tile, overlap)
        batch_size = auto_batch_size(sr_model, (tiles[0].size_y, tiles[0].size_x), len(tiles))

    block = np.ones((f, f), dtype=np.float32)
    missing_hr = np.kron(missing, block.astype(bool))
    # Output in the input's unit; a BUNIT that sunpy cannot read (e.g. Mx/cm2) is written as G, equal
    # for a line-of-sight flux density, so that the result reads back as a magnetic field.
    out_unit = smap.unit if smap.unit is not None else u.G
    unit_scale = (1 * u.G).to_value(out_unit)

    def one_sample(k):
        out = _run_tiled(
            sr_model,
            x,
            tile=tile,
            overlap=overlap,
            seed=seed,
            sample=k,
            batch_size=batch_size,
            progress=progress,
        )
        if n_clipped:
            out += np.kron(excess, block)
        if consistency_method:
            # Flux-conserving projection (not in the paper): every block's mean becomes the input pixel.
            out = project_block_means(out, target, f, method=consistency_method)
        out = denormalise(out)
        out[missing_hr] = np.nan
        return out * np.float32(unit_scale) if unit_scale != 1 else out

    if samples == 1:
        out, std, kept = one_sample(0), None, None
    else:
        # Welford's running mean and variance: memory of two maps, whatever the number of samples.
        kept = [] if keep_samples else None
        mean = np.zeros(missing_hr.shape, dtype=np.float64)
        m2 = np.zeros_like(mean)
        started = time.perf_counter()
        for k in range(samples):
            s = one_sample(k)
            if k == 0:
                _warn_if_long(time.perf_counter() - started, samples)
            if kept is not None:
                kept.append(s)
            delta = s - mean
            mean += delta / (k + 1)
            m2 += delta * (s - mean)
        out = mean.astype(np.float32)
        std = np.sqrt(m2 / (samples - 1)).astype(np.float32)
        kept = None if kept is None else np.stack(kept)
        if calibrate_uncertainty and uncertainty_calibration is not None:
            std = uncertainty_calibration.apply(out * out_unit, std * out_unit, samples).to_value(out_unit)
            std = std.astype(np.float32)

    meta = finer_meta(smap.meta, f, smap.data.shape)
    provenance = {
        "srfactor": f,
        "srmodel": sr_model.name,
        "srmodrev": sr_model.revision,
        "srseed": -1 if seed is None else int(seed),
        "srsample": int(samples),
        "srvers": __version__,
        "srcalfac": cal_factor,
        "srcalref": cal_reference,
        "srnorm": NORMALISATION_RANGE.to_value(u.G),
        "srnclip": n_clipped,
        "srconsis": consistency_method is not None,
        "srconmet": consistency_method or "none",
        "srprec": sr_model.precision,
        **sr_model.provenance(),
    }
    if samples > 1:
        provenance["sruncal"] = (
            uncertainty_calibration.describe(samples)
            if calibrate_uncertainty and uncertainty_calibration is not None
            else "none"
        )
    meta.update(provenance)
    if cal_reference == "none (instrument unknown)":
        add_history(meta, "sunpy-superres: WARNING " + UNKNOWN_INSTRUMENT)
    if smap.unit is None:
        add_history(meta, f"sunpy-superres: BUNIT {smap.meta.get('bunit')!r} (not a FITS unit) written as G")
        meta["bunit"] = "G"
    add_history(
        meta,
        f"sunpy-superres {__version__}: {f}x super-resolution with model '{sr_model.name}' "
        f"(revision {sr_model.revision}), seed {provenance['srseed']}, samples {samples}, "
        f"calibration x{cal_factor:.6g} ({cal_reference})",
    )
    result = type(smap)(out, meta, plot_settings=dict(smap.plot_settings))
    if samples == 1:
        return result
    return UncertaintyMap.from_map(result, std=std, samples=kept)


def _as_gauss(smap):
    """The map's data in G as a new float64 array, masked pixels as NaN."""
    data = np.array(smap.data, dtype=np.float64)  # always a copy
    if smap.mask is not None and np.any(smap.mask):
        data[np.broadcast_to(smap.mask, data.shape)] = np.nan
    scale = (1 * map_unit(smap)).to_value(u.G)
    if scale != 1:
        data *= scale
    return data


def _run_tiled(sr_model, x, *, tile, overlap, seed, sample, batch_size, progress):
    """Run ``sr_model`` over overlapping tiles of ``x`` and blend them on the finer grid."""
    f = sr_model.factor
    ny, nx = x.shape
    tiles = plan_tiles(x.shape, tile, overlap)
    out = np.zeros((f * ny, f * nx), dtype=np.float64)
    weight = np.zeros_like(out)
    with tqdm(
        total=len(tiles), desc=f"{sr_model.name}", unit="tile", disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(tiles), batch_size):
            chunk = tiles[start : start + batch_size]
            batch = np.stack([x[t.slices] for t in chunk])
            seeds = [tile_seed(seed, sample, t) for t in chunk]
            pred = sr_model.predict(batch, seeds=seeds)
            for t, p in zip(chunk, pred, strict=True):
                w = blend_window(t, x.shape, factor=f, halo=sr_model.halo, overlap=overlap)
                out[t.scaled_slices(f)] += w * p
                weight[t.scaled_slices(f)] += w
            bar.update(len(chunk))
    return (out / weight).astype(np.float32)


def _warn_if_long(first_seconds, samples):
    """Warn with an estimate when ``samples`` samples of ``first_seconds`` each will take long."""
    remaining = first_seconds * (samples - 1)
    if remaining > LONG_RUN_SECONDS:
        hours = remaining / 3600.0
        when = f"{hours:.1f} h" if hours >= 1 else f"{remaining / 60:.0f} min"
        warnings.warn(
            f"{samples} samples at {first_seconds:.2g} s each (the first) will take about {when} more; "
            "8 to 16 samples give a calibrated standard deviation. Interrupt (Ctrl-C) and ask for "
            "fewer if that is not what you meant",
            LongRunWarning,
            stacklevel=3,
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
