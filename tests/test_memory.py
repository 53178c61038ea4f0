"""Freed memory kept for reuse (sunpy_superres.memory): the glibc calls, and their effect where glibc is."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from sunpy_superres import memory
from sunpy_superres.memory import KEEP_FREED_MEMORY_ENV, keep_freed_memory

GLIBC = memory._glibc() is not None

# Run in a fresh process, whose heap holds no large free block yet (this one's may, kept by an
# earlier call). glibc's own calls, as under a tensor's storage: NumPy asks for transparent huge pages
# for large arrays, which would hide the faults counted. The block is larger than TRIM_ABOVE, so that
# leaving the block gives it back.
FAULTS_SCRIPT = """
import ctypes, json, resource
from sunpy_superres import memory

libc = memory._glibc()
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = memory.TRIM_ABOVE + 64 * 2**20


def faults(cycles=4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


outside = faults()
with memory.keep_freed_memory():
    faults(1)  # the heap grows to hold the block
    inside = faults()
    kept = resident()
given_back = kept - resident()
print(json.dumps(dict(pages=size // resource.getpagesize(), outside=outside, inside=inside,
                      given_back=given_back, size=size)))
"""


class RecordingLibc:
    """Stands in for the C library: records mallopt and malloc_trim calls."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def libc(monkeypatch):
    fake = RecordingLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: fake)
    monkeypatch.delenv(KEEP_FREED_MEMORY_ENV, raising=False)
    return fake


def test_outermost_block_sets_and_restores(libc):
    """The first entry keeps, a nested entry does nothing, the last exit restores and trims."""
    keep = [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)]
    after = [
        ("mallopt", -3, 32 * 2**20),
        ("mallopt", -1, 64 * 2**20),
        ("mallopt", -4, 65536),
        ("malloc_trim", 0),
    ]
    with keep_freed_memory():
        assert libc.calls == keep
        with keep_freed_memory():
            pass
        assert libc.calls == keep
    assert libc.calls == keep + after
    with pytest.raises(KeyError), keep_freed_memory():  # an error in the block restores too
        raise KeyError("boom")
    assert libc.calls == 2 * (keep + after)


def test_blocks_from_threads_overlap(libc):
    """Two threads' blocks overlapping: glibc is restored once, when the last of them ends."""
    entered, release = threading.Barrier(3), threading.Event()

    def work():
        with keep_freed_memory():
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert [c[0] for c in libc.calls] == ["mallopt", "mallopt"]
    release.set()
    for t in threads:
        t.join()
    assert [c[0] for c in libc.calls] == ["mallopt"] * 5 + ["malloc_trim"]


@pytest.mark.parametrize(("free", "trimmed"), [(memory.TRIM_ABOVE, False), (memory.TRIM_ABOVE + 1, True)])
def test_free_pages_given_back_above_threshold(libc, free, trimmed):
    """A block that leaves at most TRIM_ABOVE free keeps it for the next (a small map's call)."""
    libc.mallinfo2 = lambda: memory._Mallinfo2(fordblks=free)
    with keep_freed_memory():
        pass
    assert (libc.calls[-1] == ("malloc_trim", 0)) is trimmed
    assert [c[0] for c in libc.calls].count("mallopt") == 5


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_environment_variable_turns_it_off(libc, monkeypatch, value):
    monkeypatch.setenv(KEEP_FREED_MEMORY_ENV, value)
    with keep_freed_memory():
        pass
    assert libc.calls == []


def test_no_glibc_no_calls(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    with keep_freed_memory():
        block = np.ones(8)
    assert block.sum() == 8


@pytest.mark.skipif(not GLIBC, reason="needs Linux with glibc")
def test_freed_pages_are_reused_then_given_back(monkeypatch):
    """Inside the block a freed block's pages serve the next block; outside each block faults anew;
    leaving the block gives the kept memory back."""
    monkeypatch.delenv(KEEP_FREED_MEMORY_ENV, raising=False)
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    assert m["outside"] > 3 * m["pages"]  # every cycle faults in all its pages
    assert m["inside"] < 0.25 * m["pages"]  # none does
    assert m["given_back"] > m["size"] // 2


@pytest.mark.parametrize("samples", [1, 3])
def test_superresolve_runs_its_model_with_freed_memory_kept(libc, samples):
    """The model's calls run inside the block, which ends with the call (glibc restored and trimmed)."""
    from sunpy_superres import superresolve

    from .helpers import NoisyNearest, synthetic_map

    depths = []

    class Recording(NoisyNearest):
        def _forward(self, x, **kwargs):
            depths.append(memory._depth)
            return super()._forward(x, **kwargs)

    out = superresolve(synthetic_map((40, 40), value=5.0), model=Recording(device="cpu"), samples=samples)
    assert out.data.shape == (160, 160)
    assert depths and set(depths) == {1}
    assert memory._depth == 0 and libc.calls[-1] == ("malloc_trim", 0)
    assert [c[0] for c in libc.calls].count("malloc_trim") == 1
