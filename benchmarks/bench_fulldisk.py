"""
Full-disk speed: one 1024x1024 MDI magnetogram to 4096x4096, ours against the paper's pipeline.

A benchmark, not a test. It times ``superresolve`` on the real MDI full disk of ``../shared/data`` (or a
synthetic 1024x1024 disk on an MDI header when that file is absent) with the model's fast sampler
(by default the model's own; ``--sampler distilled`` its distilled student), and in the same run the
paper's pipeline: the model's network with 1000 steps of ancestral DDPM (Ramunno et al. 2025, section
4). The 1000-step chain is timed over a few steps on one batch of tiles and extrapolated linearly in
steps and tiles (marked "est."). Timing does not depend on the weights, so without ``--model`` the
model is built with random weights from a training config's architecture, as ``bench_samplers.py``
does. Run from the repository root::

    python benchmarks/bench_fulldisk.py --device cpu --max-tiles 2 --samples 1     # minutes on a CPU
    python benchmarks/bench_fulldisk.py --device cuda --config paper-gpu --samples 1 10
    python benchmarks/bench_fulldisk.py --device cuda --config paper-gpu --compile --precision bf16
    python benchmarks/bench_fulldisk.py --device cuda --model default --sampler distilled --samples 1 10

The last lines extrapolate the MDI archive (80,000 full disks) over ``--workers`` such devices.
``benchmarks/gpu_check.sh`` runs the GPU timings of the shipped default in one go.

``--max-tiles N`` times only the first N tiles and extrapolates to the full disk (also "est."); the
CPU-side work of a whole map (calibration, blending, consistency projection) is then measured with
the nearest-neighbour model and added. Without it every map is super-resolved in full, and the
table also gives the seconds spent waiting on the network's calls (noise draws and transfers
included): the rest of a map's time is the work on the output grid that ran beside no network call.
``--tile-size`` and ``--overlap`` time another tiling than the model's (larger tiles overlap less of
the disk but hold more in memory); the peak resident memory of the process is printed with the table.
"""

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
import torch
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header

from sunpy_superres import superresolve
from sunpy_superres.calibration import calibration_factor, normalise
from sunpy_superres.io import read_map
from sunpy_superres.models import load_model
from sunpy_superres.models.accel import auto_batch_size
from sunpy_superres.models.autoencoder import build_autoencoder
from sunpy_superres.models.base import resolve_device
from sunpy_superres.models.diffusion import STUDENT_SAMPLERS, ConditionalDenoiser, DiffusionSuperResolution
from sunpy_superres.models.interpolation import NearestModel
from sunpy_superres.superresolve import (  # superresolve's own design
    _predict_group,
    _shared_noise,
    _symmetry_groups,
    sample_plan,
)
from sunpy_superres.tiling import SharedNoise, plan_tiles
from sunpy_superres.training import load_config

sys.path.insert(0, str(Path(__file__).parent))
from bench_archive import MDI_ARCHIVE, peak_memory_mb  # noqa: E402

MDI_FULL_DISK = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "mdi"
    / "mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits"
)
PAPER = ("ddpm", 1000)


def synthetic_mdi(n=1024, seed=0):
    """A 1024x1024 full disk on an MDI-like header (SOHO/MDI, 1.98"/px, 2010-10-15), NaN off the limb."""
    ref = SkyCoord(
        0 * u.arcsec,
        0 * u.arcsec,
        obstime="2010-10-15T00:00:00",
        observer="earth",
        frame=frames.Helioprojective,
    )
    header = make_fitswcs_header(
        (n, n),
        ref,
        scale=[1.98, 1.98] * u.arcsec / u.pix,
        telescope="SOHO",
        instrument="MDI",
        observatory="SOHO",
        detector="MDI",
        unit=u.G,
    )
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 20, (n, n))  # quiet-Sun noise level of MDI, G
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    for _ in range(6):  # a few bipolar "active regions" of +-1000-2500 G
        cy, cx = rng.uniform(-300, 300, 2)
        for sign, dx in ((1, -15), (-1, 15)):
            r2 = (yy - cy) ** 2 + (xx - cx - dx) ** 2
            data += sign * rng.uniform(1000, 2500) * np.exp(-r2 / (2 * 8**2))
    rsun_px = 959.6 / 1.98
    data[np.hypot(yy, xx) > rsun_px] = np.nan
    return sunpy.map.Map(data.astype(np.float32), header)


def model_from_config(name, device, channels_last=False):
    """The ldm-res variant of a training config's architecture with random weights."""
    cfg = load_config(name).model
    torch.manual_seed(0)
    ae = None
    if cfg.diffusion.space == "latent":
        ae = build_autoencoder(
            factor=cfg.autoencoder.factor,
            latent_channels=cfg.autoencoder.latent_channels,
            base_channels=cfg.autoencoder.base_channels,
            max_channels=cfg.autoencoder.max_channels,
            layers_per_block=cfg.autoencoder.layers_per_block,
            norm_num_groups=cfg.autoencoder.norm_num_groups,
        )
    ch = cfg.autoencoder.latent_channels if cfg.diffusion.space == "latent" else 1
    den = ConditionalDenoiser(
        space=cfg.diffusion.space,
        residual=cfg.diffusion.residual,
        prediction_type=cfg.diffusion.prediction_type,
        target_channels=ch,
        cond_channels=ch,
        block_out_channels=tuple(cfg.diffusion.block_out_channels),
        layers_per_block=cfg.diffusion.layers_per_block,
        attention_levels=tuple(cfg.diffusion.attention_levels),
        attention_head_dim=cfg.diffusion.attention_head_dim,
        norm_num_groups=cfg.diffusion.norm_num_groups,
    )
    return DiffusionSuperResolution(
        den,
        ae,
        device=device,
        tile_size=cfg.tile_size,
        halo=cfg.halo,
        revision="random",
        channels_last=channels_last,
    )


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sampling_design(model, samples):
    """``(antithetic, symmetric)`` as ``superresolve``'s "auto" draws ``samples``: the model's calibrated design."""
    calibration = getattr(model, "uncertainty_calibration", None)
    if samples < 2 or not model.stochastic or calibration is None:
        return False, False
    return calibration.antithetic, bool(calibration.symmetric)


def time_tiles(model, batches, samples, tiles):
    """
    Seconds to run ``model`` over ``batches`` of (input tiles, their `Tile`s) of the map's ``tiles``
    for ``samples`` samples, as ``superresolve`` calls it: each call takes the samples drawn under
    one flip of its tiles, from the noise they share where they overlap.
    """
    antithetic, symmetric = sampling_design(model, samples)
    groups = _symmetry_groups(range(samples), antithetic, symmetric)
    sync(model.device)
    t0 = time.perf_counter()
    shared = _shared_noise(model, tiles, 0)
    for x, chunk in batches:
        for j, ks in groups.items():
            plan = [sample_plan(k, antithetic, symmetric) for k in ks]
            _predict_group(model, x, chunk, tiles.index(chunk[0]), plan, j, 0, None, shared)
    sync(model.device)
    return time.perf_counter() - t0


@contextlib.contextmanager
def network_time(model):
    """
    The seconds ``superresolve`` spends waiting on ``model``'s network calls, as a one-item list.

    Every ``predict_samples`` call of the model's class is timed (noise draws and transfers
    included), and every `~sunpy_superres.tiling.SharedNoise` batch (the tiles' noise, drawn before
    the call); the rest of a map's time is the work on the output grid that the pipeline did not
    overlap.
    """
    spent = [0.0]
    patched = [(type(model), "predict_samples"), (SharedNoise, "batch")]
    saved = [(cls, name, cls.__dict__.get(name)) for cls, name in patched]

    def timer(original):
        def timed(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        return timed

    for cls, name in patched:
        setattr(cls, name, timer(getattr(cls, name)))
    try:
        yield spent
    finally:
        for cls, name, own in saved:
            if own is None:
                delattr(cls, name)
            else:
                setattr(cls, name, own)


def fmt(seconds, est):
    mark = " (est.)" if est else ""
    return f"{seconds:.1f}{mark}", f"{3600 / seconds:.1f}{mark}"


class LowPrecisionDenoiser:
    """
    An experiment (issue 18), not the package's arithmetic: the denoiser with its weights cast to
    the reduced precision and run without autocast. Autocast runs the group norms in float32, and
    copies and casts were a third of the default's GPU time (PyTorch's profiler on an H200). Once
    on an H200, with the regression cast too, ten full-disk samples took 11.0 s against 13.1 s
    (6.1 against 8.1 s waiting on network calls); with the regression cast, one sample on the
    2-core EPYC (AVX-512 BF16) was at most 8.7 G from float32's, so only the denoiser is cast here:
    0.23 G rms and at most 2.8 G from float32's on the shipped cut-out, against 0.22 and 3.1 G under
    autocast (no faster on that CPU). Timed here so that a GPU session can decide whether the
    package should run its denoiser so.
    """

    def __init__(self, denoiser, dtype):
        self.network = copy.deepcopy(denoiser).to(dtype)
        self.dtype = dtype

    def __call__(self, sample, cond, timestep):
        with torch.autocast(sample.device.type, enabled=False):
            return self.network(sample.to(self.dtype), cond.to(self.dtype), timestep)


def cast_denoiser(model):
    """A copy of ``model`` (reduced precision, eager) whose denoiser runs as `LowPrecisionDenoiser`."""
    if model.precision == "fp32" or model.compiled:
        raise SystemExit("--cast-denoiser needs --precision bf16 or fp16, without --compile")
    model = copy.copy(model)
    model._denoise = LowPrecisionDenoiser(
        model.denoiser, {"bf16": torch.bfloat16, "fp16": torch.float16}[model.precision]
    )
    return model


def timed_models(loaded, sampler, steps, precision, compile):
    """
    The model as ``superresolve`` runs it with these settings, and the paper's 1000-step chain.

    The sampler first, then precision and compilation, as ``superresolve`` does: a distilled student
    (``sampler="distilled"``, the default's) is another network. The paper's chain runs the teacher's
    network, which a student reached through its teacher hands it to, with the same runtime settings.
    """
    model = loaded.configure_sampler(steps=steps, sampler=sampler)
    model = model.configure_runtime(precision=precision, compile=compile)
    return model, model.configure_sampler(sampler=PAPER[0], steps=PAPER[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--input", help="full-disk FITS file (default: the shared MDI file, else synthetic)")
    parser.add_argument(
        "--model",
        help="model directory, Hub reference or registry name (default: random "
        "weights with the architecture of --config)",
    )
    parser.add_argument("--config", default="cpu", help="training config whose architecture is timed")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[1, 10], help="samples per map (several: one row each)"
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC networks on CUDA (models built from --config only)"
    )
    parser.add_argument(
        "--cast-denoiser",
        action="store_true",
        help="experiment: the denoiser's weights in --precision, no autocast (see LowPrecisionDenoiser)",
    )
    parser.add_argument("--sampler", help="our sampler (default: the model's)")
    parser.add_argument("--steps", type=int, help="our sampler steps (default: the sampler's)")
    parser.add_argument("--batch-size", default="auto", help="tiles per model call, or auto")
    parser.add_argument("--max-tiles", type=int, help="time only this many tiles and extrapolate")
    parser.add_argument("--tile-size", type=int, help="tile side in input pixels (default: the model's)")
    parser.add_argument("--overlap", type=int, help="tile overlap in input pixels (default: 2 halo + 8)")
    parser.add_argument(
        "--paper-steps",
        type=int,
        nargs=2,
        default=[1, 21],
        metavar=("K1", "K2"),
        help="DDPM steps timed to extrapolate the 1000-step chain (cost linear in steps)",
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 8], help="devices like this one for the archive line"
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.input:
        smap, source = read_map(args.input), Path(args.input).name
    elif MDI_FULL_DISK.is_file():
        smap, source = read_map(MDI_FULL_DISK), MDI_FULL_DISK.name
    else:
        smap, source = synthetic_mdi(), "synthetic MDI-like disk"
    if args.model:
        model, label = load_model(args.model, device=device), args.model
    else:
        model = model_from_config(args.config, device, args.channels_last)
        label = f"random weights, config {args.config}"
    model, paper = timed_models(model, args.sampler, args.steps, args.precision, args.compile or None)
    if args.cast_denoiser:
        model, label = cast_denoiser(model), f"{label}, denoiser cast to {model.precision}"
    label = f"{model.name} ({label})"

    # The tiles superresolve() cuts (same defaults), on the calibrated, normalised, clipped input.
    tile = args.tile_size or model.tile_size
    overlap = args.overlap or 2 * model.halo + 8
    data = np.nan_to_num(np.asarray(smap.data, dtype=np.float64) * calibration_factor(smap, True)[0])
    x = np.clip(normalise(data), -1, 1).astype(np.float32)
    tiles = plan_tiles(x.shape, tile, overlap)
    n_tiles = len(tiles)
    timed = tiles if args.max_tiles is None else tiles[: max(1, min(args.max_tiles, n_tiles))]
    partial = len(timed) < n_tiles
    shape = (timed[0].size_y, timed[0].size_x)
    bs = auto_batch_size(model, shape, len(timed)) if args.batch_size == "auto" else int(args.batch_size)
    batches = [
        (np.stack([x[t.slices] for t in timed[i : i + bs]]), timed[i : i + bs])
        for i in range(0, len(timed), bs)
    ]

    # Warm-up: kernel selection, and with --compile one graph per batch shape (timed apart).
    t0 = time.perf_counter()
    # (A distilled student takes its own steps only: it warms up on them.)
    warm = model if model.sampler in STUDENT_SAMPLERS else model.configure_sampler(steps=2)
    for xb, tb in {len(tb): (xb, tb) for xb, tb in batches}.values():
        warm.predict(xb, seeds=[0] * len(tb))
    sync(device)
    warmup = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # CPU-side work of one map (calibration, tiling, blending, consistency, header), model-free.
    t0 = time.perf_counter()
    superresolve(
        smap,
        model=NearestModel(device="cpu"),
        consistency=True,
        tile_size=tile,
        overlap=overlap,
        progress=False,
    )
    map_overhead = time.perf_counter() - t0

    # The paper's chain: per-step cost on the first batch, extrapolated to 1000 steps and all tiles.
    k1, k2 = args.paper_steps
    xb, tb = batches[0]
    t_k = {
        k: min(
            time_tiles(paper.configure_sampler(sampler="ddpm", steps=k), [(xb, tb)], 1, tiles)
            for _ in range(2)
        )
        for k in (k1, k2)
    }
    per_step = max(0.0, (t_k[k2] - t_k[k1]) / (k2 - k1))
    paper_batch = t_k[k1] + (PAPER[1] - k1) * per_step  # one batch of len(tb) tiles
    paper_map = paper_batch / len(tb) * n_tiles + map_overhead

    rows = []
    for samples in args.samples:
        network = None
        if partial:
            ours = time_tiles(model, batches, samples, tiles) / len(timed) * n_tiles + samples * map_overhead
        else:
            sync(device)
            t0 = time.perf_counter()
            with network_time(model) as spent:
                superresolve(
                    smap,
                    model=model,
                    samples=samples,
                    seed=0,
                    batch_size="auto" if args.batch_size == "auto" else bs,
                    tile_size=tile,
                    overlap=overlap,
                    progress=False,
                )
            ours, network = time.perf_counter() - t0, spent[0]
        rows.append((samples, ours, network, samples * paper_map))

    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"cpu ({torch.get_num_threads()} threads)"
    ny, nx = smap.data.shape
    print(
        f"input: {source}, {ny}x{nx} -> {model.factor * ny}x{model.factor * nx}; {n_tiles} tiles of "
        f"{tiles[0].size_y}x{tiles[0].size_x} (at most {tile}, overlap {overlap}); timed {len(timed)} "
        f"tile(s) in batches of {bs}; precision "
        f"{model.precision}, compile {'on' if model.compiled else 'off'}; warm-up {warmup:.1f} s; CPU-side "
        f"per map {map_overhead:.1f} s"
    )
    print(f"peak resident memory of this process: {peak_memory_mb() / 1024:.2f} GiB")
    if device.type == "cuda":
        print(
            f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB "
            f"(of {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        )
    print(
        f"paper chain: {per_step:.3f} s per DDPM step per batch of {len(tb)} tile(s) "
        f"(timed {k1} and {k2} steps)"
    )
    print()
    print(
        "| device | model | sampler (steps) | samples | s / map | in network calls, s | maps / hour "
        "| ours / paper |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for samples, ours, network, paper_s in rows:
        s, h = fmt(ours, partial)
        inside = "" if network is None else f"{network:.1f}"
        print(
            f"| {dev_name} | {label} | {model.sampler} ({model.steps}) | {samples} | {s} | {inside} | {h} | "
            f"{ours / paper_s:.3f} |"
        )
        s, h = fmt(paper_s, True)
        print(
            f"| {dev_name} | {label}, paper pipeline | {PAPER[0]} ({PAPER[1]}) | {samples} | {s} | | {h} | 1 |"
        )
    print(f"\nThe MDI archive ({MDI_ARCHIVE:,} full disks) on devices like this one, one process each:")
    for samples, ours, _, _ in rows:
        days = ", ".join(f"{n}: {MDI_ARCHIVE * ours / n / 86400:.1f} days" for n in args.workers)
        print(f"- {samples} sample(s) per disk{' (est.)' if partial else ''}: {days}")


if __name__ == "__main__":
    main()
