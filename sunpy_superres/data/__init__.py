"""
Small real magnetograms shipped with the package, for tests, examples and the quick start.

They are cut from full-disk originals by ``tools/make_cutouts.py``, keep their real (adjusted) headers
and their original integer encoding, so their values equal the source files'.

Attributes
----------
MDI_AR_CUTOUT : str
    SOHO/MDI ``fd_M_96m_lev182`` 2010-10-15 00:00 TAI, 128x128 pixels at 1.986"/pixel around the
    active region near disk centre (from the MDI/HMI overlap year).
MDI_LIMB_CUTOUT : str
    The same MDI frame, 64x64 pixels on the east limb (off-disk pixels are NaN).
HMI_AR_CUTOUT : str
    SDO/HMI ``M_720s`` 2011-12-17 06:00 TAI, 512x512 pixels at 0.504"/pixel around an active region,
    in HMI's raw orientation (CROTA2 about 180 degrees).
HMI_HELDOUT_CUTOUT : str
    SDO/HMI ``M_720s`` 2016-07-07 01:00 TAI, 256x256 pixels at 0.504"/pixel around the strongest
    active region of the frame that every shipped model holds out: nothing was trained, tuned or
    calibrated on it, so it is for evaluation (e.g. of the uncertainty's coverage) only.
MODELS_DIR : `pathlib.Path`
    The embedded trained models, one model directory each (``superres.json`` manifest with
    checksums, safetensors weights, a ``MODEL_CARD.md``); they register under their directory name.
"""

from pathlib import Path

__all__ = [
    "MDI_AR_CUTOUT",
    "MDI_LIMB_CUTOUT",
    "HMI_AR_CUTOUT",
    "HMI_HELDOUT_CUTOUT",
    "DATA_DIR",
    "MODELS_DIR",
]

DATA_DIR = Path(__file__).parent
MDI_AR_CUTOUT = str(DATA_DIR / "mdi_20101015_ar_cutout.fits")
MDI_LIMB_CUTOUT = str(DATA_DIR / "mdi_20101015_limb_cutout.fits")
HMI_AR_CUTOUT = str(DATA_DIR / "hmi_20111217_ar_cutout.fits")
HMI_HELDOUT_CUTOUT = str(DATA_DIR / "hmi_20160707_heldout_cutout.fits")
MODELS_DIR = DATA_DIR / "models"
