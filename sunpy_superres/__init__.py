"""
sunpy-superres: super-resolution of solar line-of-sight magnetograms.

SOHO/MDI at 2"/pixel in, SDO/HMI-like 0.5"/pixel out, as sunpy Maps with an exact WCS.
"""

from .superresolve import superresolve
from .uncertainty import UncertaintyMap
from .version import __version__

__all__ = ["__version__", "superresolve", "UncertaintyMap"]
