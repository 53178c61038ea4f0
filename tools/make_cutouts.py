"""Cut the small real FITS files shipped in ``sunpy_superres/data`` from the full-disk originals.

Run from the repository root with the shared data beside it::

    python tools/make_cutouts.py ../shared/data

The cut-outs keep the original integer encoding (BSCALE/BLANK, RICE-compressed) so their values are
bit-identical to the source files, and their headers are the real ones with CRPIX/NAXIS moved to the
cut-out by sunpy's ``submap``.
"""

import sys
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits

OUT = Path(__file__).resolve().parents[1] / "sunpy_superres" / "data"

# (source file, output name, bottom-left pixel (x, y), size in pixels, description)
CUTOUTS = [
    (
        "mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits",
        "mdi_20101015_ar_cutout.fits",
        (462, 240),
        128,
        "MDI active region near disk centre, 2010-10-15",
    ),
    (
        "mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits",
        "mdi_20101015_limb_cutout.fits",
        (0, 480),
        64,
        "MDI east limb (off-disk NaNs), 2010-10-15",
    ),
    (
        "hmi/hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
        "hmi_20111217_ar_cutout.fits",
        (2101, 1337),
        512,
        "HMI active region, 2011-12-17",
    ),
    # The held-out frame: never trained, tuned or calibrated on; for evaluation examples only.
    (
        "hmi/hmi.M_720s.20160707_010000_TAI.magnetogram.fits",
        "hmi_20160707_heldout_cutout.fits",
        (996, 2549),
        256,
        "HMI active region of the held-out frame, 2016-07-07 (evaluation only)",
    ),
]


def cut(source, name, corner, size, description):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smap = sunpy.map.Map(source)
        sub = smap.submap(corner * u.pix, top_right=(corner[0] + size - 1, corner[1] + size - 1) * u.pix)
    header = sub.fits_header
    with fits.open(source) as hdul:
        bscale = hdul[1].header["BSCALE"]
    for key in ("BSCALE", "BZERO", "BLANK", "BITPIX", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True, remove_all=True)
    header["HISTORY"] = f"sunpy-superres test cut-out: {description}; from {Path(source).name}"
    # The originals are integers times BSCALE with NaN as BLANK: store them that way, losslessly.
    blank = np.iinfo(np.int32).min
    counts = np.where(np.isnan(sub.data), blank, np.round(np.nan_to_num(sub.data) / bscale)).astype(np.int32)
    hdu = fits.CompImageHDU(data=counts, header=header, compression_type="RICE_1")
    hdu.header["BSCALE"] = bscale
    hdu.header["BZERO"] = 0
    hdu.header["BLANK"] = blank
    out = OUT / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out, overwrite=True)
    back = sunpy.map.Map(out)
    assert back.data.shape == (size, size)
    assert np.allclose(back.data, sub.data, equal_nan=True, atol=bscale / 2)
    print(f"{name}: {out.stat().st_size / 1024:.0f} kB, {np.isnan(back.data).mean():.1%} NaN")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    only = sys.argv[2:]  # optional output names: cut only these
    for src, name, *rest in CUTOUTS:
        if not only or name in only:
            cut(root / src, name, *rest)
