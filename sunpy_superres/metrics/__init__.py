"""
Metrics of super-resolved magnetograms: physics (flux, active-region area), regions (NOAA lookup,
AR-centred crops), image quality (PSNR, SSIM, LPIPS, FID) and Fourier analysis.

The submodules are the API: ``from sunpy_superres.metrics import physics`` then
``physics.unsigned_flux(smap)``.
"""

from . import image, physics, regions, spectra

__all__ = ["image", "physics", "regions", "spectra"]
