"""
sunpy-superres: super-resolution of solar line-of-sight magnetograms.

SOHO/MDI at 2"/pixel in, SDO/HMI-like 0.5"/pixel out, as sunpy Maps with an exact WCS.
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.0.0.dev0"

from .superresolve import superresolve  # noqa: E402
from .uncertainty import UncertaintyMap  # noqa: E402

__all__ = ["__version__", "superresolve", "UncertaintyMap"]
