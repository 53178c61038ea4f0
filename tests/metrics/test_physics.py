"""
Tests of sunpy_superres.metrics.physics.

Analytic cases use a synthetic field on a full-disk header made by sunpy for an Earth observer; the
reference geometry is computed independently with sunpy's coordinate transforms, not with the
module's own numpy geometry.
"""

import functools

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from scipy.optimize import brentq
from sunpy.coordinates import Heliocentric, HeliographicStonyhurst, Helioprojective, get_earth
from sunpy.map.header_helper import make_fitswcs_header, make_heliographic_header

from sunpy_superres.metrics.physics import (
    MSH,
    active_region_area,
    net_flux,
    percentage_difference,
    pixel_area,
    quiet_noise_gauss,
    quiet_sun_noise,
    subpixel_cancellation,
    unsigned_flux,
)

OBSTIME = "2015-03-06T12:00:00"


def full_disk_map(data=None, *, shape=(1024, 1024), scale=2.0, unit=u.G):
    """An MDI-like 2"/pixel full-disk map seen from Earth, with ``data`` (zeros if None)."""
    earth = get_earth(OBSTIME)
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=Helioprojective(observer=earth, obstime=OBSTIME))
    header = make_fitswcs_header(shape, centre, scale=[scale, scale] * u.arcsec / u.pix, unit=unit)
    return sunpy.map.Map(np.zeros(shape) if data is None else data, header)


def surface_reference(smap):
    """Per-pixel (distance to observer, mu, HGS unit vector), from sunpy coordinate transforms."""
    coords = sunpy.map.all_coordinates_from_map(smap).make_3d()
    distance = coords.distance.to_value(u.m)
    hcc = coords.transform_to(Heliocentric(observer=smap.observer_coordinate, obstime=coords.obstime))
    xyz = hcc.cartesian.xyz.to_value(u.m)
    normal = xyz / smap.rsun_meters.to_value(u.m)
    to_observer = np.stack([-xyz[0], -xyz[1], smap.dsun.to_value(u.m) - xyz[2]])
    mu = np.sum(normal * to_observer, axis=0) / np.linalg.norm(to_observer, axis=0)
    hgs = coords.transform_to(HeliographicStonyhurst(obstime=coords.obstime)).cartesian.xyz.value
    return distance, mu, hgs / np.linalg.norm(hgs, axis=0)


@functools.cache
def disk_template():
    """The default full-disk map and its reference geometry (computed once: about a second)."""
    smap = full_disk_map()
    return smap, surface_reference(smap)


def spherical_cap(lon, lat, radius):
    """Pixels of `disk_template` whose surface point is within ``radius`` (heliocentric angle) of a point."""
    template, (_, _, unit_vectors) = disk_template()
    centre = SkyCoord(lon, lat, frame=HeliographicStonyhurst(obstime=template.date)).cartesian.xyz.value
    cos_angle = np.einsum("i...,i->...", unit_vectors, centre)
    with np.errstate(invalid="ignore"):
        return cos_angle > np.cos(radius)


def cap_area(smap, radius):
    return 2 * np.pi * smap.rsun_meters**2 * (1 - np.cos(radius))


def test_pixel_area_matches_sunpy_geometry_on_real_rotated_header(hmi_cutout):
    # The HMI header has CROTA2 ~ 180 and its own DSUN/RSUN: the area must still be Omega d^2 / mu
    # with d and mu from sunpy's 3-D coordinates.
    distance, mu, _ = surface_reference(hmi_cutout)
    solid_angle = (hmi_cutout.scale.axis1 * hmi_cutout.scale.axis2 * u.pix**2).to_value(u.sr)
    expected = solid_angle * distance**2 / mu * u.m**2
    area = pixel_area(hmi_cutout)
    assert area.unit.is_equivalent(u.m**2)
    np.testing.assert_allclose(area.to_value(u.m**2), expected.to_value(u.m**2), rtol=1e-8)
    # Using DSUN instead of the per-pixel distance would be about 1 % off (docs/dev/design.rst, measurements).
    dsun_area = solid_angle * hmi_cutout.dsun.to_value(u.m) ** 2 / mu
    assert np.all(dsun_area / area.to_value(u.m**2) > 1.005)


@pytest.mark.parametrize("mu_min", [0.1, 0.3, 0.6])
def test_area_of_disk_above_mu_min_is_analytic(mu_min):
    smap = full_disk_map()
    radius, dsun = smap.rsun_meters.to_value(u.m), smap.dsun.to_value(u.m)

    def mu_at(theta):  # mu at heliocentric angle theta from the sub-observer point, finite distance
        to_observer = np.sqrt(dsun**2 - 2 * dsun * radius * np.cos(theta) + radius**2)
        return (dsun * np.cos(theta) - radius) / to_observer

    theta_max = brentq(lambda theta: mu_at(theta) - mu_min, 0, np.pi / 2)
    expected = cap_area(smap, theta_max * u.rad)
    total = np.nansum(pixel_area(smap, mu_min=mu_min))
    assert abs(percentage_difference(total, expected)) < 0.1 * u.percent


def test_pixel_area_nan_off_disk_and_below_mu_min(mdi_limb_cutout):
    area = pixel_area(mdi_limb_cutout, mu_min=0.2)
    on_disk = sunpy.map.coordinate_is_on_solar_disk(sunpy.map.all_coordinates_from_map(mdi_limb_cutout))
    _, mu, _ = surface_reference(mdi_limb_cutout)
    assert (~on_disk).any() and (on_disk & (mu < 0.2)).any()  # the cut-out really spans both cases
    expected_valid = on_disk & (mu >= 0.2)
    np.testing.assert_array_equal(np.isfinite(area), expected_valid)


@pytest.mark.parametrize(("lon", "lat", "radius"), [(0, 0, 20), (30, 15, 20), (-40, -20, 10), (20, 10, 5)])
def test_flux_of_uniform_field_on_spherical_cap(lon, lat, radius):
    # A line-of-sight field B0 on every pixel of a cap: each pixel carries B0 * Omega d^2 / mu, so the
    # flux is B0 times the cap's area 2 pi R^2 (1 - cos theta0), whatever its foreshortening.
    b0 = 1200 * u.G
    template, _ = disk_template()
    cap = spherical_cap(lon * u.deg, lat * u.deg, radius * u.deg)
    expected = (b0 * cap_area(template, radius * u.deg)).to(u.Mx)
    positive = sunpy.map.Map(np.where(cap, b0.value, 0.0), template.meta)
    negative = sunpy.map.Map(np.where(cap, -b0.value, 0.0), template.meta)

    assert abs(percentage_difference(unsigned_flux(positive), expected)) < 0.1 * u.percent
    assert abs(percentage_difference(net_flux(positive), expected)) < 0.1 * u.percent
    assert abs(percentage_difference(unsigned_flux(negative), expected)) < 0.1 * u.percent
    assert abs(percentage_difference(net_flux(negative), -expected)) < 0.1 * u.percent


def test_radial_flux_of_radial_field_on_cap():
    # A radial field Br seen along the line of sight is Br * mu; radial=True must undo it.
    b_radial = -800 * u.G
    template, (_, mu, _) = disk_template()
    cap = spherical_cap(35 * u.deg, -10 * u.deg, 15 * u.deg)
    smap = sunpy.map.Map(np.where(cap, b_radial.value * mu, 0.0), template.meta)
    expected = (b_radial * cap_area(template, 15 * u.deg)).to(u.Mx)

    assert abs(percentage_difference(net_flux(smap, radial=True), expected)) < 0.1 * u.percent
    assert abs(percentage_difference(unsigned_flux(smap, radial=True), -expected)) < 0.1 * u.percent
    # Without the correction the line-of-sight flux is smaller, by the mean mu over the cap.
    assert unsigned_flux(smap) < 0.9 * unsigned_flux(smap, radial=True)


def test_flux_in_mx_per_cm2_equals_gauss():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 300, (256, 256))
    in_gauss = full_disk_map(data, shape=(256, 256), scale=8.0, unit=u.G)
    in_mx = full_disk_map(data, shape=(256, 256), scale=8.0, unit=u.Mx / u.cm**2)
    assert u.isclose(unsigned_flux(in_mx), unsigned_flux(in_gauss), rtol=1e-12)
    assert u.isclose(net_flux(in_mx), net_flux(in_gauss), rtol=1e-12)


def test_flux_of_real_hmi_cutout_survives_superpixel(hmi_cutout):
    coarse = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    # Net flux and total area do not depend on the grid.
    assert abs(percentage_difference(net_flux(coarse), net_flux(hmi_cutout))) < 0.01 * u.percent
    assert (
        abs(percentage_difference(np.nansum(pixel_area(coarse)), np.nansum(pixel_area(hmi_cutout))))
        < 0.01 * u.percent
    )
    # Unsigned flux does: opposite polarities and noise cancel inside a 2" pixel (measured 3 % less on
    # this cut-out). The coarse map's flux must be exactly the fine map's flux summed per 4x4 block.
    fine_terms = (hmi_cutout.data * pixel_area(hmi_cutout).to_value(u.cm**2)).reshape(128, 4, 128, 4)
    block_flux = np.abs(fine_terms.sum(axis=(1, 3))).sum() * u.Mx
    assert abs(percentage_difference(unsigned_flux(coarse), block_flux)) < 0.01 * u.percent
    assert unsigned_flux(coarse) < unsigned_flux(hmi_cutout)


def test_flux_ignores_nan_pixels(mdi_limb_cutout):
    assert np.isnan(mdi_limb_cutout.data).any()
    flux = unsigned_flux(mdi_limb_cutout)
    assert np.isfinite(flux) and flux > 0 * u.Mx
    # Setting more pixels to NaN removes exactly their contribution.
    area = pixel_area(mdi_limb_cutout).to_value(u.cm**2)
    data = mdi_limb_cutout.data.copy()
    data[:, 40:] = np.nan
    partial = sunpy.map.Map(data, mdi_limb_cutout.meta)
    dropped = np.nansum(np.abs(mdi_limb_cutout.data[:, 40:]) * area[:, 40:]) * u.Mx
    assert u.isclose(unsigned_flux(partial), flux - dropped, rtol=1e-10)


@pytest.mark.parametrize(("lon", "lat", "radius"), [(0, 0, 20), (-30, 25, 12)])
def test_active_region_area_of_cap(lon, lat, radius):
    template, _ = disk_template()
    cap = spherical_cap(lon * u.deg, lat * u.deg, radius * u.deg)
    smap = sunpy.map.Map(np.where(cap, -1500.0, 20.0), template.meta)
    result = active_region_area(smap)
    assert result.pixels == cap.sum()
    np.testing.assert_array_equal(result.mask, cap)
    expected = cap_area(template, radius * u.deg)
    assert abs(percentage_difference(result.area, expected)) < 0.1 * u.percent
    # 1 MSH is 1e-6 of the hemisphere 2 pi R^2, so a cap of angle theta0 is 1e6 (1 - cos theta0) MSH.
    expected_msh = 1e6 * (1 - np.cos(radius * u.deg)) * MSH
    assert abs(percentage_difference(result.area_msh, expected_msh)) < 0.1 * u.percent


def test_active_region_area_fills_contours_and_uses_threshold():
    template = full_disk_map(shape=(256, 256), scale=8.0)
    y, x = np.indices(template.data.shape)
    r1 = np.hypot(x - 100, y - 120)
    ring = (r1 <= 20) & (r1 > 8)  # strong ring around a weak hole: the hole belongs to the region
    disc = np.hypot(x - 160, y - 140) <= 10
    data = np.where(ring, 900.0, 0.0) + np.where(disc, -400.0, 0.0)
    smap = sunpy.map.Map(data, template.meta)

    result = active_region_area(smap)
    assert result.pixels == np.sum(r1 <= 20) + disc.sum()
    assert result.pixels > ring.sum() + disc.sum()
    np.testing.assert_allclose(
        result.area.to_value(u.Mm**2), np.sum(pixel_area(smap)[result.mask].to_value(u.Mm**2))
    )
    # At a threshold above the disc's 400 G only the (filled) ring is left.
    assert active_region_area(smap, 500 * u.G).pixels == np.sum(r1 <= 20)
    assert active_region_area(smap, 1 * u.kG).pixels == 0
    assert active_region_area(smap, 1 * u.kG).area == 0 * u.Mm**2


def test_active_region_area_excludes_pixels_beyond_mu_min(mdi_limb_cutout):
    strong = sunpy.map.Map(np.full(mdi_limb_cutout.data.shape, 1000.0), mdi_limb_cutout.meta)
    result = active_region_area(strong, mu_min=0.2)
    assert result.pixels == np.isfinite(pixel_area(strong, mu_min=0.2)).sum()
    assert 0 < result.pixels < strong.data.size


def test_percentage_difference():
    assert u.isclose(percentage_difference(110 * u.Mx, 100 * u.Mx), 10 * u.percent)
    assert u.isclose(percentage_difference(0.9e20 * u.Mx, 1e12 * u.Wb), -10 * u.percent)
    np.testing.assert_allclose(percentage_difference([1.0, 3.0], [2.0, 2.0]).to_value(u.percent), [-50, 50])
    with pytest.raises(ValueError, match="zero"):
        percentage_difference(1 * u.Mx, 0 * u.Mx)
    with pytest.raises(u.UnitConversionError):
        percentage_difference(1 * u.Mx, 1 * u.m**2)


def test_non_magnetic_map_raises():
    smap = full_disk_map(np.ones((64, 64)), shape=(64, 64), scale=32.0, unit=u.ct)
    with pytest.raises(ValueError, match="magnetogram in G"):
        unsigned_flux(smap)
    with pytest.raises(ValueError, match="magnetogram in G"):
        active_region_area(smap)


def test_heliographic_map_and_bad_mu_min_raise():
    frame = HeliographicStonyhurst(obstime=OBSTIME)
    header = make_heliographic_header(OBSTIME, get_earth(OBSTIME), (90, 180), frame="stonyhurst")
    header["bunit"] = "G"
    smap = sunpy.map.Map(np.zeros((90, 180)), header)
    assert isinstance(smap.coordinate_frame, type(frame))
    with pytest.raises(ValueError, match="helioprojective"):
        pixel_area(smap)
    with pytest.raises(ValueError, match="mu_min"):
        pixel_area(full_disk_map(shape=(64, 64), scale=32.0), mu_min=1.0)


# ------------------------------------------------------------------------------------------------
# Quiet-Sun noise


def white_noise(sigma, shape=(256, 256), seed=0):
    return np.random.default_rng(seed).normal(0.0, sigma, shape)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_quiet_noise_of_white_noise_is_its_sigma(factor):
    # The residual about a block mean of f x f pixels has sigma * sqrt(1 - 1/f**2): undone exactly,
    # so every block size gives sigma (65,536 pixels: the MAD's own error is about 0.5 %).
    field = white_noise(4.0)
    assert quiet_noise_gauss(field, factor=factor) == pytest.approx(4.0, rel=0.02)
    # It scales with the noise and does not see a constant offset below the threshold.
    assert quiet_noise_gauss(2.5 * field + 1.0, factor=factor) == pytest.approx(10.0, rel=0.02)


def test_quiet_noise_uses_only_blocks_below_the_threshold():
    field = white_noise(3.0)
    # Half the map: noise-free blocks whose mean is exactly 5 G (then -8 G) with a +-100 G pattern
    # inside, which would multiply the estimate if those blocks counted.
    pattern = np.tile([[100.0, -100.0], [-100.0, 100.0]], (64, 128))
    strong = field.copy()
    strong[:128] = pattern + 5.0
    assert quiet_noise_gauss(strong) == quiet_noise_gauss(field[128:])
    strong[:128] = pattern - 8.0
    assert quiet_noise_gauss(strong) == quiet_noise_gauss(field[128:])
    # A higher threshold takes them in.
    assert quiet_noise_gauss(strong, threshold=10.0) > 3 * quiet_noise_gauss(field[128:])


def test_quiet_noise_ignores_nan_and_trims_to_whole_blocks():
    field = white_noise(3.0, shape=(258, 259))
    whole = quiet_noise_gauss(field[:256, :256])
    assert quiet_noise_gauss(field) == whole  # the partial blocks at the edges are left out
    holed = field.copy()
    holed[:64] = np.nan
    assert quiet_noise_gauss(holed) == quiet_noise_gauss(field[64:256, :256])


def test_quiet_noise_needs_enough_quiet_pixels():
    with pytest.raises(
        ValueError,
        match=r"only 784 pixels lie in 4x4 blocks with \|mean\| < 5 G \(at least 1000 are needed\); "
        "give a map with more quiet Sun",
    ):
        quiet_noise_gauss(white_noise(3.0, shape=(30, 30)))
    assert quiet_noise_gauss(white_noise(3.0, shape=(30, 30)), min_pixels=784) > 0
    with pytest.raises(ValueError, match=r"only 0 pixels lie in 2x2 blocks with \|mean\| < 1 G"):
        quiet_noise_gauss(white_noise(3.0) + 50, factor=2, threshold=1.0)


def block_residual_mad(field, factor=4):
    """All of ``field``'s pixels about their block means: the normal-scaled MAD, block share undone."""
    from scipy.stats import median_abs_deviation

    ny, nx = field.shape
    means = field.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3), keepdims=True)
    residual = (field.reshape(ny // factor, factor, nx // factor, factor) - means).ravel()
    return median_abs_deviation(residual, scale="normal") / np.sqrt(1 - 1 / factor**2)


def test_quiet_noise_on_the_blocks_a_reference_calls_quiet():
    # The reference is quiet in its lower half only; the field is noise everywhere but 40 G strong
    # (a uniform 40 G, so not quiet by its own block means) in its lower half.
    reference = white_noise(3.0, seed=1)
    reference[:128] += 50.0
    field = white_noise(6.0, seed=2)
    field[128:] += 40.0
    # Measured on the reference's quiet half, which the field's own means would have left out.
    assert quiet_noise_gauss(field, reference=reference) == pytest.approx(
        block_residual_mad(field[128:]), rel=1e-12
    )
    with pytest.raises(ValueError, match="only 0 pixels"):
        quiet_noise_gauss(field[128:], reference=reference[:128])
    # Where the field is NaN the block does not count, however quiet the reference.
    holed = field.copy()
    holed[200:] = np.nan
    expected = block_residual_mad(field[128:200])
    assert quiet_noise_gauss(holed, reference=reference) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"reference has shape \(256, 255\) and the field \(256, 256\)"):
        quiet_noise_gauss(field, reference=reference[:, 1:])
    # The same through maps, in any field unit.
    on_ref = quiet_sun_noise(
        full_disk_map(field, shape=field.shape),
        reference=full_disk_map(reference * 1e-4, shape=field.shape, unit=u.T),
    )
    assert on_ref.unit == u.G and on_ref.value == pytest.approx(quiet_noise_gauss(field, reference=reference))


def test_quiet_sun_noise_of_a_map_in_any_field_unit():
    field = white_noise(4.0, shape=(1024, 1024))
    in_gauss = full_disk_map(field)
    noise = quiet_sun_noise(in_gauss)
    assert noise.unit == u.G and noise.value == quiet_noise_gauss(field)
    assert quiet_sun_noise(full_disk_map(field * 1e-4, unit=u.T)).to_value(u.G) == pytest.approx(noise.value)
    assert quiet_sun_noise(full_disk_map(field, unit=u.Mx / u.cm**2)).value == pytest.approx(noise.value)
    assert quiet_sun_noise(in_gauss, factor=2).value == quiet_noise_gauss(field, factor=2)
    assert quiet_sun_noise(in_gauss, threshold=4e-4 * u.T).value == quiet_noise_gauss(field, threshold=4.0)
    with pytest.raises(ValueError, match="threshold must be positive, got 0.0 G"):
        quiet_sun_noise(in_gauss, threshold=0 * u.G)
    with pytest.raises(ValueError):
        quiet_sun_noise(full_disk_map(field, unit=u.m / u.s))


def test_masked_pixels_count_as_missing_and_the_map_is_not_modified():
    data = np.full((64, 64), 300.0)
    data[:, 32:] = -300.0
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:20, 5:50] = True
    header = dict(full_disk_map(shape=(64, 64), scale=32.0).meta)
    masked = sunpy.map.Map(data.copy(), header, mask=mask)
    holed = full_disk_map(np.where(mask, np.nan, data), shape=(64, 64), scale=32.0)
    assert u.allclose(unsigned_flux(masked), unsigned_flux(holed), rtol=0)
    assert unsigned_flux(masked) < unsigned_flux(full_disk_map(data, shape=(64, 64), scale=32.0))
    assert u.allclose(net_flux(masked), net_flux(holed), rtol=0)
    ar_masked, ar_holed = active_region_area(masked), active_region_area(holed)
    assert ar_masked.pixels == ar_holed.pixels and u.allclose(ar_masked.area, ar_holed.area, rtol=0)
    np.testing.assert_array_equal(ar_masked.mask, ar_holed.mask)
    np.testing.assert_array_equal(masked.data, data)  # the caller's map keeps its values


def test_a_non_magnetic_map_is_named_by_its_unit_and_bunit():
    smap = full_disk_map(np.ones((64, 64)), shape=(64, 64), scale=32.0, unit=u.m / u.s)
    with pytest.raises(ValueError, match=r"this map's unit is Unit\(\"m / s\"\) \(BUNIT='m s-1'\)"):
        unsigned_flux(smap)


def test_pixel_area_with_rectangular_pixels_matches_sunpy():
    # 32" x 16" pixels, near the limb too: the x and y scales enter separately, and mu_min=0 is allowed.
    earth = get_earth(OBSTIME)
    centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=Helioprojective(observer=earth, obstime=OBSTIME))
    header = make_fitswcs_header((128, 64), centre, scale=[32, 16] * u.arcsec / u.pix, unit=u.G)
    smap = sunpy.map.Map(np.zeros((128, 64)), header)
    distance, mu, _ = surface_reference(smap)
    solid_angle = (32 * u.arcsec * 16 * u.arcsec).to_value(u.sr)
    expected = solid_angle * distance**2 / mu
    area = pixel_area(smap, mu_min=0.0).to_value(u.m**2)
    on_disk = np.isfinite(expected) & (mu > 0)
    np.testing.assert_allclose(area[on_disk], expected[on_disk], rtol=1e-8)
    assert np.all(np.isnan(area[~np.isfinite(distance)]))  # lines of sight that miss the Sun


def test_quiet_noise_is_the_normal_scaled_mad_of_the_residual():
    # Skewed noise (exponential), whose residual about its block means has a median away from 0: the
    # MAD is about that median, as numpy writes it here independently of the module's scipy call.
    field = np.random.default_rng(1).exponential(3.0, (256, 256)) - 3.0
    mean = np.kron(field.reshape(64, 4, 64, 4).mean(axis=(1, 3)), np.ones((4, 4)))
    residual = (field - mean)[np.abs(mean) < 5.0]
    assert abs(np.median(residual)) > 0.1
    mad = np.median(np.abs(residual - np.median(residual)))
    expected = mad / (np.sqrt(2) * 0.4769362762044699) / np.sqrt(1 - 1 / 16)  # 1 / Phi^-1(3/4) = 1.4826
    assert quiet_noise_gauss(field) == pytest.approx(expected, rel=1e-12)
    # float32 data are read as float64, not rounded again
    assert quiet_noise_gauss(field.astype(np.float32)) == quiet_noise_gauss(
        field.astype(np.float32).astype(float)
    )


def test_quiet_sun_noise_takes_any_positive_threshold_and_mx_per_cm2():
    import warnings

    noise = white_noise(0.1, shape=(512, 512))
    smap = full_disk_map(noise, shape=(512, 512))
    assert quiet_sun_noise(smap, threshold=0.5 * u.G) == quiet_noise_gauss(noise, threshold=0.5) * u.G
    with pytest.raises(ValueError, match=r"^threshold must be positive, got 0.0 G$"):
        quiet_sun_noise(smap, threshold=0 * u.G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy's note on a BUNIT it cannot read
        mx = sunpy.map.Map(noise, {**smap.meta, "bunit": "Mx/cm2"})
    assert quiet_sun_noise(mx, threshold=0.5 * u.G) == quiet_sun_noise(smap, threshold=0.5 * u.G)


def test_messages_of_the_physics_refusals():
    with pytest.raises(ValueError) as info:
        percentage_difference(1.0, [2.0, 0.0])
    assert str(info.value) == "truth is zero: the percentage difference is undefined"
    smap = full_disk_map(shape=(64, 64))
    carrington = sunpy.map.Map(
        smap.data, {**smap.meta, "ctype1": "CRLN-CAR", "ctype2": "CRLT-CAR", "cunit1": "deg", "cunit2": "deg"}
    )
    with pytest.raises(ValueError) as info:
        pixel_area(carrington)
    assert str(info.value) == (
        "a helioprojective map is needed to place pixels on the solar surface; this map's frame is "
        "HeliographicCarrington"
    )


def test_subpixel_cancellation_of_analytic_blocks_and_against_the_training_loss_statistic():
    """The share of flux cancelling inside 4x4 blocks of |mean| >= 5 G: analytic blocks, then random
    fields against `block_cancellation` (the distillation loss's torch statistic, summed over its
    ranges) divided by the blocks' unsigned flux."""
    import torch

    from sunpy_superres.models.diffusion import block_cancellation

    field = np.zeros((8, 12))
    field[:4, :4] = 20.0  # one sign: 320 G of unsigned flux, nothing cancels
    field[:4, 4:8] = 20.0
    field[0, 4] = -40.0  # 340 G unsigned, 80 G cancels (mean 16.25 G)
    field[:4, 8:] = 2.0
    field[0, 8] = -20.0  # mean 0.625 G: below 5 G, not counted
    field[4:, :] = 100.0  # three blocks of one sign, 4800 G
    share = subpixel_cancellation(full_disk_map(field, shape=field.shape))
    assert share.unit == u.one and share.value == pytest.approx(80 / (320 + 340 + 4800), rel=1e-12)
    # The reference chooses the blocks: with its means all 50 G, the third block counts too.
    reference = full_disk_map(np.full(field.shape, 50.0), shape=field.shape)
    with_third = subpixel_cancellation(full_disk_map(field, shape=field.shape), reference=reference)
    assert with_third.value == pytest.approx((80 + 40) / (320 + 340 + 50 + 4800), rel=1e-12)
    # A block with a NaN pixel is left out; a field without counted blocks has no share.
    holed = field.copy()
    holed[1, 5] = np.nan
    assert subpixel_cancellation(full_disk_map(holed, shape=field.shape)).value == pytest.approx(0.0)
    assert np.isnan(subpixel_cancellation(full_disk_map(np.ones((8, 8)), shape=(8, 8))).value)
    rng = np.random.default_rng(4)
    noisy = rng.standard_normal((64, 96)) * 40 + rng.standard_normal((64, 96)) ** 3 * 15
    counted = np.abs(noisy.reshape(16, 4, 24, 4).mean(axis=(1, 3))) >= 5
    unsigned = np.abs(noisy.reshape(16, 4, 24, 4)).sum(axis=(1, 3))[counted].sum()
    image = torch.tensor(noisy / 3000)[None, None]
    expected = float(block_cancellation(image, image, 4).sum()) * 3000 / unsigned
    got = subpixel_cancellation(full_disk_map(noisy, shape=noisy.shape)).value
    assert got == pytest.approx(expected, rel=1e-9) and 0 < got < 1
    with pytest.raises(ValueError, match="threshold must be positive, got 0.0 G"):
        subpixel_cancellation(full_disk_map(field, shape=field.shape), threshold=0 * u.G)
    with pytest.raises(ValueError, match=r"reference has shape \(8, 8\) and the map \(8, 12\)"):
        subpixel_cancellation(
            full_disk_map(field, shape=field.shape), reference=full_disk_map(np.ones((8, 8)), shape=(8, 8))
        )
