"""
Training data from full-disk HMI magnetograms: crops inside the disk, the paper's degradation,
augmentation, and a date-based train/validation split; and aligned crops of MDI/HMI pairs for
fine-tuning.

Everything random here is derived from ``(seed, sample index)``, so the n-th sample of a run is the
same whatever process draws it and however often training is interrupted and resumed: batches need
no saved RNG state (exact resume), and ranks of a distributed run draw disjoint indices.
"""

import functools
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np

from ..calibration import NORMALISATION_RANGE
from ..metrics.physics import quiet_noise_gauss
from ..seeds import sample_rng

__all__ = ["degrade", "observation_date", "split_by_date", "FullDisk", "Patch", "CropDataset", "PairCrops"]


def degrade(hr, factor=4):
    """
    The paper's low-resolution input: ``factor x factor`` block mean, then nearest replication.

    Section 4 of Ramunno et al. (2025): "we compute the average value over every 4x4-pixel block
    [...] Finally, we upscale this image [...] by replicating each pixel 4 times without
    interpolation". The result has the shape of ``hr`` and the same mean over every block, which
    simulates 2"/pixel from 0.5"/pixel HMI.

    Parameters
    ----------
    hr : `numpy.ndarray` or `torch.Tensor`
        ``(..., H, W)`` with ``H`` and ``W`` multiples of ``factor``.
    factor : int
        Block size.

    Returns
    -------
    array of the input's type and shape.

    Raises
    ------
    ValueError
        If the last two dimensions are not multiples of ``factor``.
    """
    *lead, h, w = hr.shape
    if h % factor or w % factor:
        raise ValueError(f"image shape {(h, w)} is not a multiple of the factor {factor}")
    blocks = hr.reshape(*lead, h // factor, factor, w // factor, factor)
    if isinstance(hr, np.ndarray):
        lr = blocks.mean(axis=(-3, -1))
        return np.repeat(np.repeat(lr, factor, axis=-2), factor, axis=-1).astype(hr.dtype, copy=False)
    lr = blocks.mean(dim=(-3, -1))
    return lr.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})_\d{6}")


def observation_date(path):
    """
    Observation date ``"YYYY-MM-DD"`` of a magnetogram file.

    Taken from a JSOC-style file name (``..._20111217_060000_TAI...``) when it has one, otherwise
    from the FITS header (``T_REC`` or ``DATE-OBS``).

    Raises
    ------
    ValueError
        If no date is found.
    """
    match = _DATE.search(Path(path).name)
    if match:
        return "-".join(match.groups())
    from astropy.io import fits

    with fits.open(path, lazy_load_hdus=True) as hdul:
        for hdu in hdul:
            for key in ("T_REC", "DATE-OBS", "DATE_OBS"):
                value = str(hdu.header.get(key, ""))
                m = re.match(r"(\d{4})[.-](\d{2})[.-](\d{2})", value)
                if m:
                    return "-".join(m.groups())
    raise ValueError(f"cannot find an observation date for {path}")


def split_by_date(paths, *, validation_dates=None, validation_fraction=0.25, period="day"):
    """
    Split files into training and validation sets by observation period, never by file.

    The paper's code splits frames at random, so frames minutes apart land on both sides and the
    validation score is optimistic (``reference/prior-art.md``). Here whole periods (days or months)
    go to one side only.

    Parameters
    ----------
    paths : iterable of str or path-like
        Magnetogram files.
    validation_dates : iterable of str, optional
        Periods (``"YYYY-MM-DD"`` for days, ``"YYYY-MM"`` for months) that form the validation set.
        When not given, the latest ``validation_fraction`` of periods (at least one) does, so
        validation data lie after all training data.
    validation_fraction : float
        Fraction of periods for validation when ``validation_dates`` is not given.
    period : {"day", "month"}
        Grouping unit.

    Returns
    -------
    train, validation : list of `pathlib.Path`
        Sorted by date; no period (hence no file) in both.

    Raises
    ------
    ValueError
        If ``period`` is unknown, ``validation_fraction`` is not in (0, 1), fewer than two periods
        are given, or one side would be empty.
    """
    if period not in ("day", "month"):
        raise ValueError(f"period must be 'day' or 'month', got {period!r}")
    keylen = 10 if period == "day" else 7
    by_period = {}
    for p in paths:
        by_period.setdefault(observation_date(p)[:keylen], []).append(Path(p))
    periods = sorted(by_period)
    if validation_dates is None:
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        if len(periods) < 2:
            raise ValueError(f"need files from at least two {period}s to split, got {periods}")
        n_val = max(1, int(round(validation_fraction * len(periods))))
        n_val = min(n_val, len(periods) - 1)
        val_periods = set(periods[-n_val:])
    else:
        val_periods = {str(d)[:keylen] for d in validation_dates}
    train = [p for k in periods if k not in val_periods for p in sorted(by_period[k])]
    val = [p for k in periods if k in val_periods for p in sorted(by_period[k])]
    if not train or not val:
        raise ValueError(
            f"the split leaves an empty side: train periods "
            f"{[k for k in periods if k not in val_periods]}, validation periods "
            f"{[k for k in periods if k in val_periods]}"
        )
    return train, val


class FullDisk:
    """
    A full-disk magnetogram in network units with its disk geometry.

    Parameters
    ----------
    path : str or path-like
        FITS file readable by `sunpy.map.Map` (e.g. ``hmi.M_720s`` with a RICE-compressed HDU).

    Attributes
    ----------
    data : `numpy.ndarray`
        float32, field / 3000 G clipped to [-1, 1] as in the paper's training (section 2); NaN
        off the disk.
    centre : tuple of float
        Disk centre ``(y, x)`` in pixels.
    radius : float
        Disk radius in pixels.
    """

    def __init__(self, path):
        import sunpy.map

        with warnings.catch_warnings():
            # Real HMI headers carry non-standard keys; sunpy and astropy say so, which is not our error.
            warnings.simplefilter("ignore")
            smap = sunpy.map.Map(path)
            from astropy.coordinates import SkyCoord

            centre = smap.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame))
        scale = (1 * smap.unit).to_value(u.G)
        data = np.asarray(smap.data, dtype=np.float32) * np.float32(scale / NORMALISATION_RANGE.to_value(u.G))
        self.data = np.clip(data, -1, 1)
        self.centre = (float(centre.y.value), float(centre.x.value))
        self.radius = float((smap.rsun_obs / smap.scale.axis1).to_value(u.pix))
        self.path = Path(path)
        self.date = observation_date(path)


class Patch:
    """
    A high-resolution magnetogram patch (not a full disk) in network units.

    For active-region cut-outs such as the SHARP ``hmi.sharp_cea_720s`` LOS magnetograms, whose
    0.03 deg CEA pixels (0.36 Mm) are close to HMI's 0.5" at disk centre: their pixels are used as
    0.5" pixels, not their WCS. Values are Gauss (``Mx/cm^2`` is the same number for a LOS
    field; a missing ``BUNIT`` is taken as Gauss, as in the SHARP series).

    Parameters
    ----------
    path : str or path-like
        FITS file; the first HDU with a 2-D image is read.

    Attributes
    ----------
    data : `numpy.ndarray`
        float32, field / 3000 G clipped to [-1, 1]; NaN where the file has no value.

    Raises
    ------
    ValueError
        If the file has no 2-D image, or its unit is not a magnetic field.
    """

    _UNITS = {"": 1.0, "g": 1.0, "gauss": 1.0, "mx/cm^2": 1.0, "mx/cm2": 1.0, "mx cm-2": 1.0, "mx cm^-2": 1.0}

    def __init__(self, path):
        from astropy.io import fits

        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim == 2), None)
            if hdu is None:
                raise ValueError(f"{path} has no 2-D image")
            unit = str(hdu.header.get("BUNIT", "")).strip().lower()
            data = np.asarray(hdu.data, dtype=np.float32)
        if unit not in self._UNITS:
            raise ValueError(f"{path}: BUNIT {unit!r} is not a magnetic field in G or Mx/cm^2")
        self.data = np.clip(data * np.float32(self._UNITS[unit] / NORMALISATION_RANGE.to_value(u.G)), -1, 1)
        self.path = Path(path)
        self.date = observation_date(path)


@functools.lru_cache(maxsize=16)
def _load(path):
    return FullDisk(path)


@functools.lru_cache(maxsize=64)
def _load_patch(path):
    return Patch(path)


class CropDataset:
    """
    Random HR crops inside the solar disk, optionally weighted towards strong field, augmented.

    Sample ``i`` is a pure function of ``(seed, i)``.

    Parameters
    ----------
    paths : list of str or path-like
        Full-disk magnetograms (use `split_by_date` first).
    crop_size : int
        HR crop side in pixels (a multiple of 4; the paper: 1024).
    max_radius : float
        Crops lie wholly within this fraction of the solar radius, away from the limb where
        projection distorts the field.
    strong_field_fraction : float
        Probability that a crop is centred by weight on strong field rather than uniformly.
    strong_field_gauss : float
        Field (G) above which a coarse block counts as strong.
    augment : bool
        Random 90-degree rotations, flips and polarity sign flips: symmetries of the statistics of a
        LOS magnetogram crop (Hale's law makes polarity order hemisphere-dependent, which a crop
        without latitude information cannot use anyway).
    seed : int
        Base seed.
    patches : list of str or path-like, optional
        High-resolution active-region patches (see `Patch`), cropped anywhere their crop has no NaN;
        patches smaller than a crop are skipped.
    patch_fraction : float, optional
        Probability that a sample is a patch crop rather than a full-disk crop.
    noise_labels : bool, optional
        Measure each source's quiet-Sun noise (`sunpy_superres.metrics.physics.quiet_noise_gauss`,
        on a full disk within ``max_radius``), which ``sample(i, with_noise=True)`` returns with
        the crop: the label of a noise-level-conditioned model.
    noise_augment_gauss : float, optional
        With ``noise_labels``, add white Gaussian noise of a standard deviation drawn uniformly
        from ``[0, noise_augment_gauss)`` G to a ``noise_augment_fraction`` of the crops, and raise
        their label in quadrature. Noise can only be added: the least noisy source sets the
        lowest level a model learns.
    noise_augment_fraction : float, optional
        Probability that a crop gets added noise.

    Raises
    ------
    ValueError
        If no crop of this size fits inside ``max_radius`` of a disk, or ``patch_fraction > 0`` and
        no patch holds a crop.
    """

    _STRIDE = 16  # crop origins are drawn on a 16-pixel grid; the position jitter is added back below

    def __init__(
        self,
        paths,
        *,
        crop_size=64,
        max_radius=0.9,
        strong_field_fraction=0.5,
        strong_field_gauss=300.0,
        augment=True,
        seed=0,
        patches=(),
        patch_fraction=0.0,
        noise_labels=False,
        noise_augment_gauss=0.0,
        noise_augment_fraction=0.5,
    ):
        if crop_size % 4:
            raise ValueError(f"crop_size must be a multiple of 4, got {crop_size}")
        self.paths = [str(p) for p in paths]
        self.crop_size = int(crop_size)
        self.strong_field_fraction = float(strong_field_fraction)
        self.augment = bool(augment)
        self.seed = int(seed)
        self._candidates = []
        threshold = strong_field_gauss / NORMALISATION_RANGE.to_value(u.G)
        for p in self.paths:
            disk = _load(p)
            cy, cx = disk.centre
            ny, nx = disk.data.shape
            s, c = self._STRIDE, self.crop_size
            ys, xs = np.mgrid[0 : ny - c - s + 1 : s, 0 : nx - c - s + 1 : s]
            # The farthest point of a crop (with jitter < s) from the centre must be inside max_radius.
            dy = np.maximum(np.abs(ys - cy), np.abs(ys + c + s - cy))
            dx = np.maximum(np.abs(xs - cx), np.abs(xs + c + s - cx))
            ok = np.hypot(dy, dx) < max_radius * disk.radius
            ys, xs = ys[ok], xs[ok]
            absb = np.abs(np.nan_to_num(disk.data[ys + c // 2, xs + c // 2]))
            weight = np.where(absb > threshold, absb, 0.0)
            self._candidates.append((ys, xs, weight / weight.sum() if weight.sum() > 0 else None))
            if not len(ys):
                raise ValueError(f"no {c}x{c} crop fits within {max_radius} of the disk radius in {p}")
        self.noise_labels = bool(noise_labels)
        self.noise_augment_gauss = float(noise_augment_gauss) if self.noise_labels else 0.0
        self.noise_augment_fraction = float(noise_augment_fraction)
        gauss = NORMALISATION_RANGE.to_value(u.G)
        self._disk_noise = []
        for p in self.paths if self.noise_labels else ():
            disk = _load(p)
            yy, xx = np.indices(disk.data.shape, sparse=True)
            inside = np.hypot(yy - disk.centre[0], xx - disk.centre[1]) < max_radius * disk.radius
            self._disk_noise.append(quiet_noise_gauss(np.where(inside, disk.data * gauss, np.nan)))
        self.patch_fraction = float(patch_fraction)
        self._patches = []
        self._patch_noise = {}
        for p in map(str, patches if self.patch_fraction > 0 else ()):
            valid = np.isfinite(_load_patch(p).data)
            c = self.crop_size
            if min(valid.shape) < c:
                continue
            # Origins whose crop has no NaN, from a summed-area table of the invalid pixels.
            bad = np.pad((~valid).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            count = bad[c:, c:] - bad[:-c, c:] - bad[c:, :-c] + bad[:-c, :-c]
            ys, xs = np.nonzero(count == 0)
            if len(ys):
                self._patches.append((p, ys, xs))
                if self.noise_labels:
                    self._patch_noise[p] = quiet_noise_gauss(_load_patch(p).data * gauss)
        if self.patch_fraction > 0 and not self._patches:
            raise ValueError(f"no patch holds a {self.crop_size}x{self.crop_size} crop without NaN")

    def sample(self, index, *, with_noise=False):
        """
        HR crop number ``index``: ``(crop_size, crop_size)`` float32 in network units.

        With ``with_noise`` (needs ``noise_labels``), also its quiet-Sun noise level in G.
        """
        if with_noise and not self.noise_labels:
            raise ValueError("this dataset has no noise labels; make it with noise_labels=True")
        rng = sample_rng(self.seed, index)
        if self._patches and rng.random() < self.patch_fraction:
            p, ys, xs = self._patches[int(rng.integers(len(self._patches)))]
            j = int(rng.integers(len(ys)))
            y0, x0 = int(ys[j]), int(xs[j])
            crop = _load_patch(p).data[y0 : y0 + self.crop_size, x0 : x0 + self.crop_size]
            noise = self._patch_noise.get(p)
        else:
            crop, noise = self._disk_crop(rng)
        crop = np.nan_to_num(crop, nan=0.0)  # a bad pixel inside the disk, rare; never off-limb here
        if self.augment:
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            if rng.random() < 0.5:
                crop = -crop
        # Drawn after every other choice, so that datasets without augmentation keep their crops.
        if self.noise_augment_gauss > 0 and rng.random() < self.noise_augment_fraction:
            added = rng.uniform(0.0, self.noise_augment_gauss)
            crop = crop + rng.normal(0.0, added / NORMALISATION_RANGE.to_value(u.G), crop.shape)
            noise = float(np.hypot(noise, added))
        crop = np.ascontiguousarray(crop, dtype=np.float32)
        return (crop, noise) if with_noise else crop

    def _disk_crop(self, rng):
        k = int(rng.integers(len(self.paths)))
        ys, xs, weight = self._candidates[k]
        if weight is not None and rng.random() < self.strong_field_fraction:
            j = int(rng.choice(len(ys), p=weight))
        else:
            j = int(rng.integers(len(ys)))
        y0 = ys[j] + int(rng.integers(self._STRIDE))
        x0 = xs[j] + int(rng.integers(self._STRIDE))
        noise = self._disk_noise[k] if self._disk_noise else None
        return _load(self.paths[k]).data[y0 : y0 + self.crop_size, x0 : x0 + self.crop_size], noise

    def batch(self, step, batch_size, *, rank=0, world_size=1, with_noise=False):
        """
        The HR crops of one training step for one process: ``(batch_size, crop, crop)``.

        Step ``s`` of rank ``r`` takes global indices ``(s * world_size + r) * batch_size + [0, batch_size)``,
        so ranks never share a sample and a resumed run continues with the very next one. With
        ``with_noise``, also the ``(batch_size,)`` noise levels in G (see `sample`).
        """
        start = (int(step) * world_size + rank) * batch_size
        items = [self.sample(i, with_noise=with_noise) for i in range(start, start + batch_size)]
        if with_noise:
            return np.stack([c for c, _ in items]), np.array([n for _, n in items], dtype=np.float32)
        return np.stack(items)


class PairCrops:
    """
    Aligned random crops of MDI/HMI pairs, augmented; sample ``i`` is a pure function of ``(seed, i)``.

    Parameters
    ----------
    pairs : list of tuple
        ``(lr, hr, valid)`` arrays as `~sunpy_superres.training.pairs.MagnetogramPair.to_arrays`
        gives them (network units; ``hr`` ``factor`` times larger; ``valid`` on the ``hr`` grid).
    crop_size : int
        HR crop side in pixels, a multiple of ``factor``; the LR crop is ``crop_size // factor``.
    factor : int, optional
        Size ratio of target and input.
    augment : bool, optional
        The same random 90-degree rotation, flip and polarity sign applied to input and target
        (symmetries of a LOS magnetogram crop, as in `CropDataset`).
    min_valid_fraction : float, optional
        Least fraction of valid target pixels in a crop (1: crops wholly on the disk of both maps).
    seed : int, optional
        Base seed.

    Raises
    ------
    ValueError
        If no pair has a crop of this size with enough valid pixels.
    """

    def __init__(self, pairs, *, crop_size, factor=4, augment=True, min_valid_fraction=1.0, seed=0):
        if crop_size % factor:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the factor {factor}")
        self.factor, self.crop_size = int(factor), int(crop_size)
        self.augment, self.seed = bool(augment), int(seed)
        c = self.crop_size // self.factor
        self._pairs, self._candidates = [], []
        for lr, hr, valid in pairs:
            h, w = lr.shape
            if hr.shape != (h * factor, w * factor) or valid.shape != hr.shape:
                raise ValueError(
                    f"pair shapes {lr.shape}, {hr.shape}, {valid.shape} are not a {factor}x pair"
                )
            if h < c or w < c:
                continue
            # Valid fraction of every c x c window of LR pixels, from a summed-area table.
            frac = valid.reshape(h, factor, w, factor).mean(axis=(1, 3))
            table = np.pad(frac.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            window = (table[c:, c:] - table[:-c, c:] - table[c:, :-c] + table[:-c, :-c]) / (c * c)
            ys, xs = np.nonzero(window >= min_valid_fraction - 1e-9)
            if len(ys):
                self._pairs.append((lr, hr))
                self._candidates.append((ys, xs))
        if not self._pairs:
            raise ValueError(
                f"no pair has a {crop_size}x{crop_size} target crop with at least "
                f"{min_valid_fraction:.0%} valid pixels; use smaller crops or larger pairs "
                "([finetune] pair_crop_size)"
            )

    def __len__(self):
        return len(self._pairs)

    def sample(self, index):
        """Crop number ``index``: LR ``(c/f, c/f)`` and HR ``(c, c)`` float32, network units."""
        rng = sample_rng(self.seed, index)
        k = int(rng.integers(len(self._pairs)))
        ys, xs = self._candidates[k]
        j = int(rng.integers(len(ys)))
        f, c = self.factor, self.crop_size // self.factor
        lr, hr = self._pairs[k]
        y, x = int(ys[j]), int(xs[j])
        lr, hr = lr[y : y + c, x : x + c], hr[f * y : f * (y + c), f * x : f * (x + c)]
        if self.augment:
            turns = int(rng.integers(4))
            lr, hr = np.rot90(lr, turns), np.rot90(hr, turns)
            if rng.random() < 0.5:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if rng.random() < 0.5:
                lr, hr = -lr, -hr
        return np.ascontiguousarray(lr, dtype=np.float32), np.ascontiguousarray(hr, dtype=np.float32)

    def batch(self, step, batch_size, *, rank=0, world_size=1):
        """LR and HR crops of one step for one process (indices as `CropDataset.batch`)."""
        start = (int(step) * world_size + rank) * batch_size
        lr, hr = zip(*(self.sample(i) for i in range(start, start + batch_size)), strict=True)
        return np.stack(lr), np.stack(hr)
