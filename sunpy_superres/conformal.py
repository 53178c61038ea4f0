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

Two refinements keep ``+-1 std`` meaningful as well as ``+-2 std``:

* **Smoothing of the variance.** The standard deviation of a few samples is itself noisy (from 8
  samples, its relative error is about 25 %), which makes the normalised error heavy-tailed: with one
  factor fitted at ``+-2 std``, ``+-1 std`` then covers about 0.77 instead of 0.68 even for an exact
  Gaussian posterior. The posterior variance varies smoothly between neighbouring pixels, so the
  sample variance is averaged with a Gaussian window of ``smoothing`` output pixels (NaN-aware)
  before the factor is applied; the width is chosen on part of the calibration set.
* **Factors per sample count.** The spread of ``N`` samples, and the error of their mean, depend on
  ``N``; factors are fitted at several counts (from the first ``N`` of the calibration samples) and
  used at the nearest one, carried over to another count with the Student-t correction of a
  Gaussian posterior (with ``N`` samples, ``(truth - mean) / s`` follows
  ``t(N - 1) * sqrt(1 + 1/N)``).

A third step keeps the coverage in ranges of the *true* field, where the maps are read:

* **Ranges of the true field.** The bins are of the output ``|mean|``, the only field known at run
  time; the coverage is judged in ranges of the true ``|B|`` (0-100 G quiet Sun, 100-500 G network
  and plage, above 500 G active regions). The two differ where it matters: a true 200 G element
  that the 2" input diluted comes out at 60 G, in a bin of small spread, with a large error, so
  ``+-2 std`` covered 0.91 of the true 100-500 G pixels once every output bin covered 0.9545 (the
  default's calibration crops). So, per true range in increasing order, the factors of the output
  bins that reach above half the range's lower edge (the field such an element can be diluted to) are
  raised by the smallest common multiplier (at least 1) that gives the range's true pixels the
  target coverage on the calibration images (its conformal rank). The multipliers are fitted on
  every calibration image, those that chose the smoothing and floors too: the strong field of a
  calibration set lies in a few active regions, so its coverage varies more from crop to crop than
  its pixel count suggests (fitted on the half of a default's crops that fit the factors, the
  multipliers gave ``+-2 std`` 0.938 of the true pixels above 500 G there and 0.907 on the other
  half). Raising factors only widens
  intervals, so the per-bin guarantee still holds; the coverage in ranges of the truth is an
  empirical property of the calibration images, not a guarantee (no interval that does not know the
  truth can promise coverage conditional on it).

And the factors may follow the noise level asked of the output:

* **Noise level.** A noise-conditioned model is asked for the quiet-Sun noise of its output, and the
  ratio of the error to the spread depends on it: with one set of factors fitted on crops of a
  4.84 G and a 3.53 G frame, each at its own level, ``+-2 std`` covered 0.947 of the quiet pixels of
  the first and 0.964 of the second (the default's calibration crops). Given each calibration
  image's level, the factors of each level's own images, in each bin with at least
  `MIN_LEVEL_PIXELS` of their pixels, are stored as ratios to the pooled ones (1 elsewhere), and a
  run asking for a level takes the ratios interpolated linearly between the fitted levels (the
  nearest one outside them). The ratios are fitted on the factors before the ranges of the true
  field raise them, and the ranges are raised with each calibration image's factors at its own
  level, the factors a run at that level applies.

And, where the errors are heavy-tailed, the level itself may give a little:

* **Two levels.** A user reads both ``+-1 std`` and ``+-2 std``, and the error of a mean of samples
  is heavier-tailed than a normal one (on the quiet Sun its kurtosis is 5-20): with ``+-2 std`` at
  0.9545, ``+-1 std`` covered 0.73 of the default's calibration pixels, not 0.68, whatever the
  smoothing and floors. No single scale gives both levels their normal coverage there, so with
  ``min_coverage`` the target of ``+-2 std`` is itself chosen, between ``min_coverage`` and
  ``coverage``, to minimise the calibration error of Kuleshov et al. (2018) [3]_ at those two
  levels, ``(c1 - 0.6827)**2 + (c2 - 0.9545)**2`` for the observed coverages ``c1`` and ``c2``: on
  the choosing images jointly with the smoothing and floors, and again for each range of the true
  field when its multiplier is fitted. The conformal guarantee then holds at the chosen level,
  which is recorded (``coverage``), and never below ``min_coverage``.

The guarantee assumes exchangeable calibration and test pixels; neighbouring pixels of one
magnetogram are correlated, so it is approximate, and coverage on frames the calibration never saw
is the check (`sunpy_superres.evaluation.uncertainty_calibration`). Prefer crops of frames the
model was not trained on (training crops can have errors smaller than new data), check the coverage
on held-out frames, and never calibrate on an evaluation frame. The shipped default is calibrated on
crops of its training frames (the only frames its training left, apart from the held-out one), and
its model card reports the held-out coverage.

References
----------
.. [1] Angelopoulos, A. N. et al. 2022, "Image-to-image regression with distribution-free
   uncertainty quantification and applications in imaging", ICML, PMLR 162, 717.
.. [2] Angelopoulos, A. N. & Bates, S. 2023, "Conformal prediction: a gentle introduction",
   Found. Trends Mach. Learn. 16, 494.
.. [3] Kuleshov, V., Fenner, N. & Ermon, S. 2018, "Accurate uncertainties for deep learning using
   calibrated regression", ICML, PMLR 80, 2796.
"""

import math
from dataclasses import asdict, dataclass

import astropy.units as u
import numpy as np

__all__ = [
    "StdCalibration",
    "fit_std_calibration",
    "smooth_std",
    "DEFAULT_BIN_EDGES",
    "TRUTH_RANGES",
    "MIN_LEVEL_PIXELS",
    "TWO_SIGMA_COVERAGE",
    "ONE_SIGMA_COVERAGE",
    "COVERAGE_STEP",
]

#: Lower edges of the ``|mean|`` bins of a calibration (the last bin is open). Finer than the three
#: ranges the coverage is reported in (0-100 G quiet Sun, 100-500 G network and plage, above 500 G
#: active regions): on calibration crops the ratio of the error to the spread of the samples grew from
#: 0.6 at ``|mean|`` < 10 G to 1.0 at 50-100 G, and one factor for the whole quiet Sun mixed them into
#: heavy tails (``+-1 std`` covered 0.78 once ``+-2 std`` covered 0.95).
DEFAULT_BIN_EDGES = (0.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0) * u.G
#: Lower edges of the ranges of the true ``|B|`` in which the coverage is also kept (the last range
#: is open): the quiet Sun, network and plage, active regions, as
#: `sunpy_superres.evaluation.uncertainty_calibration` reports them.
TRUTH_RANGES = (0.0, 100.0, 500.0) * u.G
#: Fewest of a noise level's fitting pixels in a bin for that level to get its own factor there: the
#: conformal rank at 0.9545 needs only 22, but its quantile must be steady, and a bin of a quiet
#: frame's strong field holds a few hundred pixels.
MIN_LEVEL_PIXELS = 2000
#: Coverage of ``+-2`` standard deviations of a normal distribution: ``erf(2 / sqrt(2))``.
TWO_SIGMA_COVERAGE = math.erf(2 / math.sqrt(2))
#: Coverage of ``+-1`` standard deviation of a normal distribution.
ONE_SIGMA_COVERAGE = math.erf(1 / math.sqrt(2))
#: Spacing of the candidate targets of ``+-2 std`` between ``min_coverage`` and ``coverage``.
COVERAGE_STEP = 0.0025


def _two_level_error(one, two):
    """Calibration error (Kuleshov et al. 2018) at ``+-1`` and ``+-2 std``, from their coverages."""
    return (one - ONE_SIGMA_COVERAGE) ** 2 + (two - TWO_SIGMA_COVERAGE) ** 2


def _coverage_candidates(coverage, min_coverage):
    """Targets of ``+-2 std`` to choose from: ``coverage`` alone, or a grid down to ``min_coverage``."""
    if min_coverage is None:
        return [float(coverage)]
    steps = int(math.floor((coverage - min_coverage) / COVERAGE_STEP + 1e-9))
    return [float(coverage - k * COVERAGE_STEP) for k in range(steps + 1)] + (
        [float(min_coverage)] if coverage - steps * COVERAGE_STEP > min_coverage + 1e-12 else []
    )


def _t_half_width(samples, coverage):
    """Half-width, in sample standard deviations, of the Gaussian-posterior predictive interval."""
    from scipy import stats  # half a second to import: only when a calibration is fitted

    return float(stats.t.ppf(0.5 + coverage / 2, samples - 1) * math.sqrt(1 + 1 / samples))


def gaussian_filter(image, sigma):
    """
    ``scipy.ndimage.gaussian_filter(image, (0, ..., sigma, sigma), mode="nearest")`` by OpenCV.

    The same kernel (truncated at 4 ``sigma``, normalised) and edge (the nearest pixel repeated),
    equal to float64 rounding, 4 to 10 times faster on a full disk: `cv2.GaussianBlur` runs on
    several threads. Each 2-D image of a stack ``(..., ny, nx)`` is filtered alone.
    """
    import cv2  # here, not at the top: OpenCV costs `import sunpy_superres` a tenth of a second

    image = np.ascontiguousarray(image, dtype=np.float64)
    size = 2 * int(4.0 * sigma + 0.5) + 1
    out = np.empty_like(image)
    for plane, dst in zip(
        image.reshape(-1, *image.shape[-2:]), out.reshape(-1, *image.shape[-2:]), strict=True
    ):
        cv2.GaussianBlur(
            plane, (size, size), dst=dst, sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE
        )
    return out


def smooth_std(std, smoothing):
    """
    Standard deviation from the sample variance averaged over a Gaussian window.

    Parameters
    ----------
    std : `numpy.ndarray`
        ``(..., ny, nx)`` standard deviations; NaN pixels are left out of the average and stay NaN.
    smoothing : float
        Standard deviation of the Gaussian window in pixels (0: ``std`` unchanged).

    Returns
    -------
    `numpy.ndarray`
        float64, the shape of ``std``.
    """
    std = np.asarray(std, dtype=np.float64)
    if smoothing <= 0:
        return std.copy()
    valid = np.isfinite(std)
    # Normalised convolution: the window's weight that falls on valid pixels is divided out. (In
    # place where it can be: a full disk's float64 maps are 134 MB each.)
    square = np.where(valid, std, 0.0)
    square *= square
    out = gaussian_filter(square, smoothing)
    del square
    weight = gaussian_filter(valid.astype(np.float64), smoothing)
    np.maximum(weight, 1e-12, out=weight)
    out /= weight
    np.sqrt(out, out=out)
    out[~valid] = np.nan
    return out


@dataclass(frozen=True)
class StdCalibration:
    """
    Factors that turn the sample standard deviation into a calibrated one, per ``|B|`` bin.

    Attributes
    ----------
    edges_gauss : tuple of float
        Lower edges of the ``|mean|`` bins, G (the last bin is open).
    samples : tuple of int
        Sample counts at which factors were fitted, increasing.
    scales : tuple of tuple of float
        Per sample count, the factor of each bin.
    smoothing : float
        Gaussian window (output pixels) over which the sample variance is averaged first (0: none).
    floors_gauss : tuple of float
        Per bin, a floor added in quadrature to the smoothed standard deviation before the factor, G
        (empty: none): ``factor * sqrt(std**2 + floor**2)``.
    coverage : float
        Target coverage of ``mean +- 2 std`` (with ``min_coverage``, the one chosen).
    n_pixels : tuple of int
        Calibration pixels per bin.
    truth_ranges_gauss : tuple of float
        Lower edges of the ranges of the true ``|B|`` whose coverage raised the factors, G (empty:
        none; see the module notes).
    multipliers : tuple of tuple of float
        Per sample count, the multiplier of each of those ranges (1: that range was covered
        already); the factors in ``scales`` include them.
    noise_levels_gauss : tuple of float
        Output noise levels (G, increasing) at which ratios were fitted (empty: the factors do not
        depend on the level; see the module notes).
    noise_ratios : tuple of tuple of tuple of float
        Per noise level, per sample count, per bin: the ratio of that level's factor to the pooled one.
    source : str
        What the calibration was fitted on (free text, recorded in model manifests).
    method : str
        ``"split-conformal"``.
    antithetic : bool or str
        Whether the samples it was fitted on were drawn in antithetic pairs (the ``antithetic``
        option of `~sunpy_superres.superresolve`: `True`, or ``"polarity"`` for pairs formed by
        reversing the input's polarity): the spread of such samples, and the error of their mean,
        differ from those of independent ones, so the factors hold for that design only.
    symmetric : bool
        Whether they were drawn under the input's flips (the ``symmetric`` option of
        `~sunpy_superres.superresolve`): the factors hold for that design only, too.
    min_coverage : float or None
        The lowest target of ``+-2 std`` the fit could choose to bring ``+-1 std`` nearer its normal
        coverage (None: the target was fixed; see the module notes).
    """

    edges_gauss: tuple
    samples: tuple
    scales: tuple
    smoothing: float = 0.0
    floors_gauss: tuple = ()
    coverage: float = TWO_SIGMA_COVERAGE
    n_pixels: tuple = ()
    truth_ranges_gauss: tuple = ()
    multipliers: tuple = ()
    noise_levels_gauss: tuple = ()
    noise_ratios: tuple = ()
    source: str = ""
    method: str = "split-conformal"
    antithetic: bool | str = False
    symmetric: bool = False
    min_coverage: float | None = None

    def __post_init__(self):
        if not (isinstance(self.antithetic, bool) or self.antithetic == "polarity"):
            raise ValueError(f"antithetic must be True, False or 'polarity', got {self.antithetic!r}")
        if not 0 < self.coverage < 1 or (
            self.min_coverage is not None and not 0 < self.min_coverage <= self.coverage
        ):
            raise ValueError(
                f"coverage must be in (0, 1) and min_coverage in (0, coverage], got {self.coverage} and "
                f"{self.min_coverage}"
            )
        if (
            list(self.edges_gauss) != sorted(self.edges_gauss)
            or not self.edges_gauss
            or self.edges_gauss[0] != 0
        ):
            raise ValueError(f"bin edges must increase from 0 G, got {self.edges_gauss}")
        if not self.samples or list(self.samples) != sorted(set(self.samples)) or min(self.samples) < 2:
            raise ValueError(f"sample counts must increase from at least 2, got {self.samples}")
        if len(self.scales) != len(self.samples) or any(len(s) != len(self.edges_gauss) for s in self.scales):
            raise ValueError("a calibration needs one scale per bin for every sample count")
        if not all(x > 0 and math.isfinite(x) for s in self.scales for x in s):
            raise ValueError(f"scales must be positive and finite, got {self.scales}")
        if not (self.smoothing >= 0 and math.isfinite(self.smoothing)):
            raise ValueError(f"smoothing must be a non-negative number of pixels, got {self.smoothing}")
        if self.floors_gauss and (
            len(self.floors_gauss) != len(self.edges_gauss)
            or not all(f >= 0 and math.isfinite(f) for f in self.floors_gauss)
        ):
            raise ValueError(f"floors must be one non-negative value (G) per bin, got {self.floors_gauss}")
        levels = list(self.noise_levels_gauss)
        if levels != sorted(set(levels)) or len(self.noise_ratios) != len(levels):
            raise ValueError(f"noise levels must increase, with one set of ratios each, got {levels}")
        if any(
            len(r) != len(self.samples) or any(len(x) != len(self.edges_gauss) for x in r)
            for r in self.noise_ratios
        ) or not all(x > 0 and math.isfinite(x) for r in self.noise_ratios for c in r for x in c):
            raise ValueError("noise ratios must be positive, one per bin for every sample count")

    def factors(self, samples, noise_level=None):
        """
        The factor of each bin for ``samples`` samples (see the module notes).

        Parameters
        ----------
        samples : int
            Number of samples.
        noise_level : `~astropy.units.Quantity` or float, optional
            Output noise level asked of the model (G); without it, or without fitted levels, the
            pooled factors.

        Raises
        ------
        ValueError
            If ``samples < 2`` (one sample has no spread to calibrate).
        """
        k, factors = self._pooled(samples)
        if noise_level is None or not self.noise_levels_gauss:
            return factors
        level = u.Quantity(noise_level, u.G).to_value(u.G)
        return factors * _level_ratios(self.noise_levels_gauss, self.noise_ratios, k, level)

    def _pooled(self, samples):
        """``(k, factors)``: the fitted sample count nearest ``samples`` and its factors, for ``samples``."""
        if samples < 2:
            raise ValueError("the standard deviation needs at least 2 samples")
        k = int(np.argmin([abs(math.log(samples / n)) for n in self.samples]))
        ratio = _t_half_width(samples, self.coverage) / _t_half_width(self.samples[k], self.coverage)
        return k, np.asarray(self.scales[k], dtype=np.float64) * ratio

    def _pixel_factors(self, samples, level, index):
        """The factor of each pixel, of bin ``index`` and noise level ``level`` (G, an array like it)."""
        k, pooled = self._pooled(samples)
        factors = pooled[index]
        if not self.noise_levels_gauss:
            return factors
        level = np.broadcast_to(level, index.shape)
        table = _ratio_table(self.noise_ratios, k)
        for b in np.unique(index):
            inside = index == b
            factors[inside] *= np.interp(level[inside], self.noise_levels_gauss, table[:, b])
        return factors

    def apply(self, mean, std, samples, noise_level=None):
        """
        The calibrated standard deviation.

        Parameters
        ----------
        mean, std : `~astropy.units.Quantity`
            ``(..., ny, nx)`` mean and standard deviation of ``samples`` samples, per pixel, in G
            (or Mx/cm2).
        samples : int
            How many samples they come from.
        noise_level : `~astropy.units.Quantity` or float, or an array of them, optional
            Output noise level the samples were asked for (G), for a calibration fitted per level:
            one, or one per pixel (broadcast against ``mean``) where parts of the map were asked
            for different levels.

        Returns
        -------
        `~astropy.units.Quantity`
            ``std`` smoothed (`smooth_std`), its bin's floor added in quadrature, times the factor of
            the ``|mean|`` bin of each pixel, in the unit of ``std``; NaN stays NaN.
        """
        mean, std = u.Quantity(mean), u.Quantity(std)
        index = _bin_index(np.abs(mean.to_value(u.G)), self.edges_gauss)
        smooth = smooth_std(std.to_value(u.G), self.smoothing)  # a new array: changed in place below
        if self.floors_gauss:
            np.hypot(smooth, np.asarray(self.floors_gauss, dtype=np.float64)[index], out=smooth)
        if noise_level is not None and np.ndim(noise_level):
            smooth *= self._pixel_factors(samples, u.Quantity(noise_level, u.G).to_value(u.G), index)
        else:
            smooth *= self.factors(samples, noise_level)[index]
        return u.Quantity(smooth, u.G, copy=False).to(std.unit)

    def to_dict(self):
        """A JSON-ready dict (for a model manifest)."""
        d = asdict(self)
        d["edges_gauss"] = [float(x) for x in self.edges_gauss]
        d["samples"] = [int(n) for n in self.samples]
        d["scales"] = [[float(x) for x in s] for s in self.scales]
        d["n_pixels"] = [int(n) for n in self.n_pixels]
        d["floors_gauss"] = [float(f) for f in self.floors_gauss]
        d["truth_ranges_gauss"] = [float(x) for x in self.truth_ranges_gauss]
        d["multipliers"] = [[float(x) for x in m] for m in self.multipliers]
        d["noise_levels_gauss"] = [float(x) for x in self.noise_levels_gauss]
        d["noise_ratios"] = [[[float(x) for x in c] for c in r] for r in self.noise_ratios]
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict`."""
        d = dict(d)
        return cls(
            edges_gauss=tuple(d.pop("edges_gauss")),
            samples=tuple(d.pop("samples")),
            scales=tuple(tuple(s) for s in d.pop("scales")),
            n_pixels=tuple(d.pop("n_pixels", ())),
            floors_gauss=tuple(d.pop("floors_gauss", ())),
            truth_ranges_gauss=tuple(d.pop("truth_ranges_gauss", ())),
            multipliers=tuple(tuple(m) for m in d.pop("multipliers", ())),
            noise_levels_gauss=tuple(d.pop("noise_levels_gauss", ())),
            noise_ratios=tuple(tuple(tuple(c) for c in r) for r in d.pop("noise_ratios", ())),
            **d,
        )

    def describe(self, samples, noise_level=None):
        """
        One line for a FITS header: method, smoothing, the noise level when the factors depend on it,
        and the factors per bin at ``samples``.
        """
        edges = list(self.edges_gauss)
        bins = [f"{a:g}-{b:g}G" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">{edges[-1]:g}G"]
        floors = self.floors_gauss or (0.0,) * len(bins)
        level = ""
        if noise_level is not None and self.noise_levels_gauss:
            level = f"noise={u.Quantity(noise_level, u.G).to_value(u.G):.3g}G "
        pairs = {True: "antithetic ", "polarity": "antithetic=polarity "}.get(self.antithetic, "")
        design = pairs + ("symmetric " if self.symmetric else "")
        target = f"cov={self.coverage:.4g} " if self.min_coverage is not None else ""
        return f"conformal N={samples} {design}{target}sm={self.smoothing:g}px {level}" + " ".join(
            f"{b}:{s:.3g}" + (f"+{f:g}G" if f else "")
            for b, s, f in zip(bins, self.factors(samples, noise_level), floors, strict=True)
        )


def _bin_index(absb, edges):
    """
    The bin of each ``|B|`` among lower ``edges`` (increasing; the last bin open), NaN in the first.

    ``np.searchsorted(edges, absb, side="right") - 1`` clipped to the bins, as one comparison per
    edge counted in int8: a full disk's 16.8 million pixels in a few hundredths of a second where
    the sorted search took tenths.
    """
    index = np.zeros(np.shape(absb), dtype=np.int8 if len(edges) <= 128 else np.intp)
    for edge in edges[1:]:
        index += absb >= edge
    return index


def _bins(mean, std, truth, edges):
    """Per ``|mean|`` bin: the absolute errors and standard deviations of its valid pixels."""
    ok = np.isfinite(mean) & np.isfinite(std) & np.isfinite(truth)
    err, sd, absb = np.abs(truth[ok] - mean[ok]), std[ok], np.abs(mean[ok])
    upper = list(edges[1:]) + [np.inf]
    return [
        (err[(absb >= lo) & (absb < hi)], sd[(absb >= lo) & (absb < hi)], lo, hi)
        for lo, hi in zip(edges, upper, strict=True)
    ]


def _conformal_scale(err, sd, floor, coverage, lo, hi):
    """Split-conformal factor of one bin: its ``+-2 std`` half-width in units of ``hypot(sd, floor)``."""
    score = np.sort(err / np.maximum(np.hypot(sd, floor), np.finfo(np.float64).tiny))
    n = score.size
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        raise ValueError(
            f"the bin {lo:g}-{hi:g} G has {n} calibration pixels, too few for coverage "
            f"{coverage:.4g}; use more or larger calibration crops, or other bin edges"
        )
    return _quantile_scale(score, coverage), score


def _quantile_scale(score, coverage):
    """The calibrated std in units of the score: half the conformal quantile of sorted ``score``."""
    return float(score[math.ceil((score.size + 1) * coverage) - 1]) / 2.0  # +-2 std = the quantile


@u.quantity_input
def fit_std_calibration(
    samples: u.G,
    truth: u.G,
    *,
    counts=None,
    smoothing=(0.0, 1.0, 2.0, 3.0),
    floors: u.G = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0) * u.G,
    coverage=TWO_SIGMA_COVERAGE,
    min_coverage=None,
    edges: u.G = DEFAULT_BIN_EDGES,
    truth_ranges: u.G = TRUTH_RANGES,
    noise_levels: u.G = None,
    source="",
    antithetic=False,
    symmetric=False,
):
    """
    Fit a `StdCalibration` by split conformal prediction, one quantile per ``|mean|`` bin.

    Parameters
    ----------
    samples : `~astropy.units.Quantity`
        ``(n_images, N, ny, nx)``: ``N`` samples of the model for each calibration image, in G.
    truth : `~astropy.units.Quantity`
        ``(n_images, ny, nx)`` true field, in G. NaN pixels are left out.
    counts : sequence of int, optional
        Sample counts to fit factors at, each from the first ``n`` samples (default: 2, 4, 8, ...
        up to ``N``, and ``N``).
    smoothing : float or sequence of float, optional
        Gaussian window(s) for the sample variance, in pixels (see `smooth_std`).
    floors : `~astropy.units.Quantity`, optional
        Candidate floors added in quadrature to the smoothed standard deviation, G.
    coverage : float, optional
        Target coverage of ``mean +- 2 std`` (default that of a normal distribution, 0.9545).
    min_coverage : float, optional
        If given, the target of ``+-2 std`` is chosen between this and ``coverage`` (in steps of
        `COVERAGE_STEP`) to bring the coverages of ``+-1`` and ``+-2 std`` together nearest their
        normal values, as are the multipliers of ``truth_ranges`` (see the module notes).
    edges : `~astropy.units.Quantity`, optional
        Lower edges of the ``|mean|`` bins, from 0 G.
    truth_ranges : `~astropy.units.Quantity`, optional
        Lower edges of the ranges of the true ``|B|`` whose coverage must reach ``coverage`` on the
        fitting images too (see the module notes); an empty Quantity for none.
    noise_levels : `~astropy.units.Quantity`, optional
        ``(n_images,)``: the output noise level each image's samples were asked for. With two or
        more distinct levels, ratios of each level's factors to the pooled ones are fitted too (see
        the module notes).
    source : str, optional
        What the calibration images are, for the record.
    antithetic : bool or str, optional
        Whether each image's samples were drawn in antithetic pairs (samples ``2k`` and ``2k + 1``
        from opposite initial noise; ``"polarity"``: from the same noise, the second for the input
        with its polarity reversed, see `~sunpy_superres.superresolve`); recorded, so that the
        factors are applied to that design only.
    symmetric : bool, optional
        Whether they were drawn under the input's flips (``superresolve(..., symmetric=True)``);
        recorded likewise.

    Returns
    -------
    `StdCalibration`

    Notes
    -----
    With more than one candidate smoothing or floor, the smoothing (shared) and the floor of each
    bin whose ``+-1 std`` coverage at ``N`` samples, once ``+-2 std`` is calibrated, is nearest
    0.683 are chosen on the even-numbered images, and the factors are then fitted on the
    odd-numbered ones, so that the choice does not reuse the pixels of the conformal quantile. With
    ``min_coverage``, the target of ``+-2 std`` is chosen with them, on the same images. With one
    candidate of each and no ``min_coverage``, all images fit the factors. The multipliers of
    ``truth_ranges`` are fitted on all images, at each sample count.

    Raises
    ------
    ValueError
        If shapes do not match, ``N < 2``, a bin has too few pixels for the quantile
        (``(n + 1)(1 - alpha) > n``), ``coverage`` is not in (0, 1), ``min_coverage`` is not in
        (0, ``coverage``], or a range of ``truth_ranges`` cannot reach ``coverage`` (or
        ``min_coverage``; too few of its pixels lie in the bins raised for it).
    """
    samples, truth, counts = _check_calibration_inputs(samples, truth, counts, coverage)
    if min_coverage is not None and not 0 < min_coverage <= coverage:
        raise ValueError(f"min_coverage must be in (0, coverage], got {min_coverage!r}")
    edge_values = np.asarray(edges.to_value(u.G), dtype=np.float64)
    widths = sorted({float(w) for w in np.atleast_1d(smoothing)})
    floor_values = sorted({float(f) for f in np.atleast_1d(floors.to_value(u.G))})
    targets = _coverage_candidates(coverage, min_coverage)

    choosing = len(widths) > 1 or len(floor_values) > 1 or len(targets) > 1
    choose, fit_images = _split_images(samples.shape[0], choosing)
    width, chosen_floors = widths[0], [floor_values[0]] * len(edge_values)
    if choosing:
        width, chosen_floors, coverage = _choose_smoothing_and_floors(
            samples[choose], truth[choose], widths, floor_values, edge_values, targets
        )
    range_values = np.sort(np.atleast_1d(np.asarray(truth_ranges.to_value(u.G), dtype=np.float64)))
    plain, pixels = _fit_scales(
        samples[fit_images], truth[fit_images], counts, width, chosen_floors, edge_values, coverage
    )
    levels, ratios = _fit_noise_ratios(
        samples, truth, noise_levels, fit_images, counts, width, chosen_floors, edge_values, coverage, plain
    )
    scales, multipliers = [], []
    every = np.arange(samples.shape[0])
    for c, k in enumerate(counts):
        # The ranges are raised on every calibration image (module notes), each with the factors it
        # gets at its own noise level, the ones a run at that level applies.
        mean, std = _moments(samples, k)
        per_image = _image_ratios(levels, ratios, noise_levels, every, c, len(edge_values))
        raised, multiplier = _raise_for_truth_ranges(
            mean,
            smooth_std(std, width),
            truth,
            edge_values,
            chosen_floors,
            plain[c],
            range_values,
            targets,
            per_image,
        )
        scales.append(raised)
        multipliers.append(tuple(multiplier))
    return StdCalibration(
        edges_gauss=tuple(map(float, edge_values)),
        samples=tuple(counts),
        scales=tuple(scales),
        smoothing=width,
        floors_gauss=tuple(chosen_floors) if any(chosen_floors) else (),
        coverage=float(coverage),
        n_pixels=pixels,
        truth_ranges_gauss=tuple(map(float, range_values)),
        multipliers=tuple(multipliers) if len(range_values) else (),
        noise_levels_gauss=levels,
        noise_ratios=ratios,
        source=str(source),
        antithetic=antithetic if isinstance(antithetic, str) else bool(antithetic),
        symmetric=bool(symmetric),
        min_coverage=None if min_coverage is None else float(min_coverage),
    )


def _check_calibration_inputs(samples, truth, counts, coverage):
    """The samples and truth as float64 arrays in G, and the sorted sample counts, all checked."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
    samples = np.asarray(samples.to_value(u.G), dtype=np.float64)
    truth = np.asarray(truth.to_value(u.G), dtype=np.float64)
    if samples.ndim != 4 or truth.shape != samples.shape[:1] + samples.shape[2:]:
        raise ValueError(
            f"samples must be (n_images, N, ny, nx) and truth (n_images, ny, nx), got {samples.shape} "
            f"and {truth.shape}"
        )
    n = samples.shape[1]
    if n < 2:
        raise ValueError("calibration needs at least 2 samples per image")
    if counts is None:
        counts = sorted({*(2**k for k in range(1, int(math.log2(n)) + 1)), n})
    counts = sorted({int(c) for c in counts})
    if counts[0] < 2 or counts[-1] > n:
        raise ValueError(f"sample counts must lie between 2 and {n}, got {counts}")
    return samples, truth, counts


def _split_images(n_images, choosing):
    """
    Indices of the images that choose the smoothing and floors, and of those that fit the factors.

    When there is a choice to make, the even-numbered images choose and the odd-numbered ones fit,
    so that the choice does not reuse the pixels of the conformal quantile; otherwise all images fit.
    """
    images = np.arange(n_images)
    if not choosing:
        return images[:0], images
    if n_images < 2:
        raise ValueError(
            "choosing the smoothing or the floors needs at least 2 calibration images (one half "
            "chooses, the other fits); give one candidate of each to fit on a single image"
        )
    return images[0::2], images[1::2]


def _moments(samples, k):
    """Mean and standard deviation (ddof=1) of the first ``k`` samples of each image."""
    part = samples[:, :k]
    return part.mean(axis=1), part.std(axis=1, ddof=1)


def _choose_smoothing_and_floors(samples, truth, widths, floor_values, edge_values, targets):
    """
    The smoothing (shared), the floor of each bin and the target coverage of ``+-2 std``.

    For each candidate target and smoothing, every bin takes the floor whose ``+-1 std`` coverage,
    once ``+-2 std`` is calibrated at the target on these images, is nearest that of a normal
    distribution; the smoothing whose worst bin is nearest wins (the first one on ties). Of several
    targets, the one whose pooled coverages then have the smallest two-level calibration error
    (`_two_level_error`) wins (the first, highest, on ties).
    """
    mean, std = _moments(samples, samples.shape[1])
    # Per target and smoothing: (worst gap, floors, pixels within +-1 std, within +-2, in all).
    found = {(c, w): [0.0, [], 0, 0, 0] for c in targets for w in widths}
    for w in widths:
        for err, sd, lo, hi in _bins(mean, smooth_std(std, w), truth, edge_values):
            # The scores do not depend on the target, only the rank taken from them does.
            scores = [_conformal_scale(err, sd, f, targets[0], lo, hi)[1] for f in floor_values]
            for c in targets:
                best = (np.inf, 0.0, 0, 0)
                for f, score in zip(floor_values, scores, strict=True):
                    scale = _quantile_scale(score, c)
                    one = int(np.searchsorted(score, scale, side="right"))
                    gap = abs(one / score.size - ONE_SIGMA_COVERAGE)
                    if gap < best[0]:
                        best = (gap, f, one, int(np.searchsorted(score, 2 * scale, side="right")))
                entry = found[(c, w)]
                entry[0] = max(entry[0], best[0])
                entry[1].append(best[1])
                entry[2] += best[2]
                entry[3] += best[3]
                entry[4] += err.size
    choice = (np.inf, None, None, None)
    for c in targets:
        _, w = min((found[(c, w)][0], w) for w in widths)  # widths increase: the first on ties
        _, picks, one, two, total = found[(c, w)]
        error = _two_level_error(one / total, two / total) if len(targets) > 1 else 0.0
        if error < choice[0]:
            choice = (error, w, picks, c)
    return choice[1], choice[2], choice[3]


def _fit_scales(samples, truth, counts, width, floors, edge_values, coverage):
    """Per sample count, the conformal factor of each bin; and the pixels per bin (at the last count)."""
    all_plain, pixels = [], ()
    for k in counts:
        mean, std = _moments(samples, k)
        binned = _bins(mean, smooth_std(std, width), truth, edge_values)
        all_plain.append(
            tuple(
                _conformal_scale(err, s, f, coverage, lo, hi)[0]
                for (err, s, lo, hi), f in zip(binned, floors, strict=True)
            )
        )
        pixels = tuple(int(b[0].size) for b in binned)
    return tuple(all_plain), pixels


def _ratio_table(ratios, count_index):
    """``(levels, bins)``: the fitted noise-level ratios of one sample count."""
    return np.asarray([r[count_index] for r in ratios], dtype=np.float64)


def _level_ratios(levels, ratios, count_index, level):
    """The ratio of each bin at ``level`` (G): linear between the fitted levels, the nearest outside."""
    return np.array([np.interp(level, levels, col) for col in _ratio_table(ratios, count_index).T])


def _image_ratios(levels, ratios, noise_levels, images, count_index, n_bins):
    """
    ``(len(images), n_bins)``: the noise-level ratio of each bin for each of ``images`` at its own
    level, as `StdCalibration.factors` applies it (ones without fitted levels).
    """
    if not levels:
        return np.ones((len(images), n_bins))
    per_image = np.asarray(u.Quantity(noise_levels, u.G).to_value(u.G), dtype=np.float64).ravel()[images]
    return np.array([_level_ratios(levels, ratios, count_index, level) for level in per_image])


def _fit_noise_ratios(
    samples, truth, noise_levels, fit_images, counts, width, floors, edge_values, coverage, pooled
):
    """
    The fitted noise levels and, per level, per sample count, per bin, the ratio of the factor of
    that level's fitting images to the pooled one before the raising (``pooled``, per count; 1 in a
    bin with fewer than `MIN_LEVEL_PIXELS` of its pixels); empty with fewer than two levels.
    """
    if noise_levels is None:
        return (), ()
    per_image = np.asarray(u.Quantity(noise_levels, u.G).to_value(u.G), dtype=np.float64).ravel()
    if per_image.shape != (samples.shape[0],) or not np.all(np.isfinite(per_image) & (per_image > 0)):
        raise ValueError(
            f"noise_levels must be one positive level (G) per calibration image, got {per_image.shape[0]} "
            f"for {samples.shape[0]} images"
        )
    levels = np.unique(per_image[fit_images])
    if levels.size < 2:
        return (), ()
    ratios = []
    for level in levels:
        mine = fit_images[per_image[fit_images] == level]
        own = []
        for k, pooled_k in zip(counts, pooled, strict=True):
            mean, std = _moments(samples[mine], k)
            binned = _bins(mean, smooth_std(std, width), truth[mine], edge_values)
            own.append(
                tuple(
                    _conformal_scale(err, sd, f, coverage, lo, hi)[0] / p
                    if err.size >= MIN_LEVEL_PIXELS
                    else 1.0
                    for (err, sd, lo, hi), f, p in zip(binned, floors, pooled_k, strict=True)
                )
            )
        ratios.append(tuple(own))
    return tuple(float(x) for x in levels), tuple(ratios)


def _raise_for_truth_ranges(mean, sd, truth, edge_values, floors, scales, range_values, targets, ratios):
    """
    The factors raised so that each range of the true ``|B|`` reaches its target (module notes).

    Per range, in increasing order, the bins that reach above half the range's lower edge share
    one multiplier: the smallest one (at least 1) that puts the range's conformal rank,
    ``ceil((n + 1) * target)`` of its ``n`` pixels, within ``+-2`` calibrated std. With several
    candidate targets, the multiplier whose coverages of the range at ``+-1`` and ``+-2 std`` have the
    smallest two-level calibration error wins (the first target, the highest, on ties). ``ratios``,
    ``(n_images, n_bins)``, are the noise-level ratios each image's factors get at run time.
    Written here: it is specific to this calibration's bins.
    """
    scales = np.asarray(scales, dtype=np.float64)
    ok = np.isfinite(mean) & np.isfinite(sd) & np.isfinite(truth)
    absb, abst, err = np.abs(mean[ok]), np.abs(truth[ok]), np.abs(truth[ok] - mean[ok])
    index = np.clip(np.searchsorted(edge_values, absb, side="right") - 1, 0, len(edge_values) - 1)
    image = np.broadcast_to(np.arange(mean.shape[0]).reshape((-1,) + (1,) * (mean.ndim - 1)), mean.shape)[ok]
    base = np.hypot(sd[ok], np.asarray(floors, dtype=np.float64)[index]) * np.asarray(ratios)[image, index]
    bin_tops = np.append(edge_values[1:], np.inf)
    upper = [*range_values[1:], np.inf][: len(range_values)]
    multipliers = []
    for lo, hi in zip(range_values, upper, strict=True):
        in_range = (abst >= lo) & (abst < hi)
        raised_bins = bin_tops > lo / 2
        raised = raised_bins[index]
        score = err / np.maximum(base * scales[index], np.finfo(np.float64).tiny)
        n = int(in_range.sum())
        candidates = np.sort(score[in_range & raised])
        fixed = score[in_range & ~raised]
        options = []
        for target in targets:
            needed = math.ceil((n + 1) * target) - int(np.sum(fixed <= 2))
            if n == 0 or needed <= 0:
                multiplier = 1.0
            elif needed > candidates.size:
                continue
            else:
                multiplier = max(1.0, float(candidates[needed - 1]) / 2.0)
            error = 0.0
            if len(targets) > 1 and n:
                one = np.sum(fixed <= 1) + np.searchsorted(candidates, multiplier, side="right")
                two = np.sum(fixed <= 2) + np.searchsorted(candidates, 2 * multiplier, side="right")
                error = _two_level_error(one / n, two / n)
            options.append((error, multiplier))
        if not options:
            raise ValueError(
                f"the true range {lo:g}-{hi:g} G cannot reach coverage {min(targets):.4g}: too few of its "
                f"{n} calibration pixels lie in output bins that reach above {lo / 2:g} G"
            )
        multiplier = min(options, key=lambda o: o[0])[1]  # min keeps the first on ties
        scales[raised_bins] *= multiplier
        multipliers.append(multiplier)
    return tuple(float(x) for x in scales), multipliers
