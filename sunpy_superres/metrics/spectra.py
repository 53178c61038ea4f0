"""
Fourier-domain diagnostics of super-resolved magnetograms (Ramunno et al. 2025, section 7).

A super-resolution model earns its keep only at scales the input cannot show. For a 2"/pixel input
those are features smaller than 2": spatial frequencies above the input's Nyquist frequency,
k > 1/(2 x 2") = 0.25 arcsec^-1, outside the red circle of the paper's Fig. 10. This module measures
that content:

* `fourier_amplitude` and `cutoff_radius` give the centred FFT amplitude image and the radius of the
  2" circle, as in Fig. 10;
* `radial_power_spectrum` gives the azimuthally averaged power spectral density P(k) on a physical
  k axis (arcsec^-1), so maps at different pixel scales can be overlaid;
* `small_scale_power_fraction` and `spectral_error` turn that into numbers for the evaluation;
* `butterworth_split` separates a map into its > 2" and < 2" parts, as used in Fig. 12 to split the
  uncertainty map.

Conventions used throughout: spatial frequency is in cycles per arcsec (``1 / arcsec``). A feature of
size L is half a period (one crest, or one pixel of a sampling at L per pixel): it has frequency
k = 1/(2L). So the 2" of the paper are the scale of MDI's 2"/pixel, whose finest resolved wave has a
4" period: "smaller than 2"" and "beyond the input's Nyquist frequency" are the same band, the one of
`spectral_error` and issue 5's evaluation. (Development versions before issue 5 closed took a feature
of size L to be a full period, k = 1/L: that split at 1" features and counted the band from 4" to 2"
periods, where most of what MDI cannot resolve lies, as large scale.) The frequencies of an N-pixel
axis with pixel scale dx are ``numpy.fft.fftfreq(N, dx)``; the Nyquist frequency is 1/(2 dx).
Frequencies are those of the *pixel* axes: for a map rolled by CROTA2 = 180 deg (raw HMI) the 2-D
images are rotated with respect to solar x/y, but ``|k|``, and hence every radial quantity here,
does not depend on the rotation.

References
----------
Ramunno, F. P. et al. 2025, "Enhancing image resolution of solar magnetograms: a latent diffusion
model approach", A&A 698, A140 (doi:10.1051/0004-6361/202453205), sections 5 and 7, Figs. 10 and 12.
"""

from typing import NamedTuple

import astropy.units as u
import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.signal import get_window
from skimage.filters import butterworth

from ..maps import map_data

__all__ = [
    "FourierAmplitude",
    "RadialSpectrum",
    "fourier_amplitude",
    "cutoff_radius",
    "radial_power_spectrum",
    "small_scale_power_fraction",
    "spectral_error",
    "butterworth_split",
]

#: The resolution limit of the paper's section 7: MDI's 2"/pixel, i.e. features of 2" (half a period;
#: k = 0.25 arcsec^-1, MDI's Nyquist frequency).
CUTOFF_SCALE = 2 * u.arcsec
_PIXEL_SCALE = u.arcsec / u.pix
#: Pixel scales within this factor of a cut-off count as the cut-off itself: MDI's 1.98"/pixel is
#: the paper's 2", and a map at that scale has nothing below 2" to measure or split off.
_NOMINAL = 1.05


class FourierAmplitude(NamedTuple):
    """Centred 2-D Fourier amplitude with its frequency axes (see `fourier_amplitude`)."""

    amplitude: u.Quantity
    kx: u.Quantity
    ky: u.Quantity


class RadialSpectrum(NamedTuple):
    """Azimuthally averaged power spectral density (see `radial_power_spectrum`)."""

    k: u.Quantity
    power: u.Quantity


def _check_map(smap, name="smap"):
    # Imported here so that `import sunpy_superres.metrics.spectra` stays cheap.
    from sunpy.map import GenericMap

    if not isinstance(smap, GenericMap):
        raise TypeError(f"{name} must be a sunpy Map, got {type(smap).__name__}.")
    if smap.data.ndim != 2:
        raise ValueError(f"{name} must be 2-D, its data have shape {smap.data.shape}.")


def _pixel_scales(smap):
    """(dx, dy) in arcsec per pixel along the array's column (x) and row (y) axes."""
    return (smap.scale.axis1.to_value(_PIXEL_SCALE), smap.scale.axis2.to_value(_PIXEL_SCALE))


def _square_pixel_scale(smap, what):
    dx, dy = _pixel_scales(smap)
    if not np.isclose(dx, dy, rtol=1e-3):
        raise ValueError(
            f"{what} needs square pixels; the map's are {dx:.4f} x {dy:.4f} arcsec/pixel. "
            "Resample it first (e.g. with smap.resample or smap.reproject_to)."
        )
    return dx


def _as_arcsec_per_pixel(scale, name):
    """A pixel scale given as arcsec/pix (or as a plain angle per pixel, arcsec) in arcsec/pixel."""
    scale = u.Quantity(scale)
    if scale.unit.is_equivalent(_PIXEL_SCALE):
        value = scale.to_value(_PIXEL_SCALE)
    elif scale.unit.is_equivalent(u.arcsec):
        value = scale.to_value(u.arcsec)
    else:
        raise u.UnitsError(f"{name} must be an angle per pixel (e.g. 2 * u.arcsec / u.pix), got {scale}.")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {scale}.")
    return float(value)


def _frequencies(shape, dx, dy):
    """|k| (cycles/arcsec) of every mode of an unshifted 2-D FFT of the given shape."""
    ky = np.fft.fftfreq(shape[0], dy)
    kx = np.fft.fftfreq(shape[1], dx)
    return np.hypot(ky[:, None], kx[None, :])


def _window_2d(window, shape):
    if window is None:
        return np.ones(shape)
    # fftbins=True: the periodic form, appropriate for a window applied before a DFT.
    wy = get_window(window, shape[0], fftbins=True)
    wx = get_window(window, shape[1], fftbins=True)
    return np.outer(wy, wx)


def _psd_modes(smap, window):
    """
    Power spectral density of every Fourier mode of a map, in unit^2 arcsec^2, with |k|.

    PSD = |DFT(w (f - <f>))|^2 dx dy / sum(w^2), with w the window times the finite-pixel mask, so that
    sum over modes of PSD * dkx * dky equals the (window-weighted) variance of the finite pixels
    (Parseval), and white noise of variance s^2 has PSD = s^2 dx dy at every k, whatever the map size.
    """
    data = map_data(smap)
    finite = np.isfinite(data)
    if not finite.any():
        raise ValueError("the map has no finite pixels.")
    dx, dy = _pixel_scales(smap)
    weight = _window_2d(window, data.shape) * finite
    norm = np.sum(weight**2)
    if norm == 0:
        raise ValueError("the window and the finite-pixel mask leave no pixel with weight.")
    # The weighted mean is removed so that the window's own spectrum does not spread the k = 0 power
    # into the lowest bins; NaN pixels get weight 0, i.e. they are filled with that mean.
    mean = np.sum(weight * np.where(finite, data, 0.0)) / np.sum(weight)
    field = np.where(finite, data - mean, 0.0) * weight
    psd = np.abs(np.fft.fft2(field)) ** 2 * (dx * dy / norm)
    unit = (smap.unit if smap.unit is not None else u.dimensionless_unscaled) ** 2 * u.arcsec**2
    return psd, _frequencies(data.shape, dx, dy), unit, (dx, dy)


def fourier_amplitude(smap, *, window=None):
    """
    Centred amplitude of the 2-D discrete Fourier transform of a map (the images of Fig. 10).

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A 2-D map, e.g. a magnetogram in G.
    window : str, tuple or None, optional
        Taper applied before the transform, any window accepted by `scipy.signal.get_window`
        (e.g. ``"hann"``). `None` (default) transforms the data as they are, as the paper does.

    Returns
    -------
    amplitude : `~astropy.units.Quantity`
        ``abs(numpy.fft.fftshift(numpy.fft.fft2(data)))``, shape of the map, in the map's unit
        (the un-normalised DFT sum: a uniform map of B gives N_x N_y B at k = 0). NaN and masked
        pixels are set to 0 before the transform, so off-limb pixels contribute nothing (but the
        limb edge itself then contributes its own high frequencies).
    kx, ky : `~astropy.units.Quantity`
        Centred spatial frequencies of the columns and rows of ``amplitude`` in 1/arcsec (cycles per
        arcsec), ``numpy.fft.fftshift(numpy.fft.fftfreq(N, pixel_scale))``. Zero frequency is at
        index ``N // 2``.

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        If the map is not 2-D.

    References
    ----------
    Ramunno et al. 2025, section 7 and Fig. 10.
    """
    _check_map(smap)
    data = map_data(smap)
    data = np.where(np.isfinite(data), data, 0.0) * _window_2d(window, data.shape)
    amplitude = np.abs(np.fft.fftshift(np.fft.fft2(data)))
    dx, dy = _pixel_scales(smap)
    ny, nx = data.shape
    unit = smap.unit if smap.unit is not None else u.dimensionless_unscaled
    return FourierAmplitude(
        amplitude * unit,
        np.fft.fftshift(np.fft.fftfreq(nx, dx)) / u.arcsec,
        np.fft.fftshift(np.fft.fftfreq(ny, dy)) / u.arcsec,
    )


@u.quantity_input(scale=u.arcsec)
def cutoff_radius(smap, scale: u.arcsec = CUTOFF_SCALE):
    """
    Radius, in frequency pixels of the `fourier_amplitude` image, of the circle of features of size
    ``scale`` (the red 2" circle of Fig. 10).

    A feature of size L is half a period: spatial frequency k = 1/(2L), so the 2" circle is MDI's
    Nyquist frequency. One frequency pixel of an N-pixel axis with pixel scale dx is 1/(N dx), so the
    circle has radius ``N * dx / (2 L)`` frequency pixels around the zero-frequency pixel at index
    ``N // 2``. Amplitude outside the circle belongs to features smaller than L.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        The map whose Fourier image is drawn.
    scale : `~astropy.units.Quantity`
        Feature size L, an angle. Default 2 arcsec (the MDI pixel scale).

    Returns
    -------
    float
        Radius in frequency pixels (e.g. 512 * 0.504 / 4 = 64.5 for a 512-pixel HMI cut-out).

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        If the two axes span different angles (the contour is then an ellipse, not a circle).

    References
    ----------
    Ramunno et al. 2025, section 7 and Fig. 10.
    """
    _check_map(smap)
    dx, dy = _pixel_scales(smap)
    ny, nx = smap.data.shape
    length = scale.to_value(u.arcsec)
    rx, ry = nx * dx / (2 * length), ny * dy / (2 * length)
    if not np.isclose(rx, ry, rtol=1e-3):
        raise ValueError(
            f"the map spans {nx * dx:.2f} x {ny * dy:.2f} arcsec; the {scale} contour is an "
            f"ellipse of semi-axes {rx:.2f} x {ry:.2f} frequency pixels, not a circle. "
            "Use a square cut-out (same angular extent on both axes)."
        )
    return float(rx)


def radial_power_spectrum(smap, *, nbins=None, window="hann"):
    """
    Azimuthally averaged power spectral density P(k) of a map, on a physical k axis.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A 2-D map, e.g. a magnetogram in G. NaN and masked pixels get zero weight (see Notes).
    nbins : int, optional
        Number of k bins from 0 to the Nyquist frequency. Bin i is centred on ``i * dk`` and spans
        ``[(i - 0.5) dk, (i + 0.5) dk)`` (the first one only k = 0), with
        ``dk = k_Nyquist / (nbins - 1)``. Default: one bin per frequency pixel,
        ``dk = 1 / (N * pixel_scale)`` (for unequal axes the coarser one).
    window : str, tuple or None, optional
        Taper applied before the transform (`scipy.signal.get_window` name), default ``"hann"``.
        A cut-out's edges are not periodic; without a taper their jump leaks power to every k
        (about 1/k^2) and dominates the small-scale power of smooth maps (see Notes).

    Returns
    -------
    k : `~astropy.units.Quantity`
        Bin centres in 1/arcsec (cycles per arcsec), from 0 to the Nyquist frequency 1/(2 dx).
    power : `~astropy.units.Quantity`
        Mean PSD of the modes in each bin, in the map's unit squared times arcsec^2 (G^2 arcsec^2).
        NaN for a bin holding no mode (only possible with a large ``nbins``).

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        If the map is not 2-D, has no finite pixel, or ``nbins < 2``.

    Notes
    -----
    The PSD of a mode is ``|DFT(w (f - <f>))|^2 dx dy / sum(w^2)``, where w is the window times the
    finite-pixel mask and <f> the w-weighted mean (so P(0) is about 0). With this normalisation

    * white noise of variance s^2 has P(k) = s^2 dx dy at every k, whatever the map's size or pixel
      scale, so maps of different scales lie on one curve and can be compared;
    * Parseval: the sum over all modes of PSD * dkx * dky (dkx = 1/(N_x dx)) is the w^2-weighted
      variance of the map. The bins stop at the Nyquist frequency of the axes; the corner modes
      beyond it (``|k|`` up to sqrt(2) k_Nyquist) are not in any bin.

    On the 512x512 HMI test cut-out degraded 4x and interpolated back with bicubic, the power beyond
    k = 0.5 arcsec^-1 (features below 1") relative to the original is about 0.1 without a window (edge
    leakage) and about 0.01 with the Hann window: the window is what lets the number measure solar
    structure.

    References
    ----------
    Ramunno et al. 2025, section 7.
    """
    _check_map(smap)
    if nbins is not None and (int(nbins) != nbins or nbins < 2):
        raise ValueError(f"nbins must be an integer >= 2, got {nbins!r}.")
    psd, k, unit, (dx, dy) = _psd_modes(smap, window)
    ny, nx = psd.shape
    k_nyquist = min(1 / (2 * dx), 1 / (2 * dy))
    if nbins is None:
        dk = max(1 / (nx * dx), 1 / (ny * dy))
        nbins = int(np.floor(k_nyquist / dk * (1 + 1e-9))) + 1
    else:
        nbins = int(nbins)
        dk = k_nyquist / (nbins - 1)
    index = np.floor(k / dk + 0.5).astype(np.int64).ravel()
    inside = index < nbins
    counts = np.bincount(index[inside], minlength=nbins)
    sums = np.bincount(index[inside], weights=psd.ravel()[inside], minlength=nbins)
    power = np.full(nbins, np.nan)
    np.divide(sums, counts, out=power, where=counts > 0)
    return RadialSpectrum(np.arange(nbins) * dk / u.arcsec, power * unit)


@u.quantity_input(scale=u.arcsec)
def small_scale_power_fraction(pred, truth, scale: u.arcsec = CUTOFF_SCALE, *, window="hann"):
    """
    Power at scales below ``scale`` of a prediction relative to the ground truth.

    The power is the PSD integrated over the annulus ``1/(2 scale) < |k| <= k_Nyquist``:
    ``sum(PSD * dkx * dky)`` over those modes (see `radial_power_spectrum` for the PSD), i.e. the
    variance carried by features smaller than ``scale``. It is independent of the map size and pixel
    scale, so ``pred`` and ``truth`` need not share a grid; the annulus stops at the lower of their two
    Nyquist frequencies.

    Parameters
    ----------
    pred, truth : `~sunpy.map.GenericMap`
        Predicted and reference maps in the same (or convertible) units.
    scale : `~astropy.units.Quantity`
        Feature size (half a period), default 2 arcsec (k > 0.25 arcsec^-1, beyond MDI's Nyquist).
    window : str, tuple or None, optional
        Taper before the transform, default ``"hann"`` (see `radial_power_spectrum`).

    Returns
    -------
    float
        ``P_pred(k > 1/(2 scale)) / P_truth(k > 1/(2 scale))``: 1 means as much small-scale structure
        as the truth, values well below 1 a blurred prediction (interpolation), above 1 excess (noise).

    Raises
    ------
    TypeError
        If either is not a sunpy Map.
    ValueError
        If a map's pixels are not finer than ``scale`` by more than 5 % (its Nyquist frequency does
        not reach beyond 1/(2 scale)), the truth has no power there, or the units are not
        convertible.

    References
    ----------
    Ramunno et al. 2025, section 7 ("features smaller than 2 arcsec", Fig. 10).
    """
    _check_map(pred, "pred")
    _check_map(truth, "truth")
    k_min = 1 / (2 * scale.to_value(u.arcsec))
    spectra = []
    for name, smap in (("pred", pred), ("truth", truth)):
        psd, k, unit, (dx, dy) = _psd_modes(smap, window)
        k_nyquist = min(1 / (2 * dx), 1 / (2 * dy))
        if k_nyquist <= k_min * _NOMINAL:
            raise ValueError(
                f"{name} has pixels of {dx:.3f} arcsec: its Nyquist frequency "
                f"{k_nyquist:.3f}/arcsec does not reach beyond 1/(2 x {scale}). Features "
                f"smaller than {scale} need pixels finer than {scale}."
            )
        spectra.append((psd, k, unit, dx * dy, psd.shape, k_nyquist))
    k_max = min(s[-1] for s in spectra)
    power = []
    for psd, k, unit, pixel_area, shape, _ in spectra:
        dk2 = 1 / (pixel_area * shape[0] * shape[1])
        annulus = (k > k_min) & (k <= k_max)
        power.append(np.sum(psd[annulus]) * dk2 * unit / u.arcsec**2)
    if power[1].value == 0:
        raise ValueError(f"the truth map has no power at scales below {scale}.")
    return float((power[0] / power[1]).to_value(u.dimensionless_unscaled))


def spectral_error(pred, truth, lowres_scale, *, nbins=None, window="hann"):
    """
    Mean absolute log ratio of the radial power spectra over the scales a super-resolution adds.

    ``mean over bins with k_in < k <= k_out of |ln(P_pred(k) / P_truth(k))|``, with
    k_in = 1/(2 * lowres_scale) the Nyquist frequency of the low-resolution input and k_out the
    Nyquist frequency of the output grid, P from `radial_power_spectrum`. 0 means the prediction has
    the truth's power at every added scale; ln 2 = 0.69 means a factor 2 off on average (in either
    direction). Bins are weighted equally, so each added scale counts the same however few modes it
    has.

    Parameters
    ----------
    pred, truth : `~sunpy.map.GenericMap`
        Prediction and reference on the same grid (same shape and pixel scale).
    lowres_scale : `~astropy.units.Quantity`
        Pixel scale of the low-resolution input, in arcsec/pix (or arcsec), e.g. 2 arcsec/pix.
    nbins : int, optional
        Binning of `radial_power_spectrum`; default one bin per frequency pixel.
    window : str, tuple or None, optional
        Taper before the transform, default ``"hann"``.

    Returns
    -------
    float
        The mean ``|ln|`` ratio (dimensionless, >= 0). `inf` if either spectrum is exactly 0 in a bin of
        the range (e.g. a constant map).

    Raises
    ------
    TypeError
        If either is not a sunpy Map.
    ValueError
        If the maps are not on the same grid, ``lowres_scale`` is not coarser than their pixel scale,
        or no bin lies in the range.

    References
    ----------
    Ramunno et al. 2025, section 7 (power beyond the 2" input's resolution).
    """
    _check_map(pred, "pred")
    _check_map(truth, "truth")
    if pred.data.shape != truth.data.shape:
        raise ValueError(
            f"pred and truth must be on the same grid; their shapes are {pred.data.shape} "
            f"and {truth.data.shape}."
        )
    if not np.allclose(_pixel_scales(pred), _pixel_scales(truth), rtol=1e-6):
        raise ValueError(
            "pred and truth must be on the same grid; their pixel scales are "
            "{:.6g} x {:.6g} and {:.6g} x {:.6g} arcsec/pixel.".format(
                *_pixel_scales(pred), *_pixel_scales(truth)
            )
        )
    low = _as_arcsec_per_pixel(lowres_scale, "lowres_scale")
    dx, dy = _pixel_scales(truth)
    if low <= max(dx, dy):
        raise ValueError(
            f"lowres_scale ({low} arcsec/pixel) must be coarser than the maps' pixel scale "
            f"({max(dx, dy):.4f} arcsec/pixel)."
        )
    k, p_pred = radial_power_spectrum(pred, nbins=nbins, window=window)
    _, p_true = radial_power_spectrum(truth, nbins=nbins, window=window)
    k = k.to_value(1 / u.arcsec)
    # A small relative tolerance keeps the bin sitting exactly on the input's Nyquist out of the range.
    in_range = (k > 1 / (2 * low) * (1 + 1e-9)) & np.isfinite(p_pred.value) & np.isfinite(p_true.value)
    if not in_range.any():
        raise ValueError(
            "no frequency bin lies between the input's and the output's Nyquist frequency; "
            "use fewer bins (nbins) or a larger map."
        )
    ratio = (p_pred[in_range] / p_true[in_range]).to_value(u.dimensionless_unscaled)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.abs(np.log(ratio))))


@u.quantity_input(cutoff=u.arcsec)
def butterworth_split(smap, cutoff: u.arcsec = CUTOFF_SCALE, *, order=2.0, npad=None):
    """
    Split a map into its features larger and smaller than ``cutoff`` with a Butterworth filter.

    Uses `skimage.filters.butterworth` with its default squared Butterworth response,
    ``H_low(f) = 1 / (1 + (f / f_c)^(2 order))`` and ``H_high = 1 - H_low`` (gain 1/2 at f_c). Its
    ``cutoff_frequency_ratio`` c is relative to the *sampling* frequency (1 cycle per pixel), not to
    the Nyquist frequency. A feature of size ``cutoff`` is half a period (see the module notes), so
    the cut-off f_c = 1/(2 cutoff) cycles per arcsec is ``pixel_scale / (2 cutoff)`` cycles per
    pixel: ``c = pixel_scale / (2 cutoff)``, 0.125 for 2" at 0.5"/pixel, which is the Nyquist
    frequency of the 2"/pixel input. The map's pixels must be smaller than ``cutoff`` by more than
    5 %: a map at MDI's own 1.98"/pixel has nothing below 2" to split off.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        A 2-D map with square pixels, e.g. a magnetogram or an uncertainty (std) map in G.
    cutoff : `~astropy.units.Quantity`
        Feature size (half a period) at which to split, default 2 arcsec (Ramunno et al. 2025,
        Fig. 12): the split is at MDI's Nyquist frequency, 0.25 arcsec^-1.
    order : float, optional
        Butterworth order n; larger is a sharper cut with more ringing. Default 2 (scikit-image's).
    npad : int, optional
        Pixels of edge-replicating padding on each side before the (periodic) FFT filtering, so the
        cut-out's opposite edges do not bleed into each other. Default two periods of the cut-off
        frequency, ``ceil(4 * cutoff / pixel_scale)`` (16 pixels for 2" at 0.5"/pixel). 0 filters the
        map as periodic.

    Returns
    -------
    low, high : `~sunpy.map.GenericMap`
        Features larger and smaller than ``cutoff``, as maps of the input's class with the same
        header (WCS, unit), float64. NaN (and masked) pixels of the input are filled with their
        nearest finite neighbour for the filtering and are NaN again in both outputs.

    Raises
    ------
    TypeError
        If ``smap`` is not a sunpy Map.
    ValueError
        If the pixels are not square, not finer than ``cutoff`` (by 5 %), or the map has no finite
        pixel.

    Notes
    -----
    Because the squared response is used, H_low + H_high = 1 exactly and ``low + high`` equals the
    input on its finite pixels to floating-point rounding (about 1e-12 of the data's range for float64
    data; measured in the tests).

    References
    ----------
    Butterworth, S. 1930, Wireless Engineer 7, 536. Ramunno et al. 2025, section 7 and Fig. 12.
    """
    _check_map(smap)
    dx = _square_pixel_scale(smap, "butterworth_split")
    ratio = dx / (2 * cutoff.to_value(u.arcsec))
    if not 0 < ratio * _NOMINAL < 0.5:
        raise ValueError(
            f"a map with pixels of {dx:.3f} arcsec has no features smaller than {cutoff} "
            f"below its Nyquist frequency: split maps with pixels finer than {cutoff} (e.g. the "
            "super-resolved output)."
        )
    if npad is None:
        npad = int(np.ceil(2 / ratio))
    low, high = _butterworth_low_high(map_data(smap), ratio, order, int(npad))
    plot_settings = dict(smap.plot_settings)
    return (
        type(smap)(low, smap.meta.copy(), plot_settings=plot_settings),
        type(smap)(high, smap.meta.copy(), plot_settings=dict(plot_settings)),
    )


def _butterworth_low_high(data, ratio, order, npad):
    """
    Low- and high-pass parts of ``data`` (squared Butterworth response, see `butterworth_split`).

    Missing (non-finite) pixels are filled with their nearest finite neighbour for the filtering and
    are NaN again in both parts.
    """
    missing = ~np.isfinite(data)
    if missing.all():
        raise ValueError("the map has no finite pixels.")
    if missing.any():
        # Nearest-neighbour fill: a zero fill would put a jump at the limb, i.e. spurious small scales.
        nearest = distance_transform_edt(missing, return_distances=False, return_indices=True)
        data = data[tuple(nearest)]
    kwargs = dict(cutoff_frequency_ratio=ratio, order=order, squared_butterworth=True, npad=npad)
    low = butterworth(data, high_pass=False, **kwargs)
    high = butterworth(data, high_pass=True, **kwargs)
    low[missing] = np.nan
    high[missing] = np.nan
    return low, high
