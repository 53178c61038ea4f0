"""The model specs the benchmarks take (``NAME[:SAMPLER:STEPS][@PRECISION]``, benchmarks/bench_archive.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _from_benchmark(script, name):
    """``name`` from ``benchmarks/<script>.py`` (skipped outside a source checkout)."""
    if not BENCHMARKS.is_dir():
        pytest.skip("not a source checkout")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return getattr(__import__(script), name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def load():
    return _from_benchmark("bench_archive", "load")


def test_a_spec_sets_the_sampler_and_the_precision(load):
    plain = load("default", "cpu")
    assert (plain.name, plain.sampler, plain.steps, plain.precision) == ("ldm-res", "distilled", 4, "fp32")
    fast = load("default:distilled:4@bf16", "cpu")
    assert (fast.sampler, fast.network_evaluations, fast.precision) == ("distilled", 4, "bf16")
    assert load("ldm-res:ddim:5", "cpu").steps == 5
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        load("default@fp8", "cpu")


def test_a_spec_gives_the_options_of_the_batch_line():
    """bench_archive.py --batch runs the first model through superresolve_files with the spec's options."""
    parse_spec = _from_benchmark("bench_archive", "parse_spec")
    assert parse_spec("default") == ("default", None, None, None)
    assert parse_spec("default:distilled:4@bf16") == ("default", "distilled", 4, "bf16")
    assert parse_spec("ldm-res:ddim") == ("ldm-res", "ddim", None, None)
    assert parse_spec("./runs/x@fp32") == ("./runs/x", None, None, "fp32")
    hub = "hf://sunpy/ldm-res@" + "0123456789abcdef" * 2 + "01234567"
    assert parse_spec(hub) == (hub, None, None, None)
    assert parse_spec(hub + ":distilled:4@bf16") == (hub, "distilled", 4, "bf16")
    assert parse_spec(hub + "@fp32") == (hub, None, None, "fp32")


def test_the_full_disk_benchmark_times_a_student_beside_its_teachers_paper_chain():
    """bench_fulldisk.py --sampler distilled: the student runs, the paper's chain is the teacher's network."""
    timed_models = _from_benchmark("bench_fulldisk", "timed_models")
    from sunpy_superres.models import load_model

    default = load_model("default", device="cpu")  # served by its student
    teacher = load_model("default", device="cpu", stored=True)
    for loaded in (default, teacher):
        model, paper = timed_models(loaded, "distilled", None, "bf16", None)
        assert (model.sampler, model.network_evaluations, model.precision) == ("distilled", 4, "bf16")
        assert (paper.sampler, paper.steps, paper.precision) == ("ddpm", 1000, "bf16")
        assert model.revision != paper.revision == teacher.revision
        model, paper = timed_models(loaded, "dpm-solver++", 5, "fp32", None)
        assert (model.sampler, model.steps, paper.steps, paper.precision) == ("dpm-solver++", 5, 1000, "fp32")
        assert paper.denoiser is model.denoiser


def test_the_full_disk_benchmark_times_the_network_calls_and_puts_the_method_back(monkeypatch):
    """bench_fulldisk.py's network column: the seconds inside predict_samples; the class as it was after."""
    import time

    import numpy as np

    from sunpy_superres.models.interpolation import NearestModel
    from sunpy_superres.tiling import SharedNoise, plan_tiles

    network_time = _from_benchmark("bench_fulldisk", "network_time")
    model = NearestModel(device="cpu")
    original, own = type(model).predict_samples, dict(vars(type(model)))
    batch = SharedNoise.batch
    shared = SharedNoise(plan_tiles((8, 12), 8, 2), 1, lambda t, n: np.zeros((1, 8, 8), np.float32))
    monkeypatch.setattr(time, "perf_counter", iter([10.0, 12.5, 20.0, 20.25, 30.0, 30.5]).__next__)
    with network_time(model) as spent:
        for _ in range(2):
            model.predict_samples(np.zeros((1, 2, 2), np.float32), [[0]])
        shared.batch([0, 1], [0])  # the tiles' shared noise, drawn for the network
    assert spent == [3.25]
    assert type(model).predict_samples is original and dict(vars(type(model))) == own
    assert SharedNoise.batch is batch


def test_noise_rings_tells_block_noise_from_texture():
    # White noise of sigma: its 4x4 block means have sigma / 4, the pixels about them sigma * sqrt(15 / 16).
    block_split = _from_benchmark("noise_rings", "block_split")
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 3.0, (512, 512))
    block, within = block_split(noise, np.zeros(noise.shape))
    assert block == pytest.approx(0.75, rel=0.03) and within == pytest.approx(3 * np.sqrt(15 / 16), rel=0.01)
    # The same block means carry their own field: only the block part grows.
    field = noise + np.repeat(np.repeat(rng.normal(0, 4.0, (128, 128)), 4, 0), 4, 1)
    more_block, same_within = block_split(field, np.zeros(noise.shape))
    assert more_block == pytest.approx(np.hypot(0.75, 4.0), rel=0.05) and same_within == pytest.approx(within)
    # Only boxes within half a solar radius count; none: NaN.
    assert np.isnan(block_split(noise, np.ones(noise.shape))[0])


def test_tile_seams_ramp_mask_is_where_a_sine_squared_ramp_is_between_5_and_95_percent():
    """The ramp of the tile-seam benchmark: sin^2 rises from 0.05 to 0.95 over (2/pi)(asin sqrt .95 -
    asin sqrt .05) = 0.713 of its length, in the middle of the overlap; one band per seam and axis."""
    from types import SimpleNamespace

    from sunpy_superres.tiling import plan_tiles

    ramp_mask = _from_benchmark("tile_seams", "ramp_mask")
    model = SimpleNamespace(factor=4, halo=5, tile_size=40)
    shape = (62, 62)  # 2 x 2 tiles of 40 at 0 and 22: the overlap is 18, the ramp 8 of it
    tiles = plan_tiles(shape, 40, 2 * 5 + 8)
    assert len(tiles) == 4
    mask = ramp_mask(shape, model)
    cols = np.flatnonzero(mask.all(axis=0))  # the columns of the vertical seam run through every row
    ramp = 4 * 8  # output pixels: factor x (overlap - 2 halo)
    expected = 2 / np.pi * (np.arcsin(np.sqrt(0.95)) - np.arcsin(np.sqrt(0.05))) * ramp
    assert abs(len(cols) - expected) <= 1 and np.all(np.diff(cols) == 1)
    start = 4 * (tiles[1].x0 + 5)  # the second tile's halo ends where the ramp starts
    assert start <= cols[0] and cols[-1] < start + ramp
    np.testing.assert_array_equal(mask, mask.T)


def test_the_speed_table_counts_each_network_pass(hmi_cutout):
    # bench_default's "passes" columns: what a call runs through the regression and the denoiser.
    counted_passes = _from_benchmark("bench_default", "counted_passes")
    passes_cell = _from_benchmark("bench_default", "passes_cell")
    from sunpy_superres import superresolve

    from .models.test_regression_residual import lr_map, tiny_model

    model, lr = tiny_model(steps=3), lr_map(hmi_cutout, side=30)  # one tile
    with counted_passes(model) as counts:
        superresolve(lr, model=model, seed=0, progress=False)
    assert counts == [1, 3] and passes_cell(counts, 1) == "1 + 3"
    # Two pairs by polarity reversal under two flips: 4 symmetries, each sample its own 3 steps.
    with counted_passes(model) as counts:
        superresolve(
            lr, model=model, seed=0, progress=False, samples=4, antithetic="polarity", symmetric=True
        )
    assert counts == [4, 12]
    with counted_passes(model) as counts:
        pass
    assert passes_cell(counts, 1) == ""  # nothing run: an empty cell, as for a model without networks
