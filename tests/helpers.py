"""Helpers shared by the tests."""

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header


def synthetic_map(shape=(32, 32), scale=2.0, unit=u.G, value=None, scale_y=None):
    """A map on a real-looking helioprojective header (Earth observer, 2010-10-15)."""
    data = np.zeros(shape) if value is None else np.full(shape, value, dtype=float)
    ref = SkyCoord(0 * u.arcsec, 0 * u.arcsec, obstime="2010-10-15", observer="earth",
                   frame=frames.Helioprojective)
    scale_y = scale if scale_y is None else scale_y
    header = make_fitswcs_header(data, ref, scale=[scale, scale_y] * u.arcsec / u.pix,
                                 unit=unit)
    return sunpy.map.Map(data, header)
