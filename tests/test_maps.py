"""Input validation and the derived header of the finer grid."""

import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from sunpy.util import MetaDict
from sunpy.util.exceptions import SunpyUserWarning

from sunpy_superres import superresolve
from sunpy_superres.maps import MAX_FIELD, add_history, complete_wcs, finer_meta, map_data, validate_map

from .helpers import synthetic_map


def test_accepts_real_mdi_cutout(mdi_cutout):
    validate_map(mdi_cutout)


@pytest.mark.parametrize("obj", [np.zeros((32, 32)), None, "mdi.fits"])
def test_not_a_map(obj):
    with pytest.raises(TypeError, match="needs a sunpy Map.*sunpy.map.Map"):
        superresolve(obj)


def test_not_a_magnetic_unit():
    with pytest.raises(ValueError, match=r"unit DN.*not a magnetic field.*bunit"):
        superresolve(synthetic_map(unit=u.DN))


def test_missing_unit():
    smap = synthetic_map()
    smap.meta.pop("bunit")
    with pytest.raises(ValueError, match=r"no unit \(BUNIT missing\).*bunit"):
        superresolve(smap)


def test_mx_per_cm2_is_accepted_and_kept():
    smap = synthetic_map(unit=u.Mx / u.cm**2, value=100.0)
    out = superresolve(smap, model="nearest", progress=False)
    assert out.unit == u.Mx / u.cm**2
    np.testing.assert_allclose(out.data, 100.0)


def test_not_2d(mdi_cutout):
    # sunpy cannot build a 3-D Map, so fake one whose data were replaced by a cube.
    cube = sunpy.map.Map(mdi_cutout.data.copy(), mdi_cutout.meta)
    cube._data = np.stack([cube.data, cube.data])
    with pytest.raises(ValueError, match=r"3-D.*2-D.*one image at a time"):
        superresolve(cube)


def test_non_square_pixels():
    with pytest.raises(ValueError, match=r"not square.*1\.9800 x 2\.0200.*resample"):
        superresolve(synthetic_map(scale=1.98, scale_y=2.02))


@pytest.mark.parametrize("scale", [0.5, 0.99, 4.5, 16.0])
def test_pixel_scale_out_of_range(scale):
    with pytest.raises(ValueError, match=r"outside the 1-4 arcsec/pixel.*check_scale=False"):
        superresolve(synthetic_map(scale=scale))


def test_pixel_scale_override():
    out = superresolve(synthetic_map(scale=0.5), model="nearest", check_scale=False, progress=False)
    assert out.scale.axis1 == 0.125 * u.arcsec / u.pix


@pytest.mark.parametrize("shape", [(15, 32), (32, 8)])
def test_too_small(shape):
    with pytest.raises(ValueError, match=r"at least 16 pixels a side.*larger cut-out"):
        superresolve(synthetic_map(shape=shape))


def test_all_nan():
    with pytest.raises(ValueError, match=r"every pixel.*NaN.*HDU"):
        superresolve(synthetic_map(value=np.nan))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values(bad):
    smap = synthetic_map(value=10.0)
    smap.data[3, 4] = bad
    with pytest.raises(ValueError, match=r"1 infinite pixel.*np\.nan"):
        superresolve(smap)


def test_finer_meta_formulae(mdi_cutout):
    meta = finer_meta(mdi_cutout.meta, 4, mdi_cutout.data.shape)
    for axis in (1, 2):
        assert meta[f"cdelt{axis}"] == pytest.approx(mdi_cutout.meta[f"cdelt{axis}"] / 4, rel=1e-15)
        assert meta[f"crpix{axis}"] == pytest.approx(4 * (mdi_cutout.meta[f"crpix{axis}"] - 0.5) + 0.5)
        assert meta[f"naxis{axis}"] == 4 * mdi_cutout.meta[f"naxis{axis}"]
    # MDI's pixel-unit keys follow the grid: X0/Y0 are 0-based disk-centre pixels, R_SUN in pixels.
    assert meta["x0"] == pytest.approx(4 * (mdi_cutout.meta["x0"] + 0.5) - 0.5)
    assert meta["r_sun"] == pytest.approx(4 * mdi_cutout.meta["r_sun"])
    # Statistics of the old data and its integer encoding must not survive.
    for stale in ("datamin", "datamax", "tot_flux", "bscale", "blank"):
        assert stale not in meta
    # The input header is untouched.
    assert mdi_cutout.meta["naxis1"] == 128


def test_finer_meta_cd_matrix():
    smap = synthetic_map()
    meta = smap.meta.copy()
    scale = meta.pop("cdelt1")
    meta.pop("cdelt2")
    theta = np.deg2rad(30)
    for key in [k for k in meta if k.startswith("pc")]:
        meta.pop(key)
    meta.update(
        {
            "cd1_1": scale * np.cos(theta),
            "cd1_2": -scale * np.sin(theta),
            "cd2_1": scale * np.sin(theta),
            "cd2_2": scale * np.cos(theta),
        }
    )
    rotated = sunpy.map.Map(smap.data, meta)
    out = superresolve(rotated, model="nearest", progress=False)
    ref = rotated.resample([128, 128] * u.pix)
    corners = [(0, 0), (127, 0), (0, 127), (127, 127), (63.5, 63.5)] * u.pix
    for px, py in corners:
        assert out.pixel_to_world(px, py).separation(ref.pixel_to_world(px, py)) < 1 * u.mas


def test_superresolve_leaves_the_input_header_and_its_comments_alone(hmi_cutout):
    """Issue 15, case 3: the header copy was shallow, so stale keys lost their comments in the input."""
    import copy

    from sunpy_superres import superresolve

    lowres = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)
    lowres.meta["datamin"] = -1000.0
    lowres.meta["keycomments"] = {**lowres.meta.get("keycomments", {}), "DATAMIN": "minimum value"}
    before = copy.deepcopy(dict(lowres.meta))
    out = superresolve(lowres, model="bicubic", progress=False)
    assert "datamin" not in out.meta
    assert dict(lowres.meta) == before
    assert lowres.meta["keycomments"]["DATAMIN"] == "minimum value"


@pytest.mark.parametrize("bunit", ["Mx/cm2", "Mx cm-2", "Mx/cm^2"])
def test_maxwell_per_square_centimetre_is_a_magnetic_field(mdi_cutout, bunit):
    """Issue 15, case 4: the README says Mx/cm2 works; sunpy reads no unit from it."""
    from sunpy_superres import superresolve

    m = sunpy.map.Map(mdi_cutout.data, {**mdi_cutout.meta, "bunit": bunit})
    out = superresolve(m, model="bicubic", progress=False)
    reference = superresolve(
        sunpy.map.Map(mdi_cutout.data, {**mdi_cutout.meta, "bunit": "G"}), model="bicubic", progress=False
    )
    assert out.unit == u.G and out.meta["bunit"] == "G" and f"BUNIT '{bunit}'" in out.meta["history"]
    np.testing.assert_allclose(out.data, reference.data, equal_nan=True)
    assert m.meta["bunit"] == bunit


@pytest.mark.parametrize(
    ("bunit", "message"),
    [
        ("", "no unit (BUNIT missing)"),
        ("counts per wombat", "BUNIT 'counts per wombat', which is not a unit"),
        ("DN", "unit DN"),
    ],
)
def test_unit_refusals_name_what_was_found(mdi_cutout, bunit, message):
    import warnings

    meta = {**mdi_cutout.meta, "bunit": bunit}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy's own note on an unreadable BUNIT
        smap = sunpy.map.Map(mdi_cutout.data, meta)
    with pytest.raises(ValueError) as info:
        validate_map(smap)
    assert str(info.value) == (
        f"the map has {message}, which is not a magnetic field. superresolve works on line-of-sight "
        "magnetograms in G, T or Mx/cm2; if the data are in Gauss, set smap.meta['bunit'] = 'G'."
    )


def test_a_map_without_a_pixel_scale_is_refused(mdi_cutout):
    """Issue 15, case 2: without CDELT sunpy assumes 1"/pixel, which passed the scale check."""
    meta = {k: v for k, v in mdi_cutout.meta.items() if k not in ("cdelt1", "cdelt2")}
    with pytest.raises(ValueError, match="no pixel scale"):
        validate_map(sunpy.map.Map(mdi_cutout.data, meta))


@pytest.mark.parametrize("cdelt", [2 / 3600, 0.03])
def test_a_carrington_map_is_refused_as_not_helioprojective(mdi_cutout, cdelt):
    """Issue 15, case 2: a CEA map ran with degrees read as arcsec, or was refused for its "scale"."""
    meta = {
        **mdi_cutout.meta,
        "ctype1": "CRLN-CEA",
        "ctype2": "CRLT-CEA",
        "cunit1": "deg",
        "cunit2": "deg",
        "cdelt1": cdelt,
        "cdelt2": cdelt,
        "crval1": 120.0,
        "crval2": 10.0,
    }
    smap = sunpy.map.Map(mdi_cutout.data, meta)
    with pytest.raises(ValueError, match="not helioprojective.*Reproject it first"):
        validate_map(smap)


def _with_meta(smap, **changes):
    """A new map of ``smap``'s data, its header changed (a `None` value removes the key)."""
    meta = {k: v for k, v in smap.meta.items() if changes.get(k, 0) is not None}
    meta.update({k: v for k, v in changes.items() if v is not None})
    return sunpy.map.Map(smap.data, meta)


def _with_data(smap, data):
    """``smap`` with its data replaced, as a map reader could leave it (sunpy would refuse some)."""
    new = sunpy.map.Map(smap.data.copy(), smap.meta)
    new._data = data
    return new


def _refusal_cases():
    base = synthetic_map(value=1.0)
    cube = np.ones((2, 32, 32))
    big = np.ones((32, 32))
    big[3, 4] = 2e5
    inf = np.ones((32, 32))
    inf[0, :3] = [np.inf, -np.inf, np.inf]
    return [
        (
            lambda: np.zeros((32, 32)),
            TypeError,
            "superresolve needs a sunpy Map, got ndarray. Read the file with sunpy.map.Map('file.fits') "
            "or build one with sunpy.map.Map(data, header).",
        ),
        (
            lambda: _with_data(base, cube),
            ValueError,
            "the map's data are 3-D with shape (2, 32, 32); a magnetogram is 2-D. Pass one image at a time "
            "(for a cube, loop over its 2-D slices).",
        ),
        (
            lambda: synthetic_map(unit=u.DN),
            ValueError,
            "the map has unit DN, which is not a magnetic field. superresolve works on line-of-sight "
            "magnetograms in G, T or Mx/cm2; if the data are in Gauss, set smap.meta['bunit'] = 'G'.",
        ),
        (
            lambda: _with_meta(base, cdelt1="wide"),
            ValueError,
            "the map's CDELT1 is 'wide'; a WCS needs a finite, non-zero pixel scale. Set it "
            "(arcsec/pixel) to the true scale first.",
        ),
        (
            lambda: _with_meta(base, cdelt2=0.0),
            ValueError,
            "the map's CDELT2 is 0.0; a WCS needs a finite, non-zero pixel scale. Set it "
            "(arcsec/pixel) to the true scale first.",
        ),
        (
            lambda: _with_meta(
                base,
                ctype1="CRLN-CEA",
                ctype2="CRLT-CEA",
                cunit1="deg",
                cunit2="deg",
                cdelt1=0.03,
                cdelt2=0.03,
            ),
            ValueError,
            "the map is in HeliographicCarrington coordinates (CTYPE CRLN-CEA, CRLT-CEA), not helioprojective; "
            "the models work on images as the instrument saw them (HPLN/HPLT, arcsec). Reproject it first, "
            "e.g. smap.reproject_to(header) with a helioprojective header at about 2 arcsec/pixel.",
        ),
        (
            lambda: _with_meta(base, ctype1="LINEAR", ctype2="LINEAR"),
            ValueError,
            "sunpy could not build the map's coordinates from its header (CTYPE LINEAR, LINEAR): the CTYPE "
            "is not a known coordinate system, or the CD or PC matrix is singular. The models need "
            "helioprojective coordinates (HPLN-TAN, HPLT-TAN); fix the header's CTYPE and CDi_j / PCi_j "
            "keys first.",
        ),
        (
            lambda: _with_meta(
                base,
                cdelt1=None,
                cdelt2=None,
                pc1_1=None,
                pc1_2=None,
                pc2_1=None,
                pc2_2=None,
                cd1_1=0.0,
                cd1_2=0.0,
                cd2_1=0.0,
                cd2_2=2.0,
            ),
            ValueError,
            "sunpy could not build the map's coordinates from its header (CTYPE HPLN-TAN, HPLT-TAN): the "
            "CTYPE is not a known coordinate system, or the CD or PC matrix is singular. The models need "
            "helioprojective coordinates (HPLN-TAN, HPLT-TAN); fix the header's CTYPE and CDi_j / PCi_j "
            "keys first.",
        ),
        (
            lambda: _with_meta(base, cdelt1=None, cdelt2=None),
            ValueError,
            "the map has no pixel scale (CDELT1/CDELT2 or a CD matrix missing from its header), so sunpy "
            "assumes 1 arcsec/pixel and the output would claim a scale it never had. Set "
            "smap.meta['cdelt1'] and smap.meta['cdelt2'] (arcsec/pixel) to the true scale first.",
        ),
        (
            lambda: synthetic_map(scale=1.98, scale_y=2.02),
            ValueError,
            "the map's pixels are not square (1.9800 x 2.0200 arcsec/pixel). Resample it to square pixels "
            "first, e.g. with smap.reproject_to() or smap.resample().",
        ),
        (
            lambda: synthetic_map(scale=4.5),
            ValueError,
            "the pixel scale is 4.500 arcsec/pixel, outside the 1-4 arcsec/pixel the models were trained "
            "for (MDI is 2 arcsec/pixel). Resample the map to about 2 arcsec/pixel, or pass "
            "check_scale=False if you know what you are doing.",
        ),
        (
            lambda: synthetic_map(shape=(15, 40)),
            ValueError,
            "the map is 40x15 pixels; at least 16 pixels a side are needed. Use a larger cut-out (submap) "
            "of the magnetogram.",
        ),
        (
            lambda: _with_data(base, np.ones((32, 32), dtype=complex)),
            ValueError,
            "the map's data have dtype complex128; a real-valued magnetogram is needed.",
        ),
        (
            lambda: _with_data(base, np.full((32, 32), "1")),
            ValueError,
            "the map's data have dtype <U1; a real-valued magnetogram is needed.",
        ),
        (
            lambda: _with_data(base, np.ones((32, 32), dtype=np.uint8)),
            ValueError,
            "the map's data are uint8 (unsigned), which cannot hold a line-of-sight field of both "
            "polarities: it looks like an image (e.g. a quick-look), not a magnetogram. Use the magnetogram "
            "data in G.",
        ),
        (
            lambda: _with_data(base, np.full((32, 32), np.nan)),
            ValueError,
            "every pixel of the map is NaN, infinite or masked; there is nothing to super-resolve. "
            "Check that the right HDU of the file was read, and the map's mask.",
        ),
        (
            lambda: _with_data(base, big),
            ValueError,
            "the map's field reaches 2e+05 G; no solar line-of-sight field comes near 100000 G. Check "
            "BUNIT (the data may be in another unit, or raw counts) and the data's scaling (BSCALE/BZERO).",
        ),
        (
            lambda: _with_data(base, inf),
            ValueError,
            "the map has 3 infinite pixel(s). Replace them with NaN (missing) or a valid value first, "
            "e.g. data[np.isinf(data)] = np.nan.",
        ),
    ]


@pytest.mark.parametrize(("make", "error", "message"), _refusal_cases())
def test_each_refusal_says_the_whole_message(make, error, message):
    # Each message in full, as a user reads it: what is wrong, what was found, and what to do.
    with pytest.raises(error) as info, warnings.catch_warnings():
        # sunpy's own notes on a frame it cannot build, and its division by a zero scale
        warnings.simplefilter("ignore", SunpyUserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        validate_map(make())
    assert str(info.value) == message


@pytest.mark.parametrize("factor", [0, -1, 1.5, 2.0, "4"])
def test_finer_meta_refuses_a_factor_that_is_not_a_positive_integer(factor):
    with pytest.raises(ValueError) as info:
        finer_meta(synthetic_map().meta, factor, (32, 32))
    assert str(info.value) == f"factor must be a positive integer, got {factor!r}"


def test_finer_meta_of_factor_one_is_the_same_grid():
    meta = synthetic_map(shape=(32, 48)).meta
    new = finer_meta(meta, 1, (32, 48))
    for key in ("cdelt1", "cdelt2", "crpix1", "crpix2", "naxis1", "naxis2"):
        assert new[key] == meta[key]


def test_history_is_started_or_appended_to():
    for absent in ({}, {"history": ""}, {"history": None}, {"history": "  "}):
        started = MetaDict({"naxis": 2, **absent})
        add_history(started, "first")
        assert started["history"] == "first"
    add_history(started, "second")
    assert started["history"] == "first\nsecond"


def test_finer_meta_of_a_header_without_crpix_centres_the_reference_pixel():
    # FITS makes a missing CRPIX 0; sunpy puts the reference pixel at the centre, (n + 1) / 2.
    meta = MetaDict({"cdelt1": 2.0, "cdelt2": 2.0})
    new = finer_meta(meta, 4, (30, 50))
    assert (new["crpix1"], new["crpix2"]) == ((4 * 50 + 1) / 2, (4 * 30 + 1) / 2)
    assert "crpix1" not in meta


def test_finer_meta_divides_the_hmi_image_scale():
    # HMI's IMSCL_MP is the angular size of a pixel, like CDELT.
    new = finer_meta(MetaDict({"imscl_mp": 0.504, "crpix1": 1.0, "crpix2": 1.0}), 4, (8, 8))
    assert new["imscl_mp"] == 0.504 / 4


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_the_scale_range_is_inclusive(scale):
    validate_map(synthetic_map(scale=scale))


def test_the_scale_range_may_be_in_other_units():
    validate_map(synthetic_map(scale=2.0), scale_range=(1 / 3600, 4 / 3600) * u.deg / u.pix)
    with pytest.raises(ValueError, match="outside the 1-1.5 arcsec/pixel"):
        validate_map(synthetic_map(scale=2.0), scale_range=(1 / 3600, 1.5 / 3600) * u.deg / u.pix)


def test_the_strongest_field_accepted_is_max_field():
    data = np.ones((32, 32))
    data[5, 5] = -MAX_FIELD.to_value(u.G)
    validate_map(sunpy.map.Map(data, synthetic_map().meta))
    # in another unit: 10 T is 1e5 G
    validate_map(sunpy.map.Map(data / 1e4, {**synthetic_map().meta, "bunit": "T"}))
    with pytest.raises(ValueError, match="field reaches 1e\\+05 G"):
        validate_map(sunpy.map.Map(data * 1.000001 / 1e4, {**synthetic_map().meta, "bunit": "T"}))


def _cd_header(scale):
    """A 32x32 helioprojective header whose pixel scale is a diagonal CD matrix (no CDELT, no PC)."""
    meta = {k: v for k, v in synthetic_map().meta.items() if not k.startswith(("pc", "cdelt"))}
    return {**meta, "cd1_1": scale, "cd1_2": 0.0, "cd2_1": 0.0, "cd2_2": scale}


@pytest.mark.parametrize("left_out", [("cd1_2",), ("cd2_1",), ("cd1_2", "cd2_1")])
def test_complete_wcs_adds_the_zero_cd_terms_left_out(left_out):
    scale = 2.0
    meta = _cd_header(scale)
    for key in left_out:
        meta.pop(key)
    smap = sunpy.map.Map(np.zeros((32, 32)), meta)
    smap.plot_settings["cmap"] = "hmimag"
    done = complete_wcs(smap)
    assert all(done.meta[key] == 0.0 for key in left_out) and done.meta["cd1_1"] == scale
    assert all(key not in smap.meta for key in left_out)  # the input is not completed in place
    assert done.plot_settings["cmap"] == smap.plot_settings["cmap"]
    assert done.pixel_to_world(0 * u.pix, 0 * u.pix).Tx.to_value(u.arcsec) == pytest.approx(-31.0, abs=1e-3)


def test_complete_wcs_leaves_a_whole_cd_matrix_or_none_alone(mdi_cutout):
    assert complete_wcs(mdi_cutout) is mdi_cutout  # CDELT and PC, no CD matrix
    whole = sunpy.map.Map(np.zeros((32, 32)), _cd_header(2.0))
    assert complete_wcs(whole) is whole


def test_map_data_is_a_float64_copy_with_masked_pixels_nan():
    values = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    mask = np.zeros((32, 32), bool)
    mask[3, 4] = mask[10, :] = True
    smap = sunpy.map.Map(values, synthetic_map().meta, mask=mask)
    data = map_data(smap)
    assert data.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(data), mask)
    np.testing.assert_array_equal(data[~mask], values[~mask])
    data[0, 0] = -1.0
    assert smap.data[0, 0] == 0.0 and not np.isnan(smap.data).any()
    unmasked = map_data(sunpy.map.Map(values, synthetic_map().meta))
    np.testing.assert_array_equal(unmasked, values)


@pytest.mark.parametrize(
    ("bunit", "unit", "factor"),
    [("T", u.G, 1e4), ("G", u.T, 1e-4), ("G", u.G, 1.0), ("Mx/cm2", u.G, 1.0), ("T", None, 1.0)],
)
def test_map_data_converts_to_the_unit_asked_for(bunit, unit, factor):
    values = np.linspace(-3.0, 3.0, 32 * 32).reshape(32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy's note on a BUNIT (Mx/cm2) it cannot read
        smap = sunpy.map.Map(values, {**synthetic_map().meta, "bunit": bunit})
    np.testing.assert_allclose(map_data(smap, unit), values * factor, rtol=1e-15)
