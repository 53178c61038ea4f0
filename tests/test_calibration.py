"""The instrument calibration: which maps are MDI, which name an instrument, and the factor applied."""

import numpy as np
import pytest

from sunpy_superres.calibration import (
    LIU_2012,
    MDI_TO_HMI,
    calibration_factor,
    denormalise,
    instrument_known,
    is_mdi,
    normalise,
)

from .helpers import synthetic_map


def with_keys(**keys):
    smap = synthetic_map(instrument=None)
    meta = smap.meta.copy()
    for key in ("telescop", "instrume"):
        meta.pop(key, None)
    meta.update(keys)
    return type(smap)(smap.data, meta)


@pytest.mark.parametrize(
    ("keys", "known", "mdi"),
    [
        ({}, False, False),
        ({"telescop": "  "}, False, False),
        ({"telescop": "SOLIS"}, True, False),  # the telescope alone names it
        ({"instrume": "VSM"}, True, False),  # the instrument alone names it
        ({"telescop": "SOHO", "instrume": "MDI"}, True, True),
        ({"telescop": "soho", "instrume": "mdi 96m"}, True, True),
        ({"telescop": " SOHO ", "instrume": " MDI"}, True, True),  # padded values, as FITS cards may be
        ({"telescop": "SOHO", "instrume": "EIT"}, True, False),
        ({"instrume": "MDI"}, True, False),  # MDI only on SOHO
    ],
)
def test_instrument_known_and_is_mdi(keys, known, mdi):
    smap = with_keys(**keys)
    assert instrument_known(smap) is known
    assert is_mdi(smap) is mdi


def test_calibration_factor_follows_the_instrument(mdi_cutout, hmi_cutout):
    assert calibration_factor(mdi_cutout) == (MDI_TO_HMI, LIU_2012) and MDI_TO_HMI == pytest.approx(1 / 1.4)
    assert calibration_factor(with_keys(telescop="SOHO", instrume="MDI")) == (MDI_TO_HMI, LIU_2012)
    assert calibration_factor(hmi_cutout) == (1.0, "none (not MDI)")
    assert calibration_factor(with_keys()) == (1.0, "none (instrument unknown)")
    assert calibration_factor(with_keys(instrume="VSM")) == (1.0, "none (not MDI)")
    assert calibration_factor(mdi_cutout, calibrate=False) == (1.0, "none (calibrate=False)")
    assert calibration_factor(mdi_cutout, calibrate=None) == (1.0, "none (calibrate=False)")
    assert calibration_factor(mdi_cutout, calibrate=0.8) == (0.8, "user-supplied factor")
    for bad in (0, -1.0, float("nan"), float("inf"), "1.4", object()):
        with pytest.raises(
            ValueError, match=r"is not a positive finite factor; pass True \(MDI 1/1.4\), False"
        ):
            calibration_factor(mdi_cutout, calibrate=bad)


def test_normalisation_to_network_units_and_back():
    field = np.array([[-3000, 0], [1500, 3000]], dtype=np.int16)  # integer data are promoted
    units = normalise(field)
    assert units.dtype == np.float32
    np.testing.assert_array_equal(units, [[-1.0, 0.0], [0.5, 1.0]])
    back = denormalise(units)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, field.astype(np.float32))
