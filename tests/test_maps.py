"""Input validation and the derived header of the finer grid."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.maps import finer_meta, validate_map

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
    import re
    import warnings

    meta = {**mdi_cutout.meta, "bunit": bunit}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy's own note on an unreadable BUNIT
        smap = sunpy.map.Map(mdi_cutout.data, meta)
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_map(smap)


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
