"""The fast path (issue 7): tile batch from free memory, autocast precision, torch.compile, CUDA vs CPU."""

import sys
import threading

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch

from sunpy_superres import superresolve
from sunpy_superres.models import accel
from sunpy_superres.models.accel import CompiledForward, auto_batch_size, resolve_precision, tiles_per_batch
from sunpy_superres.models.diffusion import DiffusionSuperResolution
from sunpy_superres.models.interpolation import BicubicModel

from .models.tiny import tiny_model

GIB = 2**30
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def small_mdi(mdi_cutout):
    """A 48x40 piece of the real MDI cut-out: 4 tiles of the tiny model (tile 32, overlap 16)."""
    return mdi_cutout.submap([40, 40] * u.pix, top_right=[79, 87] * u.pix)


def run(smap, model, **kwargs):
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("steps", 3)
    return superresolve(smap, model=model, progress=False, **kwargs)


# -- tile batch size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "per_tile", "n_tiles", "cap", "expected"),
    [
        (80 * GIB, GIB, 25, 64, 25),  # 56 fit: every tile in one call
        (80 * GIB, GIB, 100, 64, 50),  # 56 fit: two calls of 50 rather than 56 + 44
        (200 * GIB, GIB, 100, 64, 50),  # 140 fit, capped at 64: two calls, 50 each
        (20 * GIB, GIB, 25, 64, 13),  # 14 fit: 13 + 12
        (10 * GIB, GIB, 25, 64, 7),  # 7 fit: four calls, 7 + 6 + 6 + 6
        (GIB, 2 * GIB, 25, 64, 1),  # not even one fits: one at a time (and let CUDA say so)
        (0, GIB, 3, 64, 1),
        (80 * GIB, GIB, 25, 4, 4),  # the cap wins; 25 = 4 * 7 calls, so 4 per call
    ],
)
def test_tiles_per_batch(free, per_tile, n_tiles, cap, expected):
    b = tiles_per_batch(free, per_tile, n_tiles, cap)
    assert b == expected
    # The batch never exceeds the memory plan unless it is 1, nor the cap, nor the tiles.
    assert b == 1 or b * per_tile <= 0.7 * free
    assert 1 <= b <= min(cap, n_tiles)


def test_tiles_per_batch_keeps_the_number_of_calls():
    for fit in range(1, 70):
        for n in (1, 7, 25, 64, 100):
            b = tiles_per_batch(fit * GIB / 0.7 + 1, GIB, n, cap=64)
            assert -(-n // b) == -(-n // min(fit, 64, n))  # balancing adds no call


@pytest.mark.parametrize(
    ("args", "match"),
    [((GIB, 0, 5), "bytes_per_tile"), ((GIB, GIB, 0), "n_tiles"), ((GIB, GIB, 5, 0), "cap")],
)
def test_tiles_per_batch_errors(args, match):
    with pytest.raises(ValueError, match=match):
        tiles_per_batch(*args)
    with pytest.raises(ValueError, match="fraction"):
        tiles_per_batch(GIB, GIB, 5, fraction=1.5)


def test_auto_batch_size_on_cpu():
    model = tiny_model()
    assert auto_batch_size(model, (32, 32), 25) == accel.CPU_BATCH_SIZE == 1
    assert auto_batch_size(model, (32, 32), 1) == 1


def test_batch_size_does_not_change_the_result(small_mdi):
    """Per-tile generators (rule 7 of docs/dev/design.rst): the batch changes only float32 rounding of the networks."""
    model = tiny_model()
    four = run(small_mdi, model, batch_size=4)
    assert four.data.shape == (192, 160)
    np.testing.assert_array_equal(run(small_mdi, model, batch_size=4).data, four.data)
    one = run(small_mdi, model, batch_size=1).data
    np.testing.assert_array_equal(run(small_mdi, model).data, one)  # "auto" on the CPU: one tile per call
    # CPU convolutions block a batch of 1 and of 4 differently: float32 rounding, which this random
    # network's sampler steps amplify (measured: up to 1e-5 of the field's spread on NCHW tensors, up
    # to 3.4e-4 on the NHWC ones the CPU now runs; each convolution itself stays within 1e-6 of float64).
    np.testing.assert_allclose(one, four.data, rtol=0, atol=1e-3 * np.std(four.data))
    assert not np.allclose(run(small_mdi, model, seed=4).data, four.data, atol=1e-2 * np.std(four.data))


def spy_on_predict_samples(monkeypatch):
    """A list that records the shape of the seeds of every `predict_samples` call of a diffusion model."""
    calls, original = [], DiffusionSuperResolution.predict_samples

    def spy(self, batch, seeds, **kwargs):
        calls.append(np.shape(seeds))
        return original(self, batch, seeds, **kwargs)

    monkeypatch.setattr(DiffusionSuperResolution, "predict_samples", spy)
    return calls


def test_samples_share_network_calls_and_keep_their_values(small_mdi, monkeypatch):
    """samples=N: a tile's samples run in one call, encoded once; each sample is the one of a call per sample."""
    model, calls = tiny_model(), spy_on_predict_samples(monkeypatch)
    together = run(small_mdi, model, samples=3, keep_samples=True, batch_size=4)
    assert calls == [(1, 3)] * 4  # 4 tiles, each with its 3 samples (4 pairs fit one tile's 3)
    calls.clear()
    alone = run(small_mdi, model, samples=3, keep_samples=True, batch_size=1)  # one (tile, sample) per call
    assert calls == [(1, 1)] * 12
    calls.clear()
    two = run(small_mdi, model, samples=3, keep_samples=True, batch_size=8)
    assert calls == [(2, 3)] * 2  # 8 pairs fit 2 tiles of 3 samples
    scale = np.std(alone.data)
    for other in (together, two):
        assert other.samples.shape == (3, 192, 160)
        # Batch-dependent float32 rounding (see test_batch_size_does_not_change_the_result): up to
        # 6.5e-4 of the spread measured.
        np.testing.assert_allclose(other.samples.value, alone.samples.value, rtol=0, atol=1e-3 * scale)
        np.testing.assert_allclose(other.std.value, alone.std.value, rtol=0, atol=1e-3 * scale)
    assert not np.allclose(alone.samples[0].value, alone.samples[1].value, atol=1e-2 * scale)


def test_auto_on_a_cpu_runs_the_samples_of_one_tile_and_flip_per_call(small_mdi, monkeypatch):
    """On a CPU, batch_size="auto" gives a call one tile's samples of one symmetry (they share its encoding)."""
    model, calls = tiny_model(), spy_on_predict_samples(monkeypatch)
    plain = run(small_mdi, model, samples=3, keep_samples=True)
    assert calls == [(1, 3)] * 4  # 4 tiles, each with its 3 samples
    calls.clear()
    design = run(small_mdi, model, samples=4, keep_samples=True, antithetic=True, symmetric=True)
    assert calls == [(1, 2)] * 8  # an antithetic pair per flip: 2 flips of 4 tiles
    calls.clear()
    for auto, kwargs in ((plain, {}), (design, dict(antithetic=True, symmetric=True))):
        n = auto.samples.shape[0]
        alone = run(small_mdi, model, samples=n, keep_samples=True, batch_size=1, **kwargs)
        scale = np.std(alone.data)
        np.testing.assert_allclose(auto.samples.value, alone.samples.value, rtol=0, atol=1e-4 * scale)
    assert calls == [(1, 1)] * 28  # 4 tiles x (3 + 4) samples
    calls.clear()
    run(small_mdi, model, samples=4, antithetic="polarity", symmetric=True)
    assert calls == [(1, 1)] * 16  # pairs by polarity reversal: every sample has a symmetry of its own


def test_sample_groups_fit_in_memory(small_mdi, monkeypatch):
    """Samples blended at once stay within SAMPLE_GROUP_BYTES: a smaller budget, smaller groups, same samples."""
    sr_module = sys.modules["sunpy_superres.superresolve"]
    model = tiny_model()
    together = run(small_mdi, model, samples=3, keep_samples=True, batch_size=12)
    one_map = 192 * 160 * 4  # a float32 map on the output grid
    monkeypatch.setattr(sr_module, "SAMPLE_GROUP_BYTES", 2 * one_map)
    calls = spy_on_predict_samples(monkeypatch)
    pairs = run(small_mdi, model, samples=3, keep_samples=True, batch_size=12)
    assert calls == [(4, 2), (4, 1)]  # groups of 2 and 1 samples, all 4 tiles per call
    np.testing.assert_allclose(
        pairs.samples.value, together.samples.value, rtol=0, atol=1e-4 * np.std(pairs.data)
    )
    # The statistics merged over the groups are NumPy's over all the samples.
    samples = pairs.samples.value.astype(np.float64)
    np.testing.assert_allclose(pairs.data, samples.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pairs.std.value, samples.std(axis=0, ddof=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes", [[5], [3, 1, 2], [1, 1, 1, 1]])
def test_statistics_merged_group_by_group_are_numpys(sizes):
    """Chan's merge of each group's two-pass moments: NumPy's mean and variance of all the samples."""
    sr_module = sys.modules["sunpy_superres.superresolve"]
    rng = np.random.default_rng(sum(sizes))
    samples = (100 + 30 * rng.standard_normal((sum(sizes), 70, 9))).astype(np.float32)
    mean, m2, done = np.zeros((70, 9)), np.zeros((70, 9)), 0
    for size in sizes:
        for rows in (slice(0, 64), slice(64, 128)):  # row blocks past the end, as the caller's last
            sr_module._merge_statistics(mean, m2, done, list(samples[done : done + size]), rows)
        done += size
    np.testing.assert_allclose(mean, samples.mean(axis=0, dtype=np.float64), rtol=1e-14)
    np.testing.assert_allclose(m2, samples.var(axis=0, dtype=np.float64) * len(samples), rtol=1e-12)


@pytest.mark.parametrize("cores", [1, 3])
def test_threads_do_not_change_the_result(small_mdi, monkeypatch, cores):
    """Blending, finishing and the running statistics of several samples: on threads or not, bit for bit."""
    sr_module = sys.modules["sunpy_superres.superresolve"]
    model = tiny_model()
    kw = dict(samples=3, keep_samples=True, batch_size=12, consistency=True)
    serial, used = run(small_mdi, model, **kw), []
    monkeypatch.setattr(sr_module, "worker_threads", lambda: cores)
    pool = sr_module.ThreadPoolExecutor
    monkeypatch.setattr(sr_module, "ThreadPoolExecutor", lambda n, **k: used.append(n) or pool(n, **k))
    threaded = run(small_mdi, model, **kw)
    # The statistics' pool (none on one core), then the pipeline's, which blends and finishes the
    # samples beside the network (one thread on one core: it still overlaps a GPU's work).
    assert used == ([1] if cores == 1 else [3, 3])
    for a, b in ((threaded.data, serial.data), (threaded.samples.value, serial.samples.value)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(threaded.std.value, serial.std.value)


@pytest.mark.parametrize("beside", [True, False])
def test_blending_runs_beside_the_next_network_call(small_mdi, monkeypatch, beside):
    """
    On an accelerator the first call's samples are blended on a thread while the second call runs;
    on the CPU (``beside=False``, where the blends would take the network's cores) after the calls.
    """
    sr_module = sys.modules["sunpy_superres.superresolve"]
    assert not sr_module._blends_beside_network(tiny_model())  # the tiny model is on the CPU
    monkeypatch.setattr(sr_module, "_blends_beside_network", lambda model: beside)
    blending, blend = threading.Event(), sr_module._blend_sample
    monkeypatch.setattr(sr_module, "_blend_sample", lambda *a: blending.set() or blend(*a))
    seen, original = [], DiffusionSuperResolution.predict_samples

    def spy(self, batch, seeds, **kwargs):
        # The second call waits for the first call's blending: it would time out if that came after.
        seen.append(blending.wait(timeout=20 if beside else 1) if seen else blending.is_set())
        return original(self, batch, seeds, **kwargs)

    monkeypatch.setattr(DiffusionSuperResolution, "predict_samples", spy)
    run(small_mdi, tiny_model(), samples=2, symmetric=True, batch_size=12)  # two symmetries: two calls
    assert seen == [False, beside]


@pytest.mark.parametrize(("torch_threads", "expected"), [(1, 1), (3, 3), (64, 8)])
def test_threads_follow_torchs_count(monkeypatch, torch_threads, expected):
    """The output-grid work uses torch's threads (OMP_NUM_THREADS: a batch worker's share), at most 8."""
    sr_module = sys.modules["sunpy_superres.superresolve"]
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert sr_module.worker_threads() == expected == min(torch_threads, sr_module.MAX_FINISH_THREADS)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "big"])
def test_batch_size_errors(small_mdi, bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer or 'auto'"):
        run(small_mdi, "nearest", batch_size=bad, seed=None, steps=None)


# -- precision ---------------------------------------------------------------------------------------


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, cpu) == p
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        resolve_precision("fp64", cpu)


@pytest.mark.native_bf16
@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16"), (False, False, "fp32")],
)
def test_auto_is_bfloat16_on_a_cpu_with_bfloat16_instructions_only(monkeypatch, amx, avx512_bf16, expected):
    from sunpy_superres.models import accel

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert accel.cpu_has_native_bf16() == (expected == "bf16")
    assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("fp32", cpu) == "fp32"  # asked for by name: always


@pytest.mark.native_bf16
def test_auto_is_float32_with_a_torch_without_the_probes(monkeypatch):
    from sunpy_superres.models import accel

    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not accel.cpu_has_native_bf16() and resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_the_cpu_runs_the_networks_channels_last():
    """oneDNN's bfloat16 convolutions need NHWC for their speed; float32 differs by rounding only."""
    model = _tiny_on("cpu")
    assert model._memory_format == torch.channels_last
    assert model.denoiser.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_is_close_to_fp32(small_mdi):
    model = tiny_model()
    assert model.precision == "fp32"  # "auto" on the CPU
    ref = run(small_mdi, model)
    np.testing.assert_array_equal(run(small_mdi, model, precision="fp32").data, ref.data)
    low = run(small_mdi, model, precision="bf16")
    assert low.meta["srprec"] == "bf16" and ref.meta["srprec"] == "fp32"
    assert model.precision == "fp32"  # the caller's model is not altered
    # bfloat16 keeps 8 significant bits (relative rounding 2**-9 = 0.2 %); through the autoencoder and
    # three sampler steps of this random network the maps differ by about 1 % of their spread (measured).
    diff = np.abs(low.data - ref.data)
    assert np.isfinite(low.data).all()
    assert diff.mean() < 0.03 * np.std(ref.data)
    assert diff.mean() > 0  # autocast did act
    # The consistency projection runs after the networks, in float64: block means still match exactly.
    means = low.superpixel((4, 4) * u.pix, func=np.mean).data
    np.testing.assert_allclose(means, ref.superpixel((4, 4) * u.pix, func=np.mean).data, rtol=1e-5, atol=1e-2)


def test_fp16_autocast_on_the_cpu_is_close_to_fp32():
    """float16 autocast runs on the CPU too, and computes the same function to its precision."""
    model = _tiny_on("cpu")
    x = np.random.default_rng(0).normal(0, 0.1, (2, 32, 32)).astype(np.float32)
    ref = model.predict(x, seeds=[1, 2])
    low = model.configure_runtime(precision="fp16")
    assert low.precision == "fp16" and model.precision == "fp32"
    out = low.predict(x, seeds=[1, 2])
    # float16 keeps 11 significant bits (relative rounding 2**-12); measured 0.13 % of the spread.
    diff = np.abs(out - ref)
    assert np.isfinite(out).all() and 0 < diff.mean() < 0.01 * np.std(ref)


def test_torch_compile_on_the_cpu_matches_eager():
    """
    torch.compile (Inductor, C++ code generated and built here) computes the same function as eager.

    Needs a C++ compiler; where there is none the package falls back to eager with a warning (tested
    in test_compile_falls_back_to_eager) and this test skips. The compilation takes about a minute.
    """
    import warnings

    model = _tiny_on("cpu")
    x = np.random.default_rng(0).normal(0, 0.1, (2, 32, 32)).astype(np.float32)
    ref = model.predict(x, seeds=[1, 2])
    compiled = model.configure_runtime(compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled.predict(x, seeds=[1, 2])
    fallback = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
    if fallback:
        pytest.skip(f"torch.compile does not work here: {fallback[0]}")
    assert compiled._denoise.active
    # Only the order of float32 operations differs: measured 1.1e-6 against a spread of 0.36.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.std(ref))
    assert not np.array_equal(out, model.predict(x, seeds=[1, 3]))  # the seed still matters


def test_precision_recorded_in_header(small_mdi, tmp_path):
    out = run(small_mdi, tiny_model(), precision="bf16")
    assert out.meta["srprec"] == "bf16"
    out.save(tmp_path / "out.fits")
    back = sunpy.map.Map(tmp_path / "out.fits")
    assert back.meta["srprec"] == "bf16"  # a valid FITS keyword (at most 8 characters)
    assert run(small_mdi, "bicubic", seed=None, steps=None).meta["srprec"] == "fp32"


def test_baselines_run_in_float32_only(small_mdi):
    model = BicubicModel(device="cpu")
    assert model.configure_runtime(precision="auto") is model
    assert model.configure_runtime(precision="fp32", compile=False) is model
    with pytest.raises(ValueError, match="runs in fp32 only, not 'bf16'"):
        run(small_mdi, model, precision="bf16", seed=None, steps=None)
    with pytest.raises(ValueError, match="no network that torch.compile"):
        run(small_mdi, model, compile=True, seed=None, steps=None)
    with pytest.raises(ValueError, match="unknown precision"):
        run(small_mdi, tiny_model(), precision="half")


# -- runtime copies and torch.compile ------------------------------------------------------------------


def test_configure_runtime_copies():
    model = tiny_model()
    assert model.configure_runtime() is model
    assert model.configure_runtime(precision="auto", compile=False) is model
    low = model.configure_runtime(precision="bf16")
    assert low is not model and low.precision == "bf16" and low.denoiser is model.denoiser
    compiled = model.configure_runtime(compile=True)
    assert compiled.compiled and isinstance(compiled._denoise, CompiledForward)
    assert not model.compiled and model._denoise is model.denoiser
    eager = compiled.configure_runtime(compile=False)
    assert not eager.compiled and eager._denoise is model.denoiser
    probe = compiled.memory_probe()
    assert probe.steps == 1 and not probe.compiled and compiled.steps == 4


def test_compile_falls_back_to_eager(monkeypatch, small_mdi):
    """Where torch.compile is missing or fails, the model still runs, eagerly, and says so once."""
    model = tiny_model()
    ref = run(small_mdi, model)

    def broken_compile(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile is not usable here.*no C.. compiler"):
        out = run(small_mdi, model, compile=True)
    np.testing.assert_array_equal(out.data, ref.data)

    monkeypatch.delattr(torch, "compile")
    with pytest.warns(RuntimeWarning, match="has no torch.compile"):
        fwd = CompiledForward(model.denoiser)
    assert not fwd.active and fwd.module is model.denoiser


# -- CUDA (skipped without a GPU) ----------------------------------------------------------------------


def _tiny_on(device, **kwargs):
    src = tiny_model()  # a fresh copy of the same seeded weights: moving it does not move another model's
    return DiffusionSuperResolution(
        src.denoiser, src.autoencoder, tile_size=32, halo=4, steps=4, device=device, **kwargs
    )


@needs_cuda
def test_cuda_matches_cpu(small_mdi):
    """
    CUDA, bf16 autocast, batched tiles against the CPU float32 reference.

    The random draws are the same (per-tile CPU generators), so the maps differ by arithmetic only.
    Tolerance: bfloat16 rounds to 2**-9 relative; through the autoencoder and the sampler of the tiny
    random network that gave a mean absolute difference of under 1 % of the map's spread, on CPU
    (test_bf16_autocast_is_close_to_fp32) as on an H100. We allow 3 %, and a tight bound for float32 on
    the GPU, where only the order of summation (and TF32 convolutions) differ.
    """
    cpu = run(small_mdi, _tiny_on("cpu"), steps=None)
    gpu_model = _tiny_on("cuda")
    assert gpu_model.precision == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp32")
    gpu = run(small_mdi, gpu_model, steps=None, device="cuda", precision="bf16")
    assert gpu.meta["srprec"] == "bf16" and np.isfinite(gpu.data).all()
    spread = np.std(cpu.data)
    assert np.mean(np.abs(gpu.data - cpu.data)) < 0.03 * spread
    fp32 = run(small_mdi, gpu_model, steps=None, precision="fp32", batch_size=1)
    assert np.mean(np.abs(fp32.data - cpu.data)) < 2e-3 * spread
    means = gpu.superpixel((4, 4) * u.pix, func=np.mean).data  # consistency: still exact
    np.testing.assert_allclose(means, cpu.superpixel((4, 4) * u.pix, func=np.mean).data, rtol=1e-5, atol=1e-2)


@needs_cuda
def test_cuda_auto_batch_size_measures_memory():
    model = _tiny_on("cuda")
    per_tile = accel.measure_tile_memory(model, (32, 32))
    assert per_tile > 0
    b = auto_batch_size(model, (32, 32), 25)
    assert b == tiles_per_batch(accel.free_memory(model.device), per_tile, 25)
    assert 1 <= b <= 25


def assert_float32_close(out, ref):
    """
    Same function up to float32 on a GPU: cuDNN convolutions run in TF32 (10-bit mantissa, 1e-3
    relative) by default, and another kernel choice rounds differently. Measured on an H100 for the
    tiny model: max difference 4e-3 of the spread (channels_last and compiled against eager).
    """
    spread = np.std(ref)
    assert np.isfinite(out).all()
    assert np.mean(np.abs(out - ref)) < 1e-3 * spread
    assert np.max(np.abs(out - ref)) < 2e-2 * spread


@needs_cuda
def test_cuda_channels_last_matches():
    """The opt-in NHWC layout changes the order of float32 sums only."""
    x = np.random.default_rng(0).normal(0, 0.1, (2, 32, 32)).astype(np.float32)
    ref = _tiny_on("cuda", precision="fp32").predict(x, seeds=[1, 2])
    model = _tiny_on("cuda", precision="fp32", channels_last=True)
    assert model.denoiser.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert_float32_close(model.predict(x, seeds=[1, 2]), ref)


@needs_cuda
def test_cuda_compile_matches_eager():
    """torch.compile of the denoiser (Inductor on the GPU) computes the same function as eager."""
    model = _tiny_on("cuda", precision="fp32")
    x = np.random.default_rng(0).normal(0, 0.1, (2, 32, 32)).astype(np.float32)
    ref = model.predict(x, seeds=[1, 2])
    compiled = model.configure_runtime(compile=True)
    out = compiled.predict(x, seeds=[1, 2])
    assert compiled._denoise.active  # no fallback to eager
    assert_float32_close(out, ref)  # fused kernels change the order of float32 sums only
