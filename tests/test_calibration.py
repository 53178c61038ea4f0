"""The instrument calibration: which maps are MDI, which name an instrument, and the factor applied."""

import astropy.units as u
import numpy as np
import pytest

from sunpy_superres.calibration import (
    HMI_NOISE_LEVELS,
    LIU_2012,
    MDI_TO_HMI,
    calibration_factor,
    denormalise,
    hmi_noise_level,
    hmi_observing_sequence,
    instrument_known,
    is_mdi,
    normalise,
)
from sunpy_superres.metrics.physics import quiet_sun_noise

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


HMI = {"telescop": "SDO/HMI"}


@pytest.mark.parametrize(
    ("keys", "sequence"),
    [
        ({**HMI, "instrume": "HMI_SIDE1", "camera": 1, "date-obs": "2011-12-17T05:58:10"}, "mod-C"),
        ({**HMI, "instrume": "HMI_COMBINED", "camera": 3, "date-obs": "2019-06-21T05:58:46"}, "mod-L"),
        # The camera decides, not the date: the header says how the data were taken.
        ({**HMI, "instrume": "HMI_SIDE1", "camera": 1, "date-obs": "2019-06-21T05:58:46"}, "mod-C"),
        ({**HMI, "camera": 3, "date-obs": "2015-01-01T00:00:00"}, "mod-L"),
        ({**HMI, "camera": "1", "date-obs": "2019-06-21T05:58:46"}, "mod-C"),  # written as a string
        ({**HMI, "camera": "none", "date-obs": "2019-06-21T05:58:46"}, "mod-L"),  # unreadable: the date
        ({**HMI, "instrume": "HMI_FRONT2", "date-obs": "2019-06-21T05:58:46"}, "mod-C"),
        # A header that says neither goes by the date against the start of mod-L.
        ({**HMI, "date-obs": "2016-04-13T19:00:00"}, "mod-C"),
        ({**HMI, "date-obs": "2016-04-13T19:20:00"}, "mod-L"),
        ({"instrume": "HMI", "date-obs": "2010-06-01T00:00:00"}, "mod-C"),
        ({"telescop": "SOHO", "instrume": "MDI", "date-obs": "2010-06-01T00:00:00"}, None),
        ({"date-obs": "2019-06-21T05:58:46"}, None),
    ],
)
def test_the_hmi_noise_follows_the_observing_sequence(keys, sequence):
    smap = with_keys(**keys)
    assert hmi_observing_sequence(smap) == sequence
    level = hmi_noise_level(smap)
    assert level is None if sequence is None else level == HMI_NOISE_LEVELS[sequence]


def test_the_shipped_hmi_cutout_has_the_noise_of_its_sequence(hmi_cutout):
    # Both cameras' filtergrams (mod-L) average down the noise of one (mod-C): the training frames
    # measure 4.84 and 3.53 G. The shipped cut-out (2011-12-17, HMI_SIDE1, an active region) measures
    # 4.3 G itself: one camera's noise, not two cameras'.
    assert hmi_observing_sequence(hmi_cutout) == "mod-C"
    assert hmi_noise_level(hmi_cutout) == HMI_NOISE_LEVELS["mod-C"] == 4.8 * u.G
    own = quiet_sun_noise(hmi_cutout)
    assert abs(own - HMI_NOISE_LEVELS["mod-C"]) < abs(own - HMI_NOISE_LEVELS["mod-L"])


def test_normalisation_to_network_units_and_back():
    field = np.array([[-3000, 0], [1500, 3000]], dtype=np.int16)  # integer data are promoted
    units = normalise(field)
    assert units.dtype == np.float32
    np.testing.assert_array_equal(units, [[-1.0, 0.0], [0.5, 1.0]])
    back = denormalise(units)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, field.astype(np.float32))
