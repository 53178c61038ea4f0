"""
Calibration of the per-pixel standard deviation of a stochastic model, by split conformal prediction.

A diffusion model's samples are draws from its own posterior, whose spread need not match the
actual error (a posterior sampler's spread is often mis-scaled, Angelopoulos et al. 2022 [1]_). The
standard deviation ``s`` of ``N`` samples is calibrated by one factor per field-strength bin, fitted
on held-out pairs: in each bin of ``|mean|``, the normalised scores ``|truth - mean| / s`` of the
calibration pixels are ranked and their split-conformal quantile at level ``1 - alpha``,
``q = score[ceil((n + 1)(1 - alpha))]`` (Vovk et al. 2005; Angelopoulos & Bates 2023 [2]_, sec. 1),
becomes the half-width of the ``+-2 std`` interval: the calibrated standard deviation is ``s * q / 2``.
One bin per field range is the Mondrian (group-conditional) form of conformal prediction: coverage
holds in each bin, not only on average over the quiet Sun, where most pixels are.

The guarantee assumes exchangeable calibration and test pixels; neighbouring pixels of one
magnetogram are correlated, so it is approximate, and coverage on frames the calibration never saw
is the check (`sunpy_superres.evaluation.uncertainty_calibration`). Calibrate on crops of frames
the model was not trained on (training crops have errors smaller than new data) and never on an
evaluation frame.

For another sample count than the calibration's, the factor is carried over with the Student-t
correction of a Gaussian posterior: with ``N`` samples, ``(truth - mean) / s`` follows
``t(N - 1) * sqrt(1 + 1/N)``, so the factor is multiplied by the ratio of that interval's
half-width at ``N`` to the one at the calibration's ``N``.

References
----------
.. [1] Angelopoulos, A. N. et al. 2022, "Image-to-image regression with distribution-free
   uncertainty quantification and applications in imaging", ICML, PMLR 162, 717.
.. [2] Angelopoulos, A. N. & Bates, S. 2023, "Conformal prediction: a gentle introduction",
   Found. Trends Mach. Learn. 16, 494.
"""

import math
from dataclasses import asdict, dataclass

import astropy.units as u
import numpy as np
from scipy import stats

__all__ = ["StdCalibration", "fit_std_calibration", "DEFAULT_BIN_EDGES", "TWO_SIGMA_COVERAGE"]

#: Lower edges of the ``|B|`` bins (the last bin is open): 0-100 G (quiet Sun and noise), 100-500 G
#: (network and plage), above 500 G (active regions).
DEFAULT_BIN_EDGES = (0.0, 100.0, 500.0) * u.G
#: Coverage of ``+-2`` standard deviations of a normal distribution.
TWO_SIGMA_COVERAGE = float(stats.norm.cdf(2) - stats.norm.cdf(-2))


def _t_half_width(samples, coverage):
    """Half-width, in sample standard deviations, of the Gaussian-posterior predictive interval."""
    return float(stats.t.ppf(0.5 + coverage / 2, samples - 1) * math.sqrt(1 + 1 / samples))


@dataclass(frozen=True)
class StdCalibration:
    """
    Factors that turn the sample standard deviation into a calibrated one, per ``|B|`` bin.

    Attributes
    ----------
    edges_gauss : tuple of float
        Lower edges of the ``|mean|`` bins, G (the last bin is open).
    scales : tuple of float
        Factor per bin at ``samples`` samples.
    samples : int
        Samples per pixel of the calibration.
    coverage : float
        Target coverage of ``mean +- 2 std``.
    n_pixels : tuple of int
        Calibration pixels per bin.
    source : str
        What the calibration was fitted on (free text, recorded in model manifests).
    method : str
        ``"split-conformal"``.
    """

    edges_gauss: tuple
    scales: tuple
    samples: int
    coverage: float = TWO_SIGMA_COVERAGE
    n_pixels: tuple = ()
    source: str = ""
    method: str = "split-conformal"

    def __post_init__(self):
        if len(self.edges_gauss) != len(self.scales) or not len(self.scales):
            raise ValueError("a calibration needs one scale per bin")
        if list(self.edges_gauss) != sorted(self.edges_gauss) or self.edges_gauss[0] != 0:
            raise ValueError(f"bin edges must increase from 0 G, got {self.edges_gauss}")
        if not all(s > 0 and math.isfinite(s) for s in self.scales):
            raise ValueError(f"scales must be positive and finite, got {self.scales}")
        if int(self.samples) < 2:
            raise ValueError(f"a calibration needs at least 2 samples per pixel, got {self.samples}")

    def factors(self, samples):
        """
        The factor of each bin for ``samples`` samples (see the module notes).

        Raises
        ------
        ValueError
            If ``samples < 2`` (one sample has no spread to calibrate).
        """
        if samples < 2:
            raise ValueError("the standard deviation needs at least 2 samples")
        ratio = _t_half_width(samples, self.coverage) / _t_half_width(self.samples, self.coverage)
        return np.asarray(self.scales, dtype=np.float64) * ratio

    def apply(self, mean, std, samples):
        """
        The calibrated standard deviation.

        Parameters
        ----------
        mean, std : `~astropy.units.Quantity`
            Mean and standard deviation of ``samples`` samples, per pixel, in G (or Mx/cm2).
        samples : int
            How many samples they come from.

        Returns
        -------
        `~astropy.units.Quantity`
            ``std`` times the factor of the ``|mean|`` bin of each pixel; NaN stays NaN.
        """
        mean, std = u.Quantity(mean), u.Quantity(std)
        absb = np.abs(mean.to_value(u.G))
        index = np.clip(np.searchsorted(np.asarray(self.edges_gauss), np.nan_to_num(absb), side="right") - 1,
                        0, len(self.scales) - 1)
        return std * self.factors(samples)[index]

    def to_dict(self):
        """A JSON-ready dict (for a model manifest)."""
        d = asdict(self)
        d["edges_gauss"], d["scales"], d["n_pixels"] = (list(map(float, self.edges_gauss)),
                                                         list(map(float, self.scales)),
                                                         list(map(int, self.n_pixels)))
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict`."""
        d = dict(d)
        return cls(edges_gauss=tuple(d.pop("edges_gauss")), scales=tuple(d.pop("scales")),
                   samples=int(d.pop("samples")), n_pixels=tuple(d.pop("n_pixels", ())), **d)

    def describe(self):
        """One line for a FITS header: method, sample count and factors per bin."""
        edges = list(self.edges_gauss)
        bins = [f"{a:g}-{b:g}G" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">{edges[-1]:g}G"]
        return f"{self.method} N={self.samples} " + " ".join(
            f"{b}:{s:.3g}" for b, s in zip(bins, self.scales, strict=True))


@u.quantity_input
def fit_std_calibration(mean: u.G, std: u.G, truth: u.G, *, samples, coverage=TWO_SIGMA_COVERAGE,
                        edges: u.G = DEFAULT_BIN_EDGES, source=""):
    """
    Fit a `StdCalibration` by split conformal prediction, one quantile per ``|mean|`` bin.

    Parameters
    ----------
    mean, std, truth : `~astropy.units.Quantity`
        Arrays of any one shape (e.g. stacked crops): the mean and standard deviation of
        ``samples`` samples of the model, and the true field, in G. NaN pixels are left out.
    samples : int
        Samples behind ``mean`` and ``std``.
    coverage : float, optional
        Target coverage of ``mean +- 2 std`` (default that of a normal distribution, 0.9545).
    edges : `~astropy.units.Quantity`, optional
        Lower edges of the ``|mean|`` bins, from 0 G.
    source : str, optional
        What the calibration pixels are, for the record.

    Returns
    -------
    `StdCalibration`

    Raises
    ------
    ValueError
        If shapes differ, a bin has too few pixels for the quantile (``(n + 1)(1 - alpha) > n``),
        or ``coverage`` is not in (0, 1).
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
    mean, std, truth = (np.asarray(q.to_value(u.G), dtype=np.float64) for q in (mean, std, truth))
    if not mean.shape == std.shape == truth.shape:
        raise ValueError(f"mean, std and truth must have one shape, got {mean.shape}, {std.shape}, "
                         f"{truth.shape}")
    ok = np.isfinite(mean) & np.isfinite(std) & np.isfinite(truth)
    tiny = np.finfo(np.float64).tiny
    score = np.abs(truth[ok] - mean[ok]) / np.maximum(std[ok], tiny)
    absb = np.abs(mean[ok])
    edge_values = np.asarray(edges.to_value(u.G), dtype=np.float64)
    upper = list(edge_values[1:]) + [np.inf]
    scales, counts = [], []
    for lo, hi in zip(edge_values, upper, strict=True):
        s = np.sort(score[(absb >= lo) & (absb < hi)])
        n = s.size
        rank = math.ceil((n + 1) * coverage)
        if rank > n:
            raise ValueError(f"the bin {lo:g}-{hi:g} G has {n} calibration pixels, too few for coverage "
                             f"{coverage:.4g}; use more or larger calibration crops, or other bin edges")
        scales.append(float(s[rank - 1]) / 2.0)  # +-2 calibrated std = the conformal quantile
        counts.append(int(n))
    return StdCalibration(edges_gauss=tuple(map(float, edge_values)), scales=tuple(scales),
                          samples=int(samples), coverage=float(coverage), n_pixels=tuple(counts), source=str(source))
