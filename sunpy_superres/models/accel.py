"""
Device helpers for fast inference: arithmetic precision, tile batch size, optional ``torch.compile``.

Everything here is chosen so that the GPU path computes the same function as the CPU path: reduced
precision covers only the networks (``torch.autocast``), the samplers' update and every blend stay in
float32, and each tile keeps its own random generator whatever the batch (rule 7 of docs/dev/design.rst).
"""

import contextlib
import math
import numbers
import warnings

import numpy as np
import torch

__all__ = [
    "PRECISIONS",
    "resolve_precision",
    "cpu_has_native_bf16",
    "autocast",
    "tiles_per_batch",
    "free_memory",
    "measure_tile_memory",
    "auto_batch_size",
    "CompiledForward",
    "CPU_BATCH_SIZE",
    "MAX_AUTO_BATCH",
    "MEMORY_FRACTION",
]

#: Precision names accepted by ``superresolve(..., precision=...)`` and the models.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Tiles per batch of ``batch_size="auto"`` on the CPU. A larger batch brings no speed there and, for
#: full-size tiles, costs some: measured on one core with the embedded ldm-res, a batch of 4 tiles of
#: 256x256 took 1.46 s per tile and network evaluation against 0.95 s one at a time (224x224: 1.03 s
#: against 0.69 s), the activations of four tiles no longer fitting the caches; 128x128 tiles ran at the
#: same speed either way.
CPU_BATCH_SIZE = 1
#: Most tiles per batch that ``batch_size="auto"`` picks on a GPU.
MAX_AUTO_BATCH = 64
#: Share of the free GPU memory that ``batch_size="auto"`` plans to fill.
MEMORY_FRACTION = 0.7


def resolve_precision(precision, device):
    """
    The arithmetic precision a model runs its networks in.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"`` is bfloat16 where the hardware multiplies bfloat16 matrices natively: a CUDA GPU
        of compute capability 8.0 or later (A100, H100, RTX 30xx and newer) or a CPU with Intel AMX
        or AVX-512 BF16 (`cpu_has_native_bf16`); float32 elsewhere. ``"bf16"`` and ``"fp16"`` run
        the networks under `torch.autocast` with that type on any device.
    device : `torch.device`
        Device the model runs on.

    Returns
    -------
    str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Raises
    ------
    ValueError
        If ``precision`` is not one of `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(map(repr, PRECISIONS))}.")
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return "bf16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def cpu_has_native_bf16():
    """
    Whether this CPU has bfloat16 dot-product instructions: Intel AMX tiles or AVX-512 BF16 (Intel
    Cooper Lake and later, AMD Zen 4 and later).

    There oneDNN runs the denoiser's convolutions in bfloat16 on channels-last tensors at twice to
    three times float32's speed (the default's U-Net on a 256x256 latent, 2 threads: a Xeon with AMX
    0.106 s against 0.341 s, an AMD EPYC with AVX-512 BF16 0.294 s against 0.580 s; on
    channels-first tensors far less), and the default's samples move by about 0.2 G rms (median of
    12 training crops: 0.18 G on the Xeon, 0.22 G on the EPYC, against 15-24 G between two seeds and
    3.5-5 G of HMI's noise): the speed is kept, the result is the same to well within the noise.
    Without either, bfloat16 on a CPU is emulated and is not faster, so float32 stays the default.
    Asked of torch's own CPU probes (``torch.cpu._is_amx_tile_supported`` and
    ``torch.cpu._is_avx512_bf16_supported``, private; `False` where a torch version lacks them).
    """
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    return any(probe is not None and probe() for probe in probes)


def autocast(device, precision):
    """
    Context manager running torch operations in ``precision`` on ``device``.

    ``torch.autocast`` casts only the operations that gain from it (convolutions, matrix products,
    attention) and keeps reductions such as group normalisation in float32; ``"fp32"`` is a no-op.

    Parameters
    ----------
    device : `torch.device`
    precision : {"fp32", "bf16", "fp16"}
        A resolved precision (see `resolve_precision`).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def tiles_per_batch(free_bytes, bytes_per_tile, n_tiles, cap=MAX_AUTO_BATCH, fraction=MEMORY_FRACTION):
    """
    Number of tiles per model call that fits in a share of the free GPU memory.

    The largest batch within ``fraction * free_bytes`` sets the number of model calls; the batch is
    then shrunk to spread the tiles evenly over those calls (25 tiles in at most 16 per call become
    13 + 12, not 16 + 9): the same number of calls with a lower memory peak and fewer batch shapes.

    Parameters
    ----------
    free_bytes : int
        Memory available to the model, in bytes.
    bytes_per_tile : int
        Peak memory one tile needs, in bytes (see `measure_tile_memory`).
    n_tiles : int
        Tiles still to run.
    cap : int, optional
        Largest batch allowed.
    fraction : float, optional
        Share of ``free_bytes`` to plan for, leaving room for fragmentation and for the memory that
        grows with the batch less than linearly (cuDNN workspaces).

    Returns
    -------
    int
        Tiles per batch, at least 1 and at most ``min(cap, n_tiles)``.

    Raises
    ------
    ValueError
        If a count is not positive or ``fraction`` is not in (0, 1].

    Examples
    --------
    >>> tiles_per_batch(80 * 2**30, 2**30, 25)   # 56 would fit: all 25 tiles in one call
    25
    >>> tiles_per_batch(20 * 2**30, 2**30, 25)   # 14 would fit: two calls of 13 and 12
    13
    """
    for name, value in (("bytes_per_tile", bytes_per_tile), ("n_tiles", n_tiles), ("cap", cap)):
        if not isinstance(value, numbers.Real) or value <= 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    fit = int(max(free_bytes, 0) * fraction // bytes_per_tile)
    most = max(1, min(int(cap), int(n_tiles), fit))
    calls = math.ceil(n_tiles / most)
    return math.ceil(n_tiles / calls)


def free_memory(device):
    """
    Bytes a new allocation on CUDA ``device`` can take: free device memory plus the memory that
    PyTorch's caching allocator holds but does not use.
    """
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def measure_tile_memory(model, tile_shape):
    """
    Peak CUDA memory that one tile takes through ``model``, in bytes.

    One tile of zeros runs through the model's memory probe (for a diffusion model: one sampler
    step, eager, with the encoder and decoder; the peak does not grow with the number of steps).
    The peak counts everything the call allocates, its fixed workspaces included, so the estimate
    errs on the large side.

    Parameters
    ----------
    model : `~sunpy_superres.models.base.SuperResolutionModel`
        A model on a CUDA device.
    tile_shape : tuple of int
        ``(H, W)`` of a tile in input pixels.

    Returns
    -------
    int
        Bytes, at least 1.
    """
    device = model.device
    probe = model.memory_probe()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe.predict(np.zeros((1, *tile_shape), dtype=np.float32), seeds=[0])
    torch.cuda.synchronize(device)
    return max(1, torch.cuda.max_memory_allocated(device) - before)


def auto_batch_size(model, tile_shape, n_tiles, *, cap=MAX_AUTO_BATCH, fraction=MEMORY_FRACTION):
    """
    Tiles per model call for ``batch_size="auto"``.

    On a CUDA device: measure one tile's peak memory (`measure_tile_memory`) and fit the batch into
    ``fraction`` of the free memory (`tiles_per_batch`). On the CPU: `CPU_BATCH_SIZE` tiles, where
    larger batches do not run faster.

    Parameters
    ----------
    model : `~sunpy_superres.models.base.SuperResolutionModel`
    tile_shape : tuple of int
        ``(H, W)`` of a tile in input pixels.
    n_tiles : int
        Number of tiles of the image.
    cap : int, optional
        Largest batch on a GPU.
    fraction : float, optional
        Share of the free GPU memory to fill.

    Returns
    -------
    int
        Tiles per call, from 1 to ``max(1, n_tiles)``.
    """
    n_tiles = max(1, int(n_tiles))
    if model.device.type != "cuda":
        return min(CPU_BATCH_SIZE, n_tiles)
    per_tile = measure_tile_memory(model, tile_shape)
    return tiles_per_batch(free_memory(model.device), per_tile, n_tiles, cap=cap, fraction=fraction)


class CompiledForward:
    """
    ``torch.compile`` of a module's forward that falls back to eager execution.

    Compilation happens at the first call and needs a working backend (Triton on a GPU, a C++
    compiler on the CPU). Where ``torch.compile`` is missing, or compiling fails, the module runs
    eagerly, with one `RuntimeWarning`; an error of the module itself is raised again by the eager
    call. Shapes are static within a batch, so the graph is compiled with ``dynamic=False`` (one
    graph per batch shape).

    Parameters
    ----------
    module : `torch.nn.Module`
        Module to compile; its parameters are shared, not copied.
    """

    def __init__(self, module):
        self.module = module
        self._compiled = None
        if not hasattr(torch, "compile"):
            self._fallback(AttributeError(f"torch {torch.__version__} has no torch.compile"))
        else:
            try:
                with warnings.catch_warnings():
                    # torch's own import of its JIT front end inside torch.compile (torch 2.13); harmless.
                    warnings.filterwarnings(
                        "ignore",
                        message=r"`torch.jit.script_method` is deprecated",
                        category=DeprecationWarning,
                    )
                    self._compiled = torch.compile(module, dynamic=False)
            except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
                self._fallback(err)

    @property
    def active(self):
        """Whether calls go through the compiled graph (`False` after a fallback to eager)."""
        return self._compiled is not None

    def _fallback(self, err):
        self._compiled = None
        warnings.warn(
            f"torch.compile is not usable here ({type(err).__name__}: {err}); running "
            f"{type(self.module).__name__} eagerly.",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                with warnings.catch_warnings():
                    # Inductor's advice to enable TF32 matrix products: we keep float32 what the
                    # caller asked for (autocast decides the precision), so the advice does not apply.
                    warnings.filterwarnings(
                        "ignore", message=r"TensorFloat32 tensor cores", category=UserWarning
                    )
                    # Dynamo's note on diffusers' lru_cache'd `is_torch_version` check in its
                    # upsampler: a pure function of constant strings, so tracing through is exact.
                    warnings.filterwarnings(
                        "ignore",
                        category=UserWarning,
                        message=r"Dynamo detected a call to a `functools.lru_cache`",
                    )
                    return self._compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - the eager call below re-raises genuine errors
                self._fallback(err)
        return self.module(*args, **kwargs)
