"""
Freed memory kept for reuse while networks run on the CPU (Linux with glibc).

A large block that glibc's heap cannot serve (above its mmap threshold: 128 KiB at first, up to
32 MiB as the threshold adapts) gets fresh pages of its own from the system, which go back when the
block is freed. A network on a 256x256 tile makes and frees such blocks at every layer (one
concatenation of the regression's features at 512x512 holds 67 MB), so each of their pages is
faulted in, zeroed by the kernel, and given back, at every layer of every tile.
`keep_freed_memory` lets glibc keep them for the next layer and tile instead.

Written by hand: neither torch nor the standard library exposes ``mallopt``, and torch has no
caching allocator for CPU tensors.
"""

import contextlib
import ctypes
import functools
import os
import platform
import threading

__all__ = ["keep_freed_memory", "KEEP_FREED_MEMORY_ENV", "TRIM_ABOVE"]

#: Environment variable that turns `keep_freed_memory` off when set to ``0``, ``false``, ``no`` or ``off``.
KEEP_FREED_MEMORY_ENV = "SUNPY_SUPERRES_KEEP_FREED_MEMORY"
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
# While kept: no block gets pages of its own, and free memory at the heap's top is not given back.
_KEEP = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
# After: the state glibc's own dynamic thresholds reach in a process that has freed a block of 32 MiB
# (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; the trim threshold twice it), its block count the default.
_AFTER = ((_M_MMAP_THRESHOLD, 32 * 2**20), (_M_TRIM_THRESHOLD, 64 * 2**20), (_M_MMAP_MAX, 65536))
#: Free heap memory above which leaving the outermost block gives the free pages back, in bytes. The
#: calls of a map of up to about 128x128 free less, and keep it for the next call: given back, it was
#: faulted in again, and such a call ran up to 10 % slower than without keeping (2-core EPYC).
TRIM_ABOVE = 256 * 2**20
_lock = threading.Lock()
_depth = 0


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h, glibc 2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _glibc():
    """The C library, where it is glibc with ``mallopt`` and ``malloc_trim``; else `None`."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _Mallinfo2
    return libc


def _free_heap_bytes(libc):
    """Bytes free in glibc's heaps (``mallinfo2().fordblks``); unknown (infinite) before glibc 2.33."""
    return libc.mallinfo2().fordblks if hasattr(libc, "mallinfo2") else float("inf")


def _wanted():
    return os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def keep_freed_memory():
    """
    Context manager in which glibc keeps freed memory for reuse.

    Inside the block glibc serves every allocation from its heap, which keeps what is freed
    (``mallopt(M_MMAP_MAX, 0)`` and a trim threshold of 2 GiB), so that the next tile reuses the
    pages of the last one instead of faulting in new ones. On leaving the outermost block, glibc
    is left as its own dynamic thresholds leave a process that has freed a 32 MiB block (blocks
    above 32 MiB get pages of their own again, up to 64 MiB of free memory stays at the heap's top),
    and if more than `TRIM_ABOVE` (256 MiB) of its heaps is free, their free pages go back to the
    system (``malloc_trim``).

    The arithmetic is untouched, so the results are the same to the bit. The price is the memory
    kept during the block (a full MDI disk with the default: 1.59 GiB at the peak against 1.15 GiB,
    42.5 s against 58.5 s on the 2-core EPYC; ``benchmarks/bench_memory.py``). A thread other than
    the main one allocates from an arena of its own, whose heaps take blocks of at most 64 MiB, so
    there the gain is partial unless the process runs with the environment variable
    ``MALLOC_ARENA_MAX=1`` (`sunpy_superres.batch` starts its worker processes so). Blocks nest and
    may be entered from several threads at once: the outermost exit restores.

    Elsewhere (macOS, Windows, another C library), or with the environment variable
    ``SUNPY_SUPERRES_KEEP_FREED_MEMORY=0``, it does nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_superres.memory import keep_freed_memory
    >>> with keep_freed_memory():
    ...     for _ in range(3):
    ...         block = np.ones(2**23)  # 64 MiB, the same pages each time
    >>> float(block.sum())
    8388608.0
    """
    global _depth
    libc = _glibc() if _wanted() else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            for param, value in _KEEP:
                libc.mallopt(param, value)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in _AFTER:
                    libc.mallopt(param, value)
                if _free_heap_bytes(libc) > TRIM_ABOVE:
                    libc.malloc_trim(0)
