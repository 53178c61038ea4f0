"""Helpers shared by the tests."""

import astropy.units as u
import numpy as np
import sunpy.map
import torch
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header

from sunpy_superres.models.interpolation import NearestModel


def synthetic_map(shape=(32, 32), scale=2.0, unit=u.G, value=None, scale_y=None, instrument="synthetic"):
    """
    A map on a real-looking helioprojective header (Earth observer, 2010-10-15).

    Its INSTRUME is ``instrument`` (a map that names none is warned about by superresolve).
    """
    data = np.zeros(shape) if value is None else np.full(shape, value, dtype=float)
    ref = SkyCoord(
        0 * u.arcsec, 0 * u.arcsec, obstime="2010-10-15", observer="earth", frame=frames.Helioprojective
    )
    scale_y = scale if scale_y is None else scale_y
    header = make_fitswcs_header(
        data, ref, scale=[scale, scale_y] * u.arcsec / u.pix, unit=unit, instrument=instrument
    )
    return sunpy.map.Map(data, header)


class NoisyNearest(NearestModel):
    """
    A stochastic stand-in: nearest replication plus seeded Gaussian noise of ``sigma`` network units.

    It exercises the sampling path (per-tile seeds, samples, UncertaintyMap) without a trained network.
    """

    name = "noisy-nearest"
    stochastic = True
    sigma = 0.01

    def _forward(self, x, *, seeds, signs=None):
        up = super()._forward(x, seeds=seeds)
        noise = torch.stack([torch.randn(up.shape[1:], generator=_generator(s)) for s in seeds])
        if signs is not None:  # antithetic pairs: the noise of a seed, negated
            noise = noise * torch.tensor(signs, dtype=noise.dtype).view(-1, 1, 1, 1)
        return up + self.sigma * noise

    def _predict_samples(self, batch, seeds, repeats, signs=None):
        x = self._tensor(self._array(np.repeat(batch, repeats, axis=0), "predict_samples"))
        with torch.inference_mode():
            return self._forward(x, seeds=seeds, signs=signs)[:, 0].numpy()


def _generator(seed):
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g
