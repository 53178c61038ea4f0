"""Split-conformal calibration of the standard deviation: analytic quantiles and coverage on fresh data."""

import math

import astropy.units as u
import numpy as np
import pytest
from scipy import stats

from sunpy_superres.conformal import TWO_SIGMA_COVERAGE, StdCalibration, fit_std_calibration


def test_quantile_is_the_conformal_rank():
    # 99 pixels with scores 1..99 in one bin: the rank is ceil(100 * 0.9) = 90, so the +-2 std
    # half-width is 90 and the factor 45.
    truth = np.arange(1, 100, dtype=float)
    cal = fit_std_calibration(np.zeros(99) * u.G, np.ones(99) * u.G, truth * u.G, samples=8, coverage=0.9,
                              edges=[0] * u.G)
    assert cal.scales == (45.0,) and cal.n_pixels == (99,)


def test_too_few_pixels_for_the_quantile():
    with pytest.raises(ValueError, match="too few for coverage"):
        fit_std_calibration(np.zeros(10) * u.G, np.ones(10) * u.G, np.ones(10) * u.G, samples=8)


def test_coverage_on_fresh_data_per_bin():
    """A spread too narrow by a different factor in each bin is corrected in each bin."""
    rng = np.random.default_rng(1)

    def draw(n):
        mean = rng.uniform(-1500, 1500, n)
        true_sd = np.where(np.abs(mean) < 100, 5.0, np.where(np.abs(mean) < 500, 20.0, 60.0))
        reported = true_sd / np.where(np.abs(mean) < 100, 2.0, np.where(np.abs(mean) < 500, 5.0, 10.0))
        return mean, reported, mean + rng.normal(0, true_sd)

    cal = fit_std_calibration(*(q * u.G for q in draw(200_000)), samples=8)
    np.testing.assert_allclose(cal.scales, [2.0, 5.0, 10.0], rtol=0.03)
    mean, sd, truth = draw(100_000)
    calibrated = cal.apply(mean * u.G, sd * u.G, 8).to_value(u.G)
    for lo, hi in [(0, 100), (100, 500), (500, np.inf)]:
        sel = (np.abs(mean) >= lo) & (np.abs(mean) < hi)
        covered = np.mean(np.abs(truth - mean)[sel] <= 2 * calibrated[sel])
        assert abs(covered - TWO_SIGMA_COVERAGE) < 0.01


def test_other_sample_counts_follow_student_t():
    cal = StdCalibration(edges_gauss=(0.0,), scales=(1.0,), samples=8)
    t = [stats.t.ppf(0.5 + TWO_SIGMA_COVERAGE / 2, n - 1) * math.sqrt(1 + 1 / n) for n in (4, 8)]
    np.testing.assert_allclose(cal.factors(4), [t[0] / t[1]])
    np.testing.assert_allclose(cal.factors(8), [1.0])
    assert cal.factors(100)[0] < 1 < cal.factors(2)[0]
    with pytest.raises(ValueError, match="at least 2 samples"):
        cal.factors(1)


def test_apply_keeps_units_and_nan_and_round_trips():
    cal = StdCalibration(edges_gauss=(0.0, 100.0), scales=(2.0, 3.0), samples=8, n_pixels=(5, 6), source="test")
    mean = [np.nan, -50.0, 150.0] * u.G
    out = cal.apply(mean, [1.0, 1.0, 1.0] * u.G, 8)
    assert out.unit == u.G
    np.testing.assert_allclose(out.value, [2.0, 2.0, 3.0])
    assert np.isnan(cal.apply(mean, [np.nan, 1, 1] * u.G, 8)[0])
    assert StdCalibration.from_dict(cal.to_dict()) == cal
    assert cal.describe() == "split-conformal N=8 0-100G:2 >100G:3"


@pytest.mark.parametrize(("kwargs", "match"), [({"scales": (0.0,)}, "positive"), ({"samples": 1}, "at least 2"),
                                               ({"edges_gauss": (5.0,)}, "from 0 G"),
                                               ({"scales": (1.0, 2.0)}, "one scale per bin")])
def test_bad_calibrations_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StdCalibration(**{"edges_gauss": (0.0,), "scales": (1.0,), "samples": 8, **kwargs})
