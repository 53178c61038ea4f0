"""The model specs the benchmarks take (``NAME[:SAMPLER:STEPS][@PRECISION]``, benchmarks/bench_archive.py)."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def load():
    if not BENCHMARKS.is_dir():
        pytest.skip("not a source checkout")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_archive import load
    finally:
        sys.path.remove(str(BENCHMARKS))
    return load


def test_a_spec_sets_the_sampler_and_the_precision(load):
    plain = load("default", "cpu")
    assert (plain.name, plain.sampler, plain.steps, plain.precision) == (
        "ldm-res",
        "dpm-solver++",
        10,
        "fp32",
    )
    fast = load("default:distilled:4@bf16", "cpu")
    assert (fast.sampler, fast.network_evaluations, fast.precision) == ("distilled", 4, "bf16")
    assert load("ldm-res:ddim:5", "cpu").steps == 5
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        load("default@fp8", "cpu")
