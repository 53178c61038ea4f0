"""
sunpy-superres: super-resolution of solar line-of-sight magnetograms.

SOHO/MDI at 2"/pixel in, SDO/HMI-like 0.5"/pixel out, as sunpy Maps with an exact WCS.
"""

from .superresolve import superresolve
from .version import __version__

__all__ = ["__version__", "superresolve", "UncertaintyMap"]


def __getattr__(name):
    # UncertaintyMap is a sunpy Map class, so it needs sunpy.map: imported when first asked for,
    # which keeps `import sunpy_superres` and `load_model` from paying for sunpy.map (issue 18).
    if name == "UncertaintyMap":
        from .uncertainty import UncertaintyMap

        return UncertaintyMap
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
