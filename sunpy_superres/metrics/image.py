"""
Image-quality metrics of the paper's Table 1/Table 2: PSNR, SSIM, LPIPS and FID (section 5).

PSNR and SSIM are scikit-image's, evaluated over the physical range of the networks' data,
+-3000 G (``data_range = 6000 G``), as the paper computes them on data constrained to +-3000 G and
normalised to [-1, 1] (section 2).

LPIPS and FID need pretrained networks, and their weights cannot be shipped with this package or
downloaded behind the user's back. Both functions look for the weights in the place where the
upstream tool keeps them (or in a path the user gives) and raise `MissingWeightsError`, naming the
file to download and where to put it, when they are absent:

* **LPIPS** (Zhang et al. 2018, AlexNet variant, as in the paper). The maintained implementations
  (``lpips``, ``torchmetrics``, ``torch-fidelity``) all build the AlexNet backbone with
  ``torchvision``, which is not always importable beside a given torch build (it is not in this
  project's reference environment). So the few AlexNet feature layers are defined here, in
  torchvision's layer layout, so that torchvision's official ImageNet state dict
  ``alexnet-owt-7be5be79.pth`` loads unchanged. The LPIPS v0.1 linear calibration layers are the
  file that ``torchmetrics`` ships inside its wheel (identical to the ``lpips`` package's
  ``weights/v0.1/alex.pth``); ``torchmetrics`` itself needs no torchvision.
* **FID** (Heusel et al. 2017) in the feature space of a pretrained CLIP image encoder (ViT-B/32), as
  the paper states (section 5), through ``transformers`` (no torchvision needed), with weights in
  safetensors format from the Hugging Face cache or a local directory. CLIP-space FID values are
  much smaller than Inception-space FIDs and are not comparable with them.

Magnetograms are single-channel signed fields; both networks expect RGB images. The mapping used is
the networks' own normalisation of the paper: B is clipped to +-3000 G, divided by 3000 G (so
[-1, 1], the range LPIPS expects) and repeated over the three channels; for CLIP, [-1, 1] is
further mapped to [0, 1] as RGB intensity before CLIP's own mean/std normalisation.

References
----------
Ramunno, F. P. et al. 2025, A&A 698, A140, section 5 and Tables 1-2.
Wang, Z., Bovik, A. C., Sheikh, H. R., Simoncelli, E. P. 2004, IEEE TIP 13, 600 (SSIM).
Zhang, R., Isola, P., Efros, A. A., Shechtman, E., Wang, O. 2018, CVPR, 586 (LPIPS).
Heusel, M., Ramsauer, H., Unterthiner, T., Nessler, B., Hochreiter, S. 2017, NeurIPS 30 (FID).
Radford, A. et al. 2021, ICML, 8748 (CLIP).
"""

import functools
import importlib.util
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.util import crop

from ..calibration import NORMALISATION_RANGE
from ..maps import map_data
from ..models.manifest import sha256_file

__all__ = [
    "MissingWeightsError",
    "psnr",
    "ssim",
    "lpips",
    "fid",
    "frechet_distance",
    "default_alexnet_path",
    "ALEXNET_URL",
    "CLIP_REPO_ID",
]

#: The physical range of the paper's data, +-3000 G (Ramunno et al. 2025, section 2).
DATA_RANGE = 2 * NORMALISATION_RANGE

#: torchvision's official ImageNet AlexNet weights (``AlexNet_Weights.IMAGENET1K_V1``); the hex part of
#: the name is the start of the file's SHA-256, checked before loading.
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILENAME = ALEXNET_URL.rsplit("/", 1)[1]

#: Hugging Face repository of the CLIP ViT-B/32 encoder used for FID.
CLIP_REPO_ID = "openai/clip-vit-base-patch32"
CLIP_FILES = ("config.json", "model.safetensors")

# SSIM as Wang et al. (2004): 11x11 Gaussian window of sigma 1.5 and population covariances
# (the settings scikit-image documents for matching the paper's implementation).
_SSIM_SIGMA = 1.5
_SSIM_OPTIONS = dict(gaussian_weights=True, sigma=_SSIM_SIGMA, use_sample_covariance=False)
_SSIM_PAD = int(3.5 * _SSIM_SIGMA + 0.5)  # skimage's half window for these options

# torch.hub's convention: ``name-<first hex digits of sha256>.pth``.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.pth?$")


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights needed by a metric are not on this machine; the message says what to fetch."""


# ----------------------------------------------------------------------------------------------
# Inputs


def _as_gauss(x, name):
    """A map or Quantity as a new float64 array in G (masked map pixels as NaN)."""
    from sunpy.map import GenericMap

    if isinstance(x, GenericMap):
        if x.unit is None or not x.unit.is_equivalent(u.G):
            raise ValueError(
                f"{name} has unit {x.unit}, not a magnetic field; set its meta['bunit'] (e.g. to 'G')."
            )
        return map_data(x, u.G)
    if isinstance(x, u.Quantity):
        return np.array(x.to_value(u.G), dtype=np.float64)
    raise TypeError(
        f"{name} must be a sunpy Map or an astropy Quantity in G, got {type(x).__name__}; "
        "wrap a plain array in Gauss as `array * u.G`."
    )


def _pair(pred, truth):
    """Both inputs as 2-D float64 arrays in G of the same shape, and the mask of pixels finite in both."""
    p = _as_gauss(pred, "pred")
    t = _as_gauss(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(
            f"pred and truth must have the same shape; pred is {p.shape} and truth is "
            f"{t.shape}. Compare maps on the same grid."
        )
    if p.ndim != 2:
        raise ValueError(f"pred and truth must be 2-D images, got shape {p.shape}.")
    valid = np.isfinite(p) & np.isfinite(t)
    if not valid.any():
        raise ValueError("pred and truth have no pixel that is finite in both.")
    return p, t, valid


def _half_range(data_range):
    half = data_range.to_value(u.G) / 2
    if not np.isfinite(half) or half <= 0:
        raise ValueError(f"data_range must be positive and finite, got {data_range}.")
    return half


# ----------------------------------------------------------------------------------------------
# PSNR and SSIM


@u.quantity_input(data_range=u.G)
def psnr(pred, truth, *, data_range: u.G = DATA_RANGE):
    """
    Peak signal-to-noise ratio, ``10 log10(data_range^2 / MSE)``, in dB.

    Parameters
    ----------
    pred, truth : `~sunpy.map.GenericMap` or `~astropy.units.Quantity`
        Predicted and reference magnetograms (G or convertible), same shape.
    data_range : `~astropy.units.Quantity`
        Peak-to-peak range of the signal, default 6000 G (+-3000 G). Values beyond
        ``+-data_range / 2`` are clipped to it first, as the paper's data are (section 2).

    Returns
    -------
    float
        PSNR in dB; `inf` for identical inputs.

    Raises
    ------
    TypeError
        If an input is neither a Map nor a Quantity.
    ValueError
        If the shapes differ (the message names both), the units are not magnetic, or no pixel is
        finite in both inputs.

    Notes
    -----
    Pixels that are NaN (or masked) in either input are excluded from the MSE. Computed by
    `skimage.metrics.peak_signal_noise_ratio` on the finite pixels.

    References
    ----------
    Ramunno et al. 2025, section 5, Eqs. (3)-(4).
    """
    p, t, valid = _pair(pred, truth)
    half = _half_range(data_range)
    p = np.clip(p[valid], -half, half)
    t = np.clip(t[valid], -half, half)
    # MSE = 0 (identical inputs) is a legitimate infinite PSNR, not a numerical accident.
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(t, p, data_range=2 * half))


@u.quantity_input(data_range=u.G)
def ssim(pred, truth, *, data_range: u.G = DATA_RANGE):
    """
    Mean structural similarity index (Wang et al. 2004), between -1 and 1.

    Parameters
    ----------
    pred, truth : `~sunpy.map.GenericMap` or `~astropy.units.Quantity`
        Predicted and reference magnetograms (G or convertible), same shape, at least 11x11.
    data_range : `~astropy.units.Quantity`
        Peak-to-peak range, default 6000 G; sets the stabilising constants C1 = (0.01 R)^2 and
        C2 = (0.03 R)^2. Values beyond ``+-data_range / 2`` are clipped first (section 2 of the paper).

    Returns
    -------
    float
        Mean SSIM; 1 for identical inputs.

    Raises
    ------
    TypeError
        If an input is neither a Map nor a Quantity.
    ValueError
        If the shapes differ (the message names both), the units are not magnetic, no pixel is finite
        in both, or the image is smaller than the 11x11 window.

    Notes
    -----
    `skimage.metrics.structural_similarity` with an 11x11 Gaussian window (sigma 1.5) and population
    covariances, the settings of Wang et al. (2004). NaN handling: pixels NaN (or masked) in either
    input are set to 0 G in *both* images, so a window straddling the limb sees identical zeros in
    both, and the local SSIM map is averaged only over pixels finite in both (and, like
    scikit-image, not within 5 pixels of the image border). Without NaNs the value equals
    scikit-image's mean SSIM.

    References
    ----------
    Wang et al. 2004, IEEE TIP 13, 600. Ramunno et al. 2025, section 5, Eq. (5).
    """
    p, t, valid = _pair(pred, truth)
    half = _half_range(data_range)
    p = np.where(valid, np.clip(p, -half, half), 0.0)
    t = np.where(valid, np.clip(t, -half, half), 0.0)
    _, local = structural_similarity(t, p, data_range=2 * half, full=True, **_SSIM_OPTIONS)
    inner = crop(valid, _SSIM_PAD)
    if not inner.any():
        raise ValueError("no pixel finite in both inputs lies 5 or more pixels from the border.")
    return float(np.mean(crop(local, _SSIM_PAD)[inner], dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Network inputs


def _network_images(arrays):
    """2-D arrays in G -> float32 tensor (N, 3, H, W) in [-1, 1]: clipped at +-3000 G, NaN as 0 G."""
    import torch

    scale = NORMALISATION_RANGE.to_value(u.G)
    stack = np.stack([np.clip(np.nan_to_num(a, nan=0.0), -scale, scale) / scale for a in arrays])
    return torch.from_numpy(stack.astype(np.float32))[:, None].repeat(1, 3, 1, 1)


# ----------------------------------------------------------------------------------------------
# LPIPS


def default_alexnet_path():
    """
    Where `lpips` looks for the AlexNet weights by default: torch.hub's checkpoint cache.

    That is the file torchvision itself downloads to, ``$TORCH_HOME/hub/checkpoints/
    alexnet-owt-7be5be79.pth`` (``~/.cache/torch/hub/checkpoints`` unless ``TORCH_HOME`` or
    ``XDG_CACHE_HOME`` say otherwise), so a machine that ever ran torchvision's pretrained AlexNet has it.

    Returns
    -------
    `pathlib.Path`
    """
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME


def _missing_alexnet(path):
    return MissingWeightsError(
        f"LPIPS needs the ImageNet AlexNet weights of torchvision, {ALEXNET_FILENAME}, and they are not at "
        f"{path}. Download {ALEXNET_URL} (233 MB) and either put it at {default_alexnet_path()} "
        "(torch.hub's cache, where torchvision keeps it) or pass its path as `weights=`. "
        "A .safetensors file with the same state dict keys (features.0.weight, ...) is accepted too."
    )


def _alexnet_features():
    """AlexNet's convolutional part in torchvision's layout (``torchvision.models.alexnet().features``)."""
    from torch import nn

    # Same indices as torchvision, so the official state dict's "features.<i>.*" keys fit.
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),  # 0, 1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),  # 3, 4
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),  # 6, 7
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 8, 9
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 10, 11
        nn.MaxPool2d(kernel_size=3, stride=2),  # 12
    )


# LPIPS compares the outputs of AlexNet's five ReLUs (Zhang et al. 2018, section 3).
_LPIPS_TAPS = (1, 4, 7, 9, 11)
_LPIPS_CHANNELS = (64, 192, 384, 256, 256)
# LPIPS's input scaling layer: ImageNet statistics in [-1, 1] units (Zhang et al. 2018 code).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def _load_state_dict(path):
    """Tensors of a .safetensors file, or of a torch state-dict pickle loaded tensors-only."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt"):
        named_hash = _HASH_IN_NAME.search(path.name)
        if named_hash and not sha256_file(path).startswith(named_hash.group(1)):
            raise ValueError(
                f"{path} does not match the SHA-256 prefix {named_hash.group(1)} in its name: "
                f"it is corrupt or not the official file. Download it again from {ALEXNET_URL}."
            )
        # These are torchvision's published weights, only distributed as a torch pickle.
        # weights_only=True restricts unpickling to tensors and containers: no code runs.
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"cannot read weights from {path}: expected a .safetensors or .pth file.")


def _lpips_linear_path():
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or spec.origin is None:
        raise ImportError(
            "lpips needs the torchmetrics package (pip install torchmetrics), which ships "
            "the LPIPS v0.1 linear-layer weights."
        )
    return Path(spec.origin).parent / "functional" / "image" / "lpips_models" / "alex.pth"


@functools.lru_cache(maxsize=2)
def _lpips_network(alexnet_path, _stamp):
    """AlexNet features with the LPIPS linear weights; cached per weights file (path, mtime, size)."""
    import torch

    features = _alexnet_features()
    state = _load_state_dict(Path(alexnet_path))
    own = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(own, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{alexnet_path} is not an AlexNet state dict in torchvision's layout "
            f"(features.0.weight ... features.10.bias): {err}"
        ) from err
    linear_path = _lpips_linear_path()
    if not linear_path.is_file():
        raise MissingWeightsError(
            f"the LPIPS linear-layer weights {linear_path} are missing from the "
            "torchmetrics installation; reinstall torchmetrics (>=1.0)."
        )
    # This small file (5 x 1x1 convolutions) is shipped inside the torchmetrics wheel, which loads it the
    # same way for its own LPIPS; weights_only=True keeps it to tensors.
    linear = torch.load(linear_path, map_location="cpu", weights_only=True)
    weights = [linear[f"lin{i}.model.1.weight"].float() for i in range(len(_LPIPS_TAPS))]
    for w, channels in zip(weights, _LPIPS_CHANNELS, strict=True):
        if w.shape != (1, channels, 1, 1):
            raise ValueError(f"unexpected LPIPS linear weights in {linear_path}: shape {tuple(w.shape)}")
    features.eval().requires_grad_(False)
    return features, weights


def _lpips_distance(features, weights, x0, x1):
    """LPIPS of image batches x0, x1 (N, 3, H, W) in [-1, 1] (Zhang et al. 2018, Eq. 1)."""
    import torch
    import torch.nn.functional as F

    shift = torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1)
    h0, h1 = (x0 - shift) / scale, (x1 - shift) / scale
    distance = torch.zeros(x0.shape[0])
    for i, layer in enumerate(features[: _LPIPS_TAPS[-1] + 1]):
        h0, h1 = layer(h0), layer(h1)
        if i in _LPIPS_TAPS:
            # Unit-normalise each pixel's feature vector, weight the squared difference per channel,
            # average over the image: the same eps placement as torchmetrics' implementation.
            n0 = h0 / torch.sqrt(torch.sum(h0**2, dim=1, keepdim=True) + 1e-8)
            n1 = h1 / torch.sqrt(torch.sum(h1**2, dim=1, keepdim=True) + 1e-8)
            w = weights[_LPIPS_TAPS.index(i)]
            distance = distance + F.conv2d((n0 - n1) ** 2, w).mean(dim=(1, 2, 3))
    return distance


def lpips(pred, truth, *, weights=None, net="alex"):
    """
    Learned perceptual image patch similarity (LPIPS v0.1, AlexNet) between two magnetograms.

    Parameters
    ----------
    pred, truth : `~sunpy.map.GenericMap` or `~astropy.units.Quantity`
        Predicted and reference magnetograms (G or convertible), same shape, at least 32x32.
    weights : str or `pathlib.Path`, optional
        The AlexNet ImageNet weights: torchvision's ``alexnet-owt-7be5be79.pth`` (checked against the
        SHA-256 prefix in its name) or a ``.safetensors`` file of the same state dict. Default:
        `default_alexnet_path` (torch.hub's cache). Never downloaded by this function.
    net : str, optional
        Backbone; only ``"alex"`` (the paper's, section 5) is provided.

    Returns
    -------
    float
        LPIPS distance (>= 0; 0 for identical inputs; lower is more similar).

    Raises
    ------
    MissingWeightsError
        If the AlexNet weights file is not there; the message names the file, its URL and where to
        put it.
    ImportError
        If torchmetrics (source of the LPIPS linear-layer weights) is not installed.
    TypeError
        If an input is neither a Map nor a Quantity.
    ValueError
        For an unknown ``net``, different shapes (both named), non-magnetic units, a weights file of
        the wrong kind or failing its hash check.

    Notes
    -----
    Each magnetogram is clipped to +-3000 G, divided by 3000 G ([-1, 1], the range LPIPS expects)
    and repeated over the three colour channels. Pixels NaN (or masked) in either input are 0 G in
    both. The AlexNet layers are defined in this module (torchvision's layout) because the maintained
    LPIPS packages need torchvision; the distance is the same as torchmetrics' ``_LPIPS`` (tested).

    References
    ----------
    Zhang et al. 2018, CVPR, 586. Ramunno et al. 2025, section 5.
    """
    import torch

    if net != "alex":
        raise ValueError(
            f"net={net!r} is not provided; the only LPIPS backbone here is 'alex' (the paper's choice)."
        )
    p, t, valid = _pair(pred, truth)
    if min(p.shape) < 32:
        raise ValueError(f"LPIPS/AlexNet needs images of at least 32x32 pixels, got {p.shape}.")
    p = np.where(valid, p, np.nan)
    t = np.where(valid, t, np.nan)
    path = Path(weights) if weights is not None else default_alexnet_path()
    if not path.is_file():
        raise _missing_alexnet(path)
    stat = path.stat()
    features, lin = _lpips_network(str(path.resolve()), (stat.st_mtime_ns, stat.st_size))
    with torch.inference_mode():
        distance = _lpips_distance(features, lin, _network_images([p]), _network_images([t]))
    return float(distance[0])


# ----------------------------------------------------------------------------------------------
# FID


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """
    Frechet distance between two Gaussians, ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    Parameters
    ----------
    mu1, mu2 : array_like
        Means, shape (d,).
    sigma1, sigma2 : array_like
        Covariance matrices, shape (d, d), symmetric positive semi-definite (singular allowed).

    Returns
    -------
    float
        The squared Frechet (2-Wasserstein) distance, >= 0 (rounding below 0 is returned as 0).

    Raises
    ------
    ValueError
        If the shapes do not match.

    Notes
    -----
    Tr (S1 S2)^(1/2) is computed as the sum of the square roots of the eigenvalues of
    A S2 A with A = S1^(1/2): that matrix is symmetric positive semi-definite with the same
    eigenvalues as S1 S2, so no complex parts or failed square roots arise for the singular
    covariances of small samples.

    References
    ----------
    Heusel et al. 2017, NeurIPS 30; Ramunno et al. 2025, Eq. (6).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, float)), np.atleast_2d(np.asarray(sigma2, float))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}."
        )
    eigval, eigvec = linalg.eigh((s1 + s1.T) / 2)
    root1 = (eigvec * np.sqrt(np.clip(eigval, 0, None))) @ eigvec.T
    middle = root1 @ s2 @ root1
    trace_sqrt = np.sum(np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt), 0.0)


def _missing_clip(where, err=None):
    files = " and ".join(CLIP_FILES)
    return MissingWeightsError(
        f"FID needs the CLIP ViT-B/32 image encoder ({files} of the Hugging Face repository "
        f"{CLIP_REPO_ID}) and could not load it from {where}"
        + (f" ({err})" if err else "")
        + ". On a machine with internet run "
        f"`hf download {CLIP_REPO_ID} {' '.join(CLIP_FILES)}` (this fills the Hugging Face cache, "
        "~/.cache/huggingface/hub unless HF_HOME says otherwise, where fid looks by default), or put "
        "the two files in a directory and pass it as `weights=`."
    )


@functools.lru_cache(maxsize=2)
def _clip_model(source, _stamp):
    try:
        from transformers import CLIPModel
    except ImportError as err:
        raise ImportError(
            "fid needs the transformers package (pip install transformers) for the CLIP image encoder."
        ) from err
    try:
        # local_files_only: a metric never downloads; use_safetensors: no pickles (design rule 6).
        model = CLIPModel.from_pretrained(source, local_files_only=True, use_safetensors=True)
    except OSError as err:
        raise _missing_clip(source, err) from err
    return model.eval().requires_grad_(False)


def _clip_features(model, arrays, batch_size):
    """CLIP image embeddings (CLIP's ``encode_image``) of magnetograms, float64 (N, d)."""
    import torch
    import torch.nn.functional as F
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    size = model.config.vision_config.image_size
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    features = []
    with torch.inference_mode():
        for start in range(0, len(arrays), batch_size):
            batch = []
            for a in arrays[start : start + batch_size]:  # one by one: the images may differ in size
                rgb = (_network_images([a]) + 1) / 2  # [-1, 1] -> [0, 1] intensity
                # Antialiased bicubic resize, like PIL's (the "clean" resize of Parmar et al. 2022).
                rgb = F.interpolate(
                    rgb, size=(size, size), mode="bicubic", antialias=True, align_corners=False
                ).clamp(0, 1)
                batch.append((rgb - mean) / std)
            pooled = model.vision_model(pixel_values=torch.cat(batch)).pooler_output
            features.append(model.visual_projection(pooled).double())
    return torch.cat(features).numpy()


def _image_set(images, name):
    if isinstance(images, u.Quantity) and images.ndim == 3:
        images = list(images)
    arrays = [_as_gauss(x, f"{name}[{i}]") for i, x in enumerate(images)]
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"{name}[{i}] must be a 2-D image, got shape {a.shape}.")
    if len(arrays) < 2:
        raise ValueError(f"{name} needs at least 2 images for a covariance, got {len(arrays)}.")
    return arrays


def fid(preds, truths, *, weights=None, batch_size=16):
    """
    Frechet distance between the CLIP-feature distributions of predicted and true magnetograms.

    Parameters
    ----------
    preds, truths : sequence of `~sunpy.map.GenericMap` or `~astropy.units.Quantity`
        The two sets of 2-D magnetograms (G or convertible), at least 2 each; sizes may differ (each
        is resized to the encoder's input size). A 3-D Quantity is taken as a stack of images.
    weights : str or `pathlib.Path`, optional
        A directory holding ``config.json`` and ``model.safetensors`` of a CLIP model
        (`transformers` layout). Default: the Hugging Face cache entry of ``openai/clip-vit-base-patch32``.
        Never downloaded by this function.
    batch_size : int, optional
        Images per forward pass.

    Returns
    -------
    float
        FID in CLIP ViT-B/32 embedding space (>= 0; 0 for identical sets; lower is better). Not
        comparable with Inception-based FIDs.

    Raises
    ------
    MissingWeightsError
        If the CLIP weights are not found; the message names the repository, files and command.
    ImportError
        If transformers is not installed.
    TypeError
        If an image is neither a Map nor a Quantity.
    ValueError
        If a set has fewer than 2 images or an image is not 2-D, or the units are not magnetic.

    Notes
    -----
    Each magnetogram is clipped to +-3000 G, mapped to [0, 1] (-3000 G -> 0, +3000 G -> 1), repeated
    to RGB, resized to 224x224 (antialiased bicubic, clipped back to [0, 1] where bicubic overshoots),
    normalised with CLIP's mean and std, and encoded
    to CLIP's projected image embedding (``encode_image``, 512 values for ViT-B/32). NaN pixels are
    0 G. The Gaussians' covariances are sample covariances; with fewer images than feature
    dimensions they are singular, which `frechet_distance` handles, but the value then depends on
    the number of images: compare FIDs computed on equally many images only.

    References
    ----------
    Heusel et al. 2017, NeurIPS 30. Radford et al. 2021 (CLIP). Ramunno et al. 2025, section 5,
    Eq. (6) ("in the latent space of a pre-trained encoder CLIP").
    """
    pred_arrays = _image_set(preds, "preds")
    true_arrays = _image_set(truths, "truths")
    if weights is None:
        source, stamp = CLIP_REPO_ID, None
    else:
        path = Path(weights)
        if not (path / "config.json").is_file():
            raise _missing_clip(path)
        source = str(path.resolve())
        stamp = tuple((f.name, f.stat().st_mtime_ns) for f in sorted(path.iterdir()) if f.is_file())
    model = _clip_model(source, stamp)
    f_pred = _clip_features(model, pred_arrays, batch_size)
    f_true = _clip_features(model, true_arrays, batch_size)
    return frechet_distance(
        f_pred.mean(axis=0), np.cov(f_pred, rowvar=False), f_true.mean(axis=0), np.cov(f_true, rowvar=False)
    )
