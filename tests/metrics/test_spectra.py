"""Tests of sunpy_superres.metrics.spectra on analytic fields and on the real HMI cut-out."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header

from sunpy_superres import superresolve
from sunpy_superres.metrics.spectra import (
    butterworth_split,
    cutoff_radius,
    fourier_amplitude,
    radial_power_spectrum,
    small_scale_power_fraction,
    spectral_error,
)


def make_map(data, scale, scale_y=None, unit=u.G):
    """A map of ``data`` on a helioprojective header with ``scale`` arcsec/pixel."""
    ref = SkyCoord(
        0 * u.arcsec, 0 * u.arcsec, obstime="2011-12-17T06:00", observer="earth", frame=frames.Helioprojective
    )
    scale_y = scale if scale_y is None else scale_y
    header = make_fitswcs_header(data, ref, scale=[scale, scale_y] * u.arcsec / u.pix, unit=unit)
    return sunpy.map.Map(data, header)


def plane_wave(n, scale, cycles_x, cycles_y, amplitude=1.0, phase=0.3):
    """A sinusoid with whole numbers of periods across an n x n map; its period in arcsec is returned."""
    y, x = np.mgrid[0:n, 0:n] / n
    data = amplitude * np.cos(2 * np.pi * (cycles_x * x + cycles_y * y) + phase)
    period = n * scale / np.hypot(cycles_x, cycles_y)
    return data, period


def with_data(smap, data):
    return type(smap)(data, smap.meta.copy())


@pytest.fixture
def degraded_hmi(hmi_cutout):
    """The HMI cut-out averaged 4x4 (2.017"/pixel) and interpolated back with bicubic."""
    lowres = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    bicubic = superresolve(lowres, model="bicubic", calibrate=False, check_scale=False, progress=False)
    return lowres, bicubic


# ------------------------------------------------------------------------------------------------
# Fourier amplitude and the 2" circle


@pytest.mark.parametrize(
    ("n", "scale", "length", "expected"),
    [(512, 0.5, 2.0, 64.0), (256, 0.25, 2.0, 16.0), (256, 0.25, 4.0, 8.0), (100, 0.6, 2.0, 15.0)],
)
def test_cutoff_radius_analytic(n, scale, length, expected):
    smap = make_map(np.zeros((n, n)), scale)
    assert cutoff_radius(smap, length * u.arcsec) == pytest.approx(expected, rel=1e-12)


def test_cutoff_radius_of_hmi_cutout(hmi_cutout):
    scale = hmi_cutout.scale.axis1.to_value(u.arcsec / u.pix)
    assert cutoff_radius(hmi_cutout) == pytest.approx(512 * scale / 4, rel=1e-12)
    assert cutoff_radius(hmi_cutout, 4 * u.arcsec) == pytest.approx(512 * scale / 8, rel=1e-12)


def test_cutoff_radius_refuses_an_ellipse():
    with pytest.raises(ValueError, match="ellipse"):
        cutoff_radius(make_map(np.zeros((64, 128)), 0.5))


def test_a_2_arcsec_feature_sits_on_the_cutoff_circle():
    # 2" features are half a period: a 4" plane wave (12 x 16 cycles across 80"), the finest wave a
    # 2"/pixel map samples, puts its amplitude exactly on the 2" circle.
    n, scale = 320, 0.25
    data, period = plane_wave(n, scale, 12, 16)
    assert period == pytest.approx(4.0)
    amp = fourier_amplitude(make_map(data, scale)).amplitude.value
    iy, ix = np.unravel_index(np.argmax(amp), amp.shape)
    radius = np.hypot(iy - n // 2, ix - n // 2)
    assert radius == pytest.approx(cutoff_radius(make_map(data, scale)), abs=1e-9)


def test_fourier_amplitude_axes_units_and_nan():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(48, 64))
    smap = make_map(data, 0.5, 0.25)
    amp, kx, ky = fourier_amplitude(smap)
    assert amp.unit == u.G and amp.shape == (48, 64)
    np.testing.assert_allclose(kx.to_value(1 / u.arcsec), np.fft.fftshift(np.fft.fftfreq(64, 0.5)))
    np.testing.assert_allclose(ky.to_value(1 / u.arcsec), np.fft.fftshift(np.fft.fftfreq(48, 0.25)))
    assert kx[32] == 0 and ky[24] == 0
    assert amp[24, 32].value == pytest.approx(abs(data.sum()))  # zero frequency: the sum
    holed = data.copy()
    holed[5:9, 10:30] = np.nan
    zeroed = np.where(np.isnan(holed), 0.0, holed)
    np.testing.assert_array_equal(
        fourier_amplitude(make_map(holed, 0.5, 0.25)).amplitude,
        fourier_amplitude(make_map(zeroed, 0.5, 0.25)).amplitude,
    )


# ------------------------------------------------------------------------------------------------
# Radial power spectrum


@pytest.mark.parametrize("window", [None, "hann"])
@pytest.mark.parametrize(
    ("n", "scale", "cycles"), [(256, 0.5, (0, 40)), (200, 0.2, (15, 20)), (128, 1.0, (-9, 12))]
)
def test_sinusoid_power_peaks_at_one_over_period(n, scale, cycles, window):
    data, period = plane_wave(n, scale, *cycles)
    k, power = radial_power_spectrum(make_map(data, scale), window=window)
    assert k.unit == 1 / u.arcsec and power.unit == u.G**2 * u.arcsec**2
    dk = k[1] - k[0]
    assert dk.to_value(1 / u.arcsec) == pytest.approx(1 / (n * scale))
    peak = k[np.nanargmax(power.value)]
    assert abs(peak - 1 / (period * u.arcsec)) <= dk / 2


def test_same_field_at_two_pixel_scales_gives_the_same_spectrum():
    # A field of 64" sampled at 0.5" and at 0.25": same k of the peak, same PSD there.
    spectra = []
    for n, scale in ((128, 0.5), (256, 0.25)):
        data = plane_wave(n, scale, 12, 5, amplitude=100.0)[0] + plane_wave(n, scale, 3, 0, amplitude=40.0)[0]
        spectra.append(radial_power_spectrum(make_map(data, scale), window=None))
    (k1, p1), (k2, p2) = spectra
    np.testing.assert_allclose(k1.value, k2.value[: len(k1)], rtol=1e-12)
    for p in (p1, p2):
        assert set(np.argsort(p.value)[-2:]) == {3, 13}  # 3 and 13 cycles per 64" (|(12, 5)| = 13)
    np.testing.assert_allclose(p1.value[[3, 13]], p2.value[[3, 13]], rtol=1e-9)
    # A plane wave of amplitude A over a field of area S has PSD A^2 S / 4 in each of its two modes.
    n_modes_13 = np.sum(
        np.rint(np.hypot(*np.meshgrid(np.fft.fftfreq(128, 1 / 128), np.fft.fftfreq(128, 1 / 128)))) == 13
    )
    assert p1.value[13] == pytest.approx(2 * 100.0**2 * 64**2 / 4 / n_modes_13, rel=1e-9)


@pytest.mark.parametrize("window", [None, "hann"])
@pytest.mark.parametrize(("n", "scale"), [(256, 0.5), (320, 2.0)])
def test_white_noise_has_flat_psd_sigma2_dx_dy(n, scale, window):
    sigma = 7.0
    data = np.random.default_rng(2).normal(0, sigma, size=(n, n))
    k, power = radial_power_spectrum(make_map(data, scale), window=window)
    # The first few bins hold few modes (and, with a window, lose some power to the mean removal).
    level = np.mean(power.value[5:])
    # A taper correlates neighbouring modes (about 4x fewer independent ones for a 2-D Hann), hence
    # a tolerance of about 3 standard deviations of this estimate for the Hann case.
    assert level == pytest.approx(sigma**2 * scale**2, rel=0.03 if window is None else 0.045)
    # Flat: the lower and upper thirds of the k range agree (within 3 standard deviations).
    third = len(k) // 3
    assert np.mean(power.value[5:third]) == pytest.approx(np.mean(power.value[-third:]), rel=0.15)


def test_parseval_sum_of_psd_over_modes_is_the_variance():
    # A smooth random field (all power well inside the Nyquist circle): sum_bins P * n_modes * dk^2
    # is the variance of the map.
    from scipy.ndimage import gaussian_filter

    n, scale = 256, 0.5
    rng = np.random.default_rng(3)
    data = 50 + gaussian_filter(rng.normal(0, 100, size=(n, n)), 4, mode="wrap")
    k, power = radial_power_spectrum(make_map(data, scale), window=None)
    freq = np.fft.fftfreq(n, scale)
    kk = np.hypot(freq[:, None], freq[None, :])
    dk = 1 / (n * scale)
    counts = np.bincount(np.floor(kk.ravel() / dk + 0.5).astype(int))[: len(k)]
    total = np.sum(power.value * counts) * dk * dk
    assert total == pytest.approx(np.var(data), rel=1e-6)
    assert power.value[0] == pytest.approx(0, abs=1e-9 * power.value.max())  # mean removed


def test_radial_spectrum_nbins_and_validation():
    smap = make_map(np.random.default_rng(4).normal(size=(64, 64)), 0.5)
    k, power = radial_power_spectrum(smap, nbins=9)
    assert len(k) == len(power) == 9
    assert k[-1].to_value(1 / u.arcsec) == pytest.approx(1.0)  # Nyquist of 0.5"
    with pytest.raises(ValueError, match="nbins"):
        radial_power_spectrum(smap, nbins=1)
    with pytest.raises(TypeError, match="sunpy Map"):
        radial_power_spectrum(np.zeros((8, 8)))


def test_nan_pixels_get_no_weight():
    # White noise with a NaN hole: the PSD level is still sigma^2 dx dy.
    sigma, scale = 3.0, 0.5
    data = np.random.default_rng(5).normal(0, sigma, size=(256, 256))
    data[100:180, 60:200] = np.nan
    k, power = radial_power_spectrum(make_map(data, scale), window=None)
    assert np.mean(power.value[5:]) == pytest.approx(sigma**2 * scale**2, rel=0.05)


# ------------------------------------------------------------------------------------------------
# Small-scale power and spectral error


def test_small_scale_fraction_and_spectral_error_analytic(hmi_cutout):
    twice = with_data(hmi_cutout, 2 * hmi_cutout.data)
    lowres_scale = 4 * hmi_cutout.scale.axis1
    assert small_scale_power_fraction(hmi_cutout, hmi_cutout) == 1.0
    assert small_scale_power_fraction(twice, hmi_cutout) == pytest.approx(4.0, rel=1e-12)
    assert spectral_error(hmi_cutout, hmi_cutout, lowres_scale) == 0.0
    assert spectral_error(twice, hmi_cutout, lowres_scale) == pytest.approx(np.log(4.0), rel=1e-12)
    assert spectral_error(hmi_cutout, twice, lowres_scale) == pytest.approx(np.log(4.0), rel=1e-12)
    # The same prediction in other (convertible) units is the same prediction.
    in_tesla = make_map(np.asarray(hmi_cutout.data) * 1e-4, 0.5, unit=u.T)
    in_gauss = make_map(np.asarray(hmi_cutout.data), 0.5)
    assert small_scale_power_fraction(in_tesla, in_gauss) == pytest.approx(1.0, rel=1e-12)


def test_small_scale_fraction_only_counts_scales_below_the_cutoff():
    # Waves of 1" and 8" period (0.5" and 4" features) of equal amplitude: the 8" one does not
    # count, the 1" one does.
    n, scale = 256, 0.25
    small = plane_wave(n, scale, 64, 0)[0]
    large = plane_wave(n, scale, 0, 8)[0]
    truth = make_map(small + large, scale)
    assert small_scale_power_fraction(make_map(large, scale), truth, window=None) < 1e-20
    assert small_scale_power_fraction(make_map(small, scale), truth, window=None) == pytest.approx(1.0)
    assert small_scale_power_fraction(
        make_map(small + 3 * large, scale), truth, window=None
    ) == pytest.approx(1.0)


def test_small_scale_and_spectral_error_validation(hmi_cutout, mdi_cutout):
    with pytest.raises(ValueError, match="Nyquist"):
        small_scale_power_fraction(mdi_cutout, mdi_cutout)
    half = hmi_cutout.submap([0, 0] * u.pix, top_right=[255, 255] * u.pix)
    with pytest.raises(ValueError, match=r"\(512, 512\) and \(256, 256\)"):
        spectral_error(hmi_cutout, half, 2 * u.arcsec / u.pix)
    with pytest.raises(ValueError, match="coarser"):
        spectral_error(hmi_cutout, hmi_cutout, 0.25 * u.arcsec / u.pix)
    with pytest.raises(u.UnitsError):
        spectral_error(hmi_cutout, hmi_cutout, 2 * u.G)
    # arcsec and arcsec/pix are both read as the input's pixel scale.
    blurred = with_data(hmi_cutout, butterworth_split(hmi_cutout, 4 * u.arcsec)[0].data)
    assert spectral_error(blurred, hmi_cutout, 2 * u.arcsec) == spectral_error(
        blurred, hmi_cutout, 2 * u.arcsec / u.pix
    )


def _gain_above(smap, k_cut, gain):
    """``smap`` with every Fourier mode of ``|k| > k_cut`` (1/arcsec) multiplied by ``gain``."""
    ny, nx = smap.data.shape
    dx, dy = (float(v.to_value(u.arcsec / u.pix)) for v in smap.scale)
    ky, kx = np.meshgrid(np.fft.fftfreq(ny, dy), np.fft.fftfreq(nx, dx), indexing="ij")
    factor = np.where(np.hypot(kx, ky) > k_cut, gain, 1.0)
    return with_data(smap, np.fft.ifft2(np.fft.fft2(np.asarray(smap.data, dtype=float)) * factor).real)


@pytest.mark.parametrize("nbins", [None, 40])
def test_spectral_error_counts_exactly_the_added_scales(hmi_cutout, nbins):
    """
    A prediction whose Fourier modes are the truth's, times 2 in amplitude above a cut: without a
    taper its power is exactly 4 times the truth's in every bin above the cut and the same below, so
    the error is ln 4 times the share of the bins between the input's Nyquist frequency (2" pixels)
    and the output's that lie above the cut, and 0 for a cut at or below the input's Nyquist.
    """
    low = 2 * u.arcsec / u.pix
    k_in = 1 / (2 * 2.0)
    kwargs = {"window": None, "nbins": nbins}
    k, _ = radial_power_spectrum(hmi_cutout, nbins=nbins, window=None)
    k = k.to_value(1 / u.arcsec)
    in_range = k > k_in
    for k_cut in (0.3, 0.5, 0.7):
        pred = _gain_above(hmi_cutout, k_cut, 2.0)
        share = np.mean(k[in_range] > k_cut)
        measured = spectral_error(pred, hmi_cutout, low, **kwargs)
        exact = np.log(4.0) * share
        mixed = np.log(4.0) / in_range.sum()  # at most one bin straddles the cut
        assert abs(measured - exact) <= mixed + 1e-9, (k_cut, measured, exact)
        assert 0 < measured < np.log(4.0)
    # Power changed only at scales the input already resolves (k below 0.25/arcsec): no error at all.
    below = with_data(hmi_cutout, hmi_cutout.data + 5 * _gain_above(hmi_cutout, 0.2, 0.0).data)
    assert spectral_error(below, hmi_cutout, low, **kwargs) == pytest.approx(0.0, abs=1e-9)
    # ... but the same change counts for an input of 8" pixels, whose Nyquist frequency lies below it.
    assert spectral_error(below, hmi_cutout, 8 * u.arcsec / u.pix, **kwargs) > 0.1
    # The taper is passed on: with the default Hann window the boosted prediction scores otherwise.
    assert spectral_error(pred, hmi_cutout, low, nbins=nbins) != spectral_error(
        pred, hmi_cutout, low, **kwargs
    )


def test_spectral_error_names_what_is_wrong(hmi_cutout):
    with pytest.raises(TypeError, match="pred"):
        spectral_error(np.asarray(hmi_cutout.data), hmi_cutout, 2 * u.arcsec)
    with pytest.raises(TypeError, match="truth"):
        spectral_error(hmi_cutout, np.asarray(hmi_cutout.data), 2 * u.arcsec)
    with pytest.raises(ValueError, match="coarser than the maps' pixel scale"):
        spectral_error(hmi_cutout, hmi_cutout, hmi_cutout.scale.axis1)  # equal is not coarser
    coarser = make_map(np.asarray(hmi_cutout.data), 0.6)
    with pytest.raises(ValueError, match=r"pixel scales are 0\.6 x 0\.6 and 0\.504271 x 0\.504271 arcsec"):
        spectral_error(coarser, hmi_cutout, 2 * u.arcsec)
    with pytest.raises(u.UnitsError, match="lowres_scale"):
        spectral_error(hmi_cutout, hmi_cutout, 2 * u.G)


def test_bicubic_lacks_small_scale_power_on_real_hmi(hmi_cutout, degraded_hmi):
    lowres, bicubic = degraded_hmi
    assert bicubic.data.shape == hmi_cutout.data.shape
    assert u.allclose(bicubic.scale.axis1, hmi_cutout.scale.axis1)
    fraction = small_scale_power_fraction(bicubic, hmi_cutout)
    error = spectral_error(bicubic, hmi_cutout, lowres.scale.axis1)
    print(
        f"bicubic on the HMI cut-out: small-scale power fraction {fraction:.4f}, spectral error {error:.3f}"
    )
    assert 0 < fraction < 0.12
    assert spectral_error(hmi_cutout, hmi_cutout, lowres.scale.axis1) == 0
    assert error > 1.0  # bicubic's power beyond the input's Nyquist is off by more than a factor e
    # Without a taper the cut-out's edges leak power to every k and hide much of bicubic's deficit,
    # most of all where it is deepest, below 1" (0.01 of the truth's with the window, 0.1 without).
    finest = small_scale_power_fraction(bicubic, hmi_cutout, 1 * u.arcsec)
    assert finest < 0.5 * fraction
    assert small_scale_power_fraction(bicubic, hmi_cutout, 1 * u.arcsec, window=None) > 5 * finest


# ------------------------------------------------------------------------------------------------
# Butterworth split


def _coefficient(data, wave):
    """Least-squares amplitude of ``wave`` in ``data`` (waves here are mutually orthogonal)."""
    return np.sum(data * wave) / np.sum(wave * wave)


@pytest.mark.parametrize("order", [1.0, 2.0, 4.0])
def test_butterworth_split_separates_1_and_16_arcsec_periods(order):
    n, scale = 256, 0.25
    fine, fine_period = plane_wave(n, scale, 64, 0, amplitude=30.0)  # 1" period: 0.5" features
    coarse, coarse_period = plane_wave(n, scale, 0, 4, amplitude=500.0)  # 16" period: 8" features
    assert (fine_period, coarse_period) == (1.0, 16.0)
    low, high = butterworth_split(make_map(fine + coarse, scale), order=order, npad=0)
    # Squared Butterworth gains with the cut-off at 2" features, f_c = 1/4":
    # H_low = 1 / (1 + (f / f_c)^(2 order)).
    h_low = lambda period: 1 / (1 + (4.0 / period) ** (2 * order))  # noqa: E731
    assert _coefficient(high.data, fine) == pytest.approx(1 - h_low(1.0), rel=1e-9)
    assert _coefficient(low.data, fine) == pytest.approx(h_low(1.0), rel=1e-9)
    assert _coefficient(low.data, coarse) == pytest.approx(h_low(16.0), rel=1e-9)
    assert _coefficient(high.data, coarse) == pytest.approx(1 - h_low(16.0), abs=1e-9)
    if order >= 2:
        assert _coefficient(high.data, fine) > 0.9 and _coefficient(low.data, coarse) > 0.99
        assert abs(_coefficient(high.data, coarse)) < 0.01 and abs(_coefficient(low.data, fine)) < 0.06


def test_butterworth_cutoff_is_at_the_2_arcsec_scale():
    # The skimage cutoff_frequency_ratio is relative to the sampling frequency: a wave of 2" features
    # (4" period, the Nyquist frequency of 2" pixels) must get gain exactly 1/2 in both parts, at any
    # pixel scale.
    for n, scale, cycles in ((256, 0.25, 16), (200, 0.5, 25), (120, 0.8, 24)):
        wave, period = plane_wave(n, scale, cycles, 0)
        assert period == pytest.approx(4.0)
        low, high = butterworth_split(make_map(wave, scale), npad=0)
        assert _coefficient(low.data, wave) == pytest.approx(0.5, rel=1e-9)
        assert _coefficient(high.data, wave) == pytest.approx(0.5, rel=1e-9)


def test_butterworth_split_with_edge_padding_still_separates():
    n, scale = 256, 0.25
    fine = plane_wave(n, scale, 64, 0, amplitude=30.0)[0]
    coarse = plane_wave(n, scale, 0, 4, amplitude=500.0)[0]
    low, high = butterworth_split(make_map(fine + coarse, scale))  # default npad: 32 pixels here
    inner = (slice(32, -32), slice(32, -32))
    # Both gains are 1 / (1 + 4^-4) = 0.996 on a periodic map; the padding keeps them inside.
    assert _coefficient(high.data[inner], fine[inner]) == pytest.approx(0.996, abs=0.01)
    assert _coefficient(low.data[inner], coarse[inner]) == pytest.approx(0.996, abs=0.01)


def test_butterworth_split_of_real_hmi_sums_back_and_keeps_header(hmi_cutout):
    data = np.array(hmi_cutout.data, dtype=float)
    y, x = np.mgrid[0:512, 0:512]
    data[np.hypot(x - 400, y - 100) < 60] = np.nan  # an off-limb-like hole
    smap = with_data(hmi_cutout, data)
    low, high = butterworth_split(smap)
    for part in (low, high):
        assert type(part) is type(hmi_cutout) and part.unit == hmi_cutout.unit
        assert part.wcs.wcs.compare(hmi_cutout.wcs.wcs)
        np.testing.assert_array_equal(np.isnan(part.data), np.isnan(data))
    finite = np.isfinite(data)
    residual = np.max(np.abs(low.data + high.data - data)[finite])
    print(f"max |low + high - data| = {residual:.2e} G (data range {np.ptp(data[finite]):.0f} G)")
    assert residual < 1e-10 * np.ptp(data[finite])
    # The split is not trivial: the high-pass carries the small scales, the low-pass the rest.
    assert 0 < np.nanstd(high.data) < 0.5 * np.nanstd(low.data)


def test_butterworth_split_validation(mdi_cutout):
    with pytest.raises(ValueError, match="Nyquist"):
        butterworth_split(mdi_cutout)  # 2" pixels hold nothing below 2"
    with pytest.raises(
        ValueError,
        match=r"needs square pixels; the map's are 0\.2500 x 0\.5000 arcsec/pixel\. Resample it first "
        r"\(e\.g\. with smap\.resample or smap\.reproject_to\)\.",
    ):
        butterworth_split(make_map(np.zeros((32, 32)), 0.25, 0.5))
    # Square to 0.1 % is square: header scales rounded at the 4th digit are accepted.
    butterworth_split(make_map(np.random.default_rng(0).normal(size=(32, 32)), 0.25, 0.2501))
    with pytest.raises(u.UnitsError):
        butterworth_split(make_map(np.zeros((32, 32)), 0.25), cutoff=2 * u.m)


def test_validation_messages_name_the_argument(hmi_cutout):
    # anchored at the start: the message begins with the argument's own name
    with pytest.raises(TypeError, match=r"^pred must be a sunpy Map, got ndarray\."):
        spectral_error(np.zeros((4, 4)), hmi_cutout, 2 * u.arcsec)
    with pytest.raises(TypeError, match=r"^truth must be a sunpy Map, got ndarray\."):
        spectral_error(hmi_cutout, np.zeros((4, 4)), 2 * u.arcsec)
    with pytest.raises(u.UnitsError, match=r"^lowres_scale must be an angle per pixel"):
        spectral_error(hmi_cutout, hmi_cutout, 2 * u.G)
    for bad in (0 * u.arcsec, -2 * u.arcsec / u.pix, np.nan * u.arcsec, np.inf * u.arcsec / u.pix):
        with pytest.raises(ValueError, match=r"^lowres_scale must be positive and finite, got"):
            spectral_error(hmi_cutout, hmi_cutout, bad)


def test_fourier_amplitude_is_the_fft_of_the_tapered_data(hmi_cutout):
    from scipy.signal import get_window

    data = np.asarray(hmi_cutout.data, dtype=float)
    plain = fourier_amplitude(hmi_cutout, window=None)
    np.testing.assert_allclose(plain.amplitude.value, np.abs(np.fft.fftshift(np.fft.fft2(data))), rtol=1e-10)
    taper = np.outer(get_window("hann", data.shape[0]), get_window("hann", data.shape[1]))
    tapered = fourier_amplitude(hmi_cutout, window="hann")
    np.testing.assert_allclose(
        tapered.amplitude.value, np.abs(np.fft.fftshift(np.fft.fft2(data * taper))), rtol=1e-10
    )
    assert plain.amplitude.unit == hmi_cutout.unit
    unitless = fourier_amplitude(
        sunpy.map.Map(data, {k: v for k, v in hmi_cutout.meta.items() if k != "bunit"})
    )
    assert unitless.amplitude.unit == u.dimensionless_unscaled


def test_radial_spectrum_of_a_rectangular_map_with_rectangular_pixels():
    # 128 x 64 pixels of 0.5" x 1": frequency steps 1/64" and 1/64" but Nyquist 1" and 0.5" apart.
    data = np.random.default_rng(1).normal(size=(64, 128))
    smap = make_map(data, 0.5, scale_y=1.0)
    k, power = radial_power_spectrum(smap, window=None)
    k = k.to_value(1 / u.arcsec)
    step = 1 / min(128 * 0.5, 64 * 1.0)
    np.testing.assert_allclose(np.diff(k), step, rtol=1e-9)
    assert k[-1] <= min(1 / (2 * 0.5), 1 / (2 * 1.0)) + step  # up to the lower Nyquist frequency
    wide = make_map(np.random.default_rng(1).normal(size=(64, 256)), 0.5, scale_y=0.5)
    kw, _ = radial_power_spectrum(wide, window=None)
    np.testing.assert_allclose(np.diff(kw.to_value(1 / u.arcsec)), 1 / min(256 * 0.5, 64 * 0.5), rtol=1e-9)
    # Two bins are enough; one is not.
    assert len(radial_power_spectrum(smap, nbins=2)[0]) == 2


def test_masked_pixels_are_missing_and_the_taper_follows_each_axis(hmi_cutout):
    from scipy.signal import get_window

    data = np.asarray(hmi_cutout.data, dtype=float)[:, :384]  # 512 rows, 384 columns
    rect = make_map(data, 0.5)
    taper = np.outer(get_window("hann", 512), get_window("hann", 384))
    np.testing.assert_allclose(
        fourier_amplitude(rect, window="hann").amplitude.value,
        np.abs(np.fft.fftshift(np.fft.fft2(data * taper))),
        rtol=1e-10,
    )
    # A mask means missing data, as NaN does (both are set to 0 before the transform).
    mask = np.zeros(data.shape, dtype=bool)
    mask[100:140, 50:90] = True
    masked = sunpy.map.Map(data, rect.meta, mask=mask)
    holed = make_map(np.where(mask, np.nan, data), 0.5)
    np.testing.assert_array_equal(
        fourier_amplitude(masked).amplitude.value, fourier_amplitude(holed).amplitude.value
    )
    np.testing.assert_array_equal(radial_power_spectrum(masked).power, radial_power_spectrum(holed).power)
    assert not np.array_equal(radial_power_spectrum(masked).power, radial_power_spectrum(rect).power)
