"""
Property-based test of `superresolve`'s contract on random headers and arrays (issue 15: bad input
never passes silently).

A random map (unit, pixel scale and its unit, mirrored axes, rotation as CROTA2, PC or CD matrix,
instrument, dtype and byte order, shape, NaN, infinite and masked pixels) goes through
``superresolve(model="bicubic")`` with random ``check_scale``, ``consistency`` and ``calibrate``.
Whatever the map, the call either refuses it with a `TypeError` or `ValueError` that says something,
or returns a map that is right: 4x the pixels per axis on the grid of ``smap.resample`` (same outer
corners), NaN exactly where the input was missing (NaN or masked), and, when the consistency
projection is on, 4x4 block means equal to the calibrated input. The input map is never modified.
Where the test can tell that a map is certainly bad (1-D, an infinite pixel, a unit that is not a
field, ...) it must be refused, with a message that names the problem when there is only one; where it
is certainly good, it must be accepted.
"""

import copy
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.wcs import FITSFixedWarning
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header
from sunpy.util.exceptions import SunpyMetadataWarning

from sunpy_superres import superresolve
from sunpy_superres.calibration import MDI_TO_HMI
from sunpy_superres.maps import MAX_FIELD, complete_wcs
from sunpy_superres.superresolve import UncalibratedInputWarning

F = 4  # the bicubic baseline's factor

# BUNIT -> G per data unit; None: not a magnetic field (must be refused). "missing" drops BUNIT.
UNITS = {
    "G": 1.0,
    "T": 1e4,
    "Mx/cm2": 1.0,
    "Mx cm-2": 1.0,
    "gauss": 1.0,
    "missing": None,
    "counts": None,
    "m/s": None,
}
INSTRUMENTS = {
    "mdi": {"telescop": "SOHO", "instrume": "MDI", "x0": 511.5, "y0": 511.5, "r_sun": 483.0},
    "hmi": {"telescop": "SDO/HMI", "instrume": "HMI_FRONT2"},
    "solis": {"telescop": "SOLIS", "instrume": "VSM"},  # named, not MDI (and no sunpy source): factor 1
    "none": {},
}
# Keys that finer_meta drops from its copy; with keycomments they catch a shallow copy of the input's.
STALE = {"datamin": -1234.0, "datamax": 2345.0, "bscale": 1.0, "bzero": 0.0}


# Each defect makes a map certainly bad, with words its refusal must contain (any one of them).
DEFECTS = {
    "ndim": ("-D",),  # 1-D data
    "small": ("pixels a side",),  # under 16 pixels a side
    "dtype": ("dtype", "unsigned"),  # bool, complex or uint8 data
    "unit": ("magnetic field",),  # BUNIT missing or not a field
    "frame": ("helioprojective",),  # Carrington coordinates
    "no_scale": ("pixel scale",),  # no CDELT or CD matrix
    "zero_scale": ("pixel scale",),  # CDELT1 or CDELT2 zero or NaN
    "aspect": ("not square",),  # non-square pixels
    "scale": ("outside",),  # pixel scale out of 1-4"/pixel with check_scale
    "all_nan": ("nan",),  # no finite pixel
    "inf": ("infinite",),  # an infinite pixel
    "all_masked": ("mask",),  # every finite pixel masked: nothing to super-resolve, as with all NaN
    "too_strong": ("field reaches",),  # beyond MAX_FIELD (10**5 G): another unit, or unscaled data
}


@st.composite
def cases(draw):
    """
    The parameters of one random map and call: mostly none or one defect, sometimes several.

    ``sampled_from`` shrinks to its first entry, so the first entries are the plainest good ones.
    """
    defects = draw(
        st.sampled_from([0] * 10 + [1] * 8 + [2, 3]).flatmap(
            lambda n: st.sets(st.sampled_from(sorted(DEFECTS)), min_size=n, max_size=n)
        )
    )
    if "ndim" in defects:
        # 1-D only: sunpy.map.Map keeps the first plane of a cube (with a warning), so no 3-D map reaches
        # superresolve; the CLI's refusal of cubes is tested in test_refusals.py.
        shape = (draw(st.integers(8, 48)),)
    elif "small" in defects:
        shape = tuple(draw(st.permutations([draw(st.integers(8, 15)), draw(st.integers(8, 48))])))
    else:
        shape = (draw(st.integers(16, 48)), draw(st.integers(16, 48)))
    if "dtype" in defects:
        dtype = draw(st.sampled_from(["bool", "complex128", "complex64", "uint8"]))
    elif {"all_nan", "inf"} & defects:
        dtype = draw(st.sampled_from(["float64", "float32", ">f4"]))
    else:  # ">": big-endian, as FITS files store them
        dtype = draw(
            st.sampled_from(["float64"] * 3 + ["float32"] * 3 + ["int16", "int32", ">f8", ">f4", ">i2"])
        )
    is_float = np.dtype(dtype).kind in "fc"
    nan = (
        "all"
        if "all_nan" in defects
        else draw(st.sampled_from(["none", "pixels", "rows", "block"]))
        if is_float
        else "none"
    )
    check_scale = draw(st.booleans()) or "scale" in defects
    if "scale" in defects:
        scale = draw(st.floats(0.25, 0.99) | st.floats(4.01, 8.0))
    elif check_scale:
        scale = draw(st.sampled_from([2.0, 1.986, 1.0, 4.0]) | st.floats(1.0, 4.0))
    else:
        scale = draw(st.sampled_from([2.0, 0.5, 6.0]) | st.floats(0.25, 8.0))
    cd = [] if "zero_scale" in defects else ["cd", "cd-diagonal"]  # zero_scale edits CDELT
    rotation = draw(st.sampled_from(["pc", "crota2", *cd]))
    # A diagonal CD matrix omits CD1_2 and CD2_1 (0 by the FITS standard): no rotation, or half a turn.
    angle = draw(
        st.sampled_from([0.0, 180.0])
        if rotation == "cd-diagonal"
        else st.sampled_from([0.0, 180.0, 90.0, -30.0]) | st.floats(-180.0, 180.0)
    )
    # float32 cannot hold 1e40: its amplitudes stay within range (1e30 G still overflows nothing).
    amplitudes = [300.0, 0.0, 1.0, 2500.0, 2e4, 1e7] + ([1e40] if np.dtype(dtype) == np.float64 else [1e30])
    return {
        "defects": defects,
        "shape": shape,
        "dtype": dtype,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "amplitude": draw(st.sampled_from(amplitudes)),
        "nan": nan,
        "nan_fraction": draw(st.floats(0.01, 0.5)),
        "inf": draw(st.sampled_from(["+inf", "-inf"])) if "inf" in defects else "none",
        "mask": (
            "all" if "all_masked" in defects else draw(st.sampled_from(["none"] * 3 + ["pixels", "block"]))
        ),
        "bunit": draw(
            st.sampled_from(
                ["missing", "counts", "m/s"]
                if "unit" in defects
                else ["G", "T", "Mx/cm2", "Mx cm-2", "gauss"]
            )
        ),
        "scale": scale,
        "aspect": draw(st.sampled_from([1.01, 0.5, 2.0] if "aspect" in defects else [1.0, 1.0004])),
        "mirror_x": draw(st.booleans()),
        "mirror_y": draw(st.sampled_from([False] * 3 + [True])),
        # One unit for both axes: sunpy 7 cannot build the WCS of arcsec x deg (astropy itself can).
        "cunit": draw(st.sampled_from(["arcsec", "deg"])),
        "rotation": rotation,
        "angle": angle,
        "centre": draw(st.sampled_from([(0.0, 0.0), (-700.0, 300.0), (850.0, -250.0)])),
        "instrument": draw(st.sampled_from(["mdi", "hmi", "none", "solis"])),
        "ctype": "carrington" if "frame" in defects else "hpc",
        "no_cdelt": "no_scale" in defects,
        "zero_cdelt": draw(st.sampled_from(["cdelt1", "cdelt2"])) if "zero_scale" in defects else None,
        "zero_value": draw(st.sampled_from([0.0, np.nan])),
        "stale_keys": draw(st.booleans()),
        "check_scale": check_scale,
        "consistency": draw(st.sampled_from([True, "block", "backprojection", "auto", False])),
        "calibrate": draw(st.sampled_from([True] * 4 + [False, 0.5])),
    }


def make_data(case):
    """The data array of ``case``: Gaussian field of ``amplitude`` in its dtype, with NaN/inf as asked."""
    rng = np.random.default_rng(case["seed"])
    shape, dtype = case["shape"], np.dtype(case["dtype"])
    with np.errstate(over="ignore", invalid="ignore"):
        field = rng.normal(0.0, 1.0, shape) * case["amplitude"] + 0.1 * case["amplitude"]
        if dtype.kind == "b":
            return field > 0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return np.clip(np.round(field), info.min, info.max).astype(dtype)
        if dtype.kind == "c":
            field = field + 1j * rng.normal(0.0, 1.0, shape) * case["amplitude"]
        data = field.astype(dtype)
    plane = np.atleast_2d(data)  # a view: NaN and inf go into data
    ny, nx = plane.shape
    if case["nan"] == "pixels":
        plane[rng.random(plane.shape) < case["nan_fraction"]] = np.nan
    elif case["nan"] == "rows":
        plane[rng.random(ny) < case["nan_fraction"]] = np.nan
    elif case["nan"] == "block":
        y0, x0 = rng.integers(0, ny), rng.integers(0, nx)
        plane[y0 : y0 + rng.integers(1, ny + 1), x0 : x0 + rng.integers(1, nx + 1)] = np.nan
    elif case["nan"] == "all":
        data[...] = np.nan
    if case["inf"] != "none":
        plane[rng.integers(0, ny), rng.integers(0, nx)] = np.inf if case["inf"] == "+inf" else -np.inf
    return data


def make_mask(case):
    """The mask of ``case`` (True: masked), or None."""
    if case["mask"] == "none":
        return None
    if case["mask"] == "all":
        return np.ones(case["shape"], bool)
    rng = np.random.default_rng(case["seed"] + 1)
    if case["mask"] == "pixels":
        return rng.random(case["shape"]) < case["nan_fraction"]
    mask = np.zeros(case["shape"], bool)
    mask[tuple(slice(rng.integers(0, n), None) for n in case["shape"])] = True
    return mask


def make_header(case, data):
    """A helioprojective header (Earth observer, 2010-10-15) edited as ``case`` says."""
    ref = SkyCoord(
        *case["centre"] * u.arcsec, obstime="2010-10-15", observer="earth", frame=frames.Helioprojective
    )
    dx = case["scale"] * (-1 if case["mirror_x"] else 1)
    dy = case["scale"] * case["aspect"] * (-1 if case["mirror_y"] else 1)
    header = make_fitswcs_header(
        np.atleast_2d(data),
        ref,
        scale=[abs(dx), abs(dy)] * u.arcsec / u.pix,
        rotation_angle=case["angle"] * u.deg,
    )
    meta = dict(header)
    meta["cdelt1"], meta["cdelt2"] = dx, dy
    pc = np.array([[meta.pop("pc1_1"), meta.pop("pc1_2")], [meta.pop("pc2_1"), meta.pop("pc2_2")]], float)
    if case["rotation"] == "pc":
        meta.update(pc1_1=pc[0, 0], pc1_2=pc[0, 1], pc2_1=pc[1, 0], pc2_2=pc[1, 1])
    elif case["rotation"] == "crota2":
        meta["crota2"] = case["angle"]
    else:  # CD_ij = CDELT_i PC_ij, without CDELT (a CD matrix excludes them)
        cd = pc * np.array([[dx], [dy]])
        del meta["cdelt1"], meta["cdelt2"]
        meta.update(cd1_1=cd[0, 0], cd2_2=cd[1, 1])
        if case["rotation"] == "cd":
            meta.update(cd1_2=cd[0, 1], cd2_1=cd[1, 0])
    if case["cunit"] == "deg":
        for axis in (1, 2):
            for key in (f"cdelt{axis}", f"crval{axis}", f"cd{axis}_1", f"cd{axis}_2"):
                if key in meta:
                    meta[key] = meta[key] / 3600.0
            meta[f"cunit{axis}"] = "deg"
    if case["no_cdelt"]:
        for key in ("cdelt1", "cdelt2", "cd1_1", "cd1_2", "cd2_1", "cd2_2"):
            meta.pop(key, None)
    if case["zero_cdelt"]:
        meta[case["zero_cdelt"]] = case["zero_value"]
    if case["ctype"] == "carrington":
        meta.update(ctype1="CRLN-CAR", ctype2="CRLT-CAR", crval1=0.0, crval2=0.0)
        del meta["lonpole"], meta["latpole"]
    if case["bunit"] == "missing":
        meta.pop("bunit", None)
    else:
        meta["bunit"] = case["bunit"]
    meta.update(INSTRUMENTS[case["instrument"]])
    meta["naxis"] = data.ndim
    keycomments = {"bunit": "unit of the field", "cdelt1": "[arcsec/pix] pixel scale"}
    if case["stale_keys"]:
        meta.update(STALE)
        keycomments.update({key: f"stale {key}" for key in STALE})
    meta["keycomments"] = keycomments
    return meta


def refusal_reasons(case, data, mask):
    """
    What is certainly wrong with the map (keys of `DEFECTS`), and what may be (the contract alone decides).

    Worked out from the map as built, not from the defects drawn: two drawn defects may make a third one,
    and one may hide another.
    """
    dtype = np.dtype(case["dtype"])
    scales = np.array([case["scale"], case["scale"] * case["aspect"]])
    edge = np.isclose(scales[:, None], [1.0, 4.0], rtol=1e-9).any(axis=1)
    inside = ((scales >= 1.0) & (scales <= 4.0)) | edge
    unmasked = np.ones(data.shape, bool) if mask is None else ~mask
    certain = {
        "ndim": data.ndim != 2,
        "small": data.ndim == 2 and min(data.shape) < 16,
        "dtype": dtype.kind in "bcu",  # uint8 too: refused as an image, not a magnetogram (issue 15 case 4)
        "unit": UNITS[case["bunit"]] is None,
        "frame": case["ctype"] != "hpc",
        "no_scale": case["no_cdelt"],
        "zero_scale": bool(case["zero_cdelt"]),
        "aspect": not np.isclose(case["aspect"], 1, rtol=5e-4),
        "scale": case["check_scale"] and not inside.any(),
        "inf": bool(np.isinf(data[unmasked]).any()),
        "all_nan": not np.isfinite(data).any(),
        "all_masked": np.isfinite(data).any() and not np.isfinite(data[unmasked]).any(),
    }
    usable = np.isfinite(data) & unmasked
    field = np.abs(data[usable]).astype(np.float64) * (UNITS[case["bunit"]] or 1.0)  # G, as the input has it
    certain["too_strong"] = (
        UNITS[case["bunit"]] is not None and field.size > 0 and field.max() > MAX_FIELD.to_value(u.G)
    )
    doubtful = {
        # infinite pixels under the mask: never used, but there
        "masked inf": bool(np.isinf(data).any()),
        # sunpy's CDELT of a rotated CD matrix of not quite square pixels may be either of the two
        "one scale out": case["check_scale"] and not inside.all(),
        # a scale computed through deg or from a CD matrix may land just outside 1-4"/pixel
        "scale at an edge": (
            case["check_scale"]
            and edge.any()
            and (case["cunit"] == "deg" or case["rotation"].startswith("cd"))
        ),
    }
    return sorted(k for k, v in certain.items() if v), sorted(k for k, v in doubtful.items() if v)


def calibration(case):
    """The factor the package must apply: MDI 1/1.4 when calibrating, otherwise 1 or the number given."""
    if case["calibrate"] is True:
        return MDI_TO_HMI if case["instrument"] == "mdi" else 1.0
    return 1.0 if case["calibrate"] is False else float(case["calibrate"])


def outer_corners_and_centre(shape, factor=1):
    """Pixel coordinates of the outer corners and of the first pixel's centre, on a grid ``factor`` finer."""
    ny, nx = shape
    x = np.array([-0.5, nx - 0.5, -0.5, nx - 0.5, 0.0])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, 0.0])
    return factor * (x + 0.5) - 0.5, factor * (y + 0.5) - 0.5


def check_output(smap, out, case, caught):
    """Shape, class, WCS, NaN pattern, calibration, block means and warnings of an accepted map."""
    data_in = np.asarray(smap.data, dtype=np.float64)
    if smap.mask is not None:
        data_in[np.broadcast_to(smap.mask, data_in.shape)] = np.nan  # masked: missing
    ny, nx = data_in.shape
    assert type(out) is type(smap)
    assert out.data.shape == (F * ny, F * nx)
    # The grid is smap.resample's: the outer corners coincide, and output pixel (1.5, 1.5) is input (0, 0).
    # complete_wcs: sunpy cannot read a CD matrix whose zero terms the header left out (FITS allows it).
    world_in = complete_wcs(smap).wcs.pixel_to_world(*outer_corners_and_centre((ny, nx)))
    world_out = out.wcs.pixel_to_world(*outer_corners_and_centre((ny, nx), F))
    tolerance = 1e-3 * case["scale"] / F * u.arcsec
    assert np.all(world_in.separation(world_out) < tolerance), world_in.separation(world_out).to(u.arcsec)
    # Missing (NaN or masked) in, NaN out; a finite input pixel never becomes NaN or infinite.
    finite_hr = np.kron(np.isfinite(data_in), np.ones((F, F), bool))
    assert np.array_equal(np.isnan(out.data), ~finite_hr), "NaN where the input was not missing, or not NaN"
    assert np.isfinite(out.data[finite_hr]).all(), "a finite input pixel came out infinite"
    factor = calibration(case)
    assert out.meta["srcalfac"] == pytest.approx(factor, rel=1e-12)
    assert out.unit is not None and out.unit.is_equivalent(u.G), out.unit
    unknown = case["calibrate"] is True and case["instrument"] == "none"
    assert any(issubclass(w.category, UncalibratedInputWarning) for w in caught) == unknown
    if out.meta["srconsis"]:
        expected = data_in * UNITS[case["bunit"]] * factor  # G at HMI levels
        got = out.data.astype(np.float64).reshape(ny, F, nx, F).mean(axis=(1, 3)) * out.unit.to(u.G)
        ok = np.isfinite(expected)
        atol = 1e-5 * np.abs(expected[ok]).max() + 1e-9
        np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-5, atol=atol)
    else:
        assert case["consistency"] in (False, "auto")


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=cases())
# Found by the search: an all-NaN MDI map with a CD matrix (complete_wcs rebuilds it, and sunpy's
# MDIMap warned "All-NaN slice encountered" before the refusal).
@example(
    case={
        "defects": {"all_nan"},
        "shape": (16, 16),
        "dtype": "float64",
        "seed": 0,
        "amplitude": 300.0,
        "nan": "all",
        "nan_fraction": 0.5,
        "inf": "none",
        "mask": "none",
        "bunit": "G",
        "scale": 2.0,
        "aspect": 1.0,
        "mirror_x": False,
        "mirror_y": False,
        "cunit": "arcsec",
        "rotation": "cd-diagonal",
        "angle": 0.0,
        "centre": (0.0, 0.0),
        "instrument": "mdi",
        "ctype": "hpc",
        "no_cdelt": False,
        "zero_cdelt": None,
        "zero_value": 0.0,
        "stale_keys": False,
        "check_scale": False,
        "consistency": True,
        "calibrate": True,
    }
)
def test_superresolve_refuses_or_is_right(case):
    """
    Any map: a `TypeError`/`ValueError` with a message, or a right answer; the input is never changed.

    Certainly bad maps (not 2-D, under 16 pixels a side, bool/complex/unsigned data, a unit that is not a
    field, not helioprojective, no or a zero pixel scale, non-square pixels, an infinite pixel, no pixel
    that is finite and not masked, a scale outside 1-4"/pixel with ``check_scale``) must be refused;
    certainly good ones accepted.
    """
    data, mask = make_data(case), make_mask(case)
    meta = make_header(case, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            smap = sunpy.map.Map(data, meta, mask=mask)
    except Exception:  # sunpy refusing to build the map is not superresolve's business
        assume(False)
    reasons, doubts = refusal_reasons(case, data, mask)
    verdict = "refuse" if reasons else "either" if doubts else "accept"
    note(f"expected: {verdict} {reasons or doubts}")
    data_before = np.array(smap.data, copy=True)
    meta_before = copy.deepcopy(dict(smap.meta))
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = superresolve(
                smap,
                model="bicubic",
                progress=False,
                check_scale=case["check_scale"],
                consistency=case["consistency"],
                calibrate=case["calibrate"],
            )
        except (TypeError, ValueError) as exc:
            error = exc
    # Whatever happened, the input is as it was: data, header and its comments.
    assert smap.data.dtype == data_before.dtype
    assert np.array_equal(smap.data, data_before, equal_nan=True)
    assert dict(smap.meta) == meta_before
    if error is not None:
        event(f"refused: {type(error).__name__}")
        assert str(error).strip(), f"{type(error).__name__} without a message"
        assert verdict != "accept", f"a good map was refused: {type(error).__name__}: {error}"
        if len(reasons) == 1 and not doubts:  # the message names the one problem
            words = DEFECTS[reasons[0]]
            assert any(word.lower() in str(error).lower() for word in words), (reasons, str(error))
    else:
        event("accepted")
        assert verdict != "refuse", "a bad map passed silently"
        check_output(smap, out, case, caught)
    # Nothing else to say on the way: e.g. no RuntimeWarning of an overflow or an invalid cast.
    allowed = (UncalibratedInputWarning, SunpyMetadataWarning, FITSFixedWarning)
    unexpected = [
        f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, allowed)
    ]
    assert not unexpected, unexpected
