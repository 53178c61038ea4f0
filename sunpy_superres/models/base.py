"""
What every super-resolution model offers to `sunpy_superres.superresolve`.

A model works on arrays in network units (field / 3000 G, see `sunpy_superres.calibration`) and
knows nothing about Maps; `superresolve` owns validation, calibration, tiling and metadata. Torch
lives only behind this interface.
"""

import numpy as np
import torch

from ..options import renamed_sampler
from .manifest import load_directory

__all__ = ["SuperResolutionModel", "resolve_device"]


def load_network(cls, path):
    """
    A network class's ``from_pretrained(path)``, from safetensors only.

    The package's networks (`~sunpy_superres.models.network.Network`) load without diffusers. For
    a diffusers class (the learnt autoencoder), where accelerate is not installed (a base install:
    it comes with the ``train`` extra), diffusers would try ``low_cpu_mem_usage``, then warn at
    every load that it falls back and advise installing accelerate; the fallback is asked for
    here instead, with the same result.

    Parameters
    ----------
    cls : type
        A `~sunpy_superres.models.network.Network` or `diffusers.ModelMixin` subclass (e.g.
        `~sunpy_superres.models.enhance.EnhanceNet`).
    path : path-like
        A directory written by its ``save_pretrained``.

    Returns
    -------
    `torch.nn.Module`
        An instance of ``cls``.
    """
    from .network import Network

    if issubclass(cls, Network):
        return cls.from_pretrained(path)
    from diffusers.utils import is_accelerate_available

    return cls.from_pretrained(path, use_safetensors=True, low_cpu_mem_usage=is_accelerate_available())


def resolve_device(device="auto"):
    """
    Turn a device request into a `torch.device`.

    Parameters
    ----------
    device : str or `torch.device`
        ``"auto"`` picks CUDA when available, else CPU; anything else is passed to `torch.device`.

    Raises
    ------
    ValueError
        If the device name is unknown or a CUDA device is asked for on a machine without one.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but no CUDA GPU is available here; "
            "use device='cpu' or device='auto'."
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {device!r} (Apple GPU) was requested but this machine has none; "
            "use device='cpu' or device='auto'."
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    return dev


class SuperResolutionModel:
    """
    Base class of the models behind the registry.

    Attributes
    ----------
    name : str
        Registry name, written into the output header (``SRMODEL``).
    revision : str
        Weights revision (``SRMODREV``); ``"none"`` for models without weights.
    factor : int
        Output pixels per input pixel along each axis.
    stochastic : bool
        Whether `predict` draws random numbers (and repeated samples differ).
    halo : int
        Input pixels of context the model needs on each side for an output pixel to be independent
        of where a tile ends. Tiles overlap by more than twice this.
    tile_size : int
        Default tile side in input pixels.
    clip_input : bool
        Whether the network only accepts inputs within [-1, 1] (+-3000 G). If so, `superresolve`
        clips its input and adds the clipped excess back, replicated, to the output.
    precision : str
        Arithmetic of the networks: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``SRPREC``); see
        `configure_runtime`.
    precisions : tuple of str
        Precisions the model can run in; models without reduced-precision support take only
        ``"fp32"``.
    compiled : bool
        Whether the network's forward is compiled with ``torch.compile`` (see `compile`).
    uncertainty_calibration : `~sunpy_superres.conformal.StdCalibration` or None
        Calibration of the standard deviation of a stochastic model's samples, applied by
        `superresolve` (`None`: the raw spread of the samples).
    """

    name = "base"
    #: The manifest's ``kind`` of a model that loads from a directory (`from_pretrained`); `None` for
    #: models without weights.
    kind = None
    revision = "none"
    factor = 4
    stochastic = False
    halo = 2
    tile_size = 256
    clip_input = False
    precision = "fp32"
    precisions = ("fp32",)
    compiled = False
    uncertainty_calibration = None

    def __init__(self, device="auto"):
        self.device = resolve_device(device)

    @classmethod
    def from_pretrained(cls, path, *, device="auto", revision=None):
        """
        Load a model directory written by ``save_pretrained``, after checking every file's sha256.

        Parameters
        ----------
        path : str or path-like
            The model directory.
        device : str, optional
            Torch device.
        revision : str, optional
            Revision for output headers (default: the manifest's).

        Raises
        ------
        ~sunpy_superres.models.manifest.WeightsNotFoundError
            If the manifest or a listed file is missing.
        ~sunpy_superres.models.manifest.ChecksumError
            If a file does not match its recorded sha256.
        ValueError
            If the directory holds another kind of model.
        """
        return load_directory(path, device=device, revision=revision, kind=cls.kind or cls.__name__, cls=cls)

    @classmethod
    def from_verified(cls, path, manifest, *, device="auto", revision=None):
        """Build the model from a directory whose files were checked; kinds with weights override it."""
        raise NotImplementedError(f"{cls.__name__} has no weights to load")

    def predict(self, batch, *, seeds=None):
        """
        Super-resolve a batch of tiles.

        Parameters
        ----------
        batch : `numpy.ndarray`
            ``(B, H, W)`` float32 tiles in network units, with no NaN.
        seeds : list of int or None, optional
            One seed per tile for stochastic models (ignored by deterministic ones).

        Returns
        -------
        `numpy.ndarray`
            ``(B, factor * H, factor * W)`` float32 in network units.
        """
        x = self._tensor(self._array(batch, "predict"))
        with torch.inference_mode():
            y = self._forward(x, seeds=seeds)
        return y[:, 0].float().cpu().numpy()

    def predict_samples(self, batch, seeds, *, signs=None, noise_levels=None, noise=None):
        """
        Several samples of each tile of a batch, all through the network together.

        A model that can share work between the samples of a tile does it once per tile: the
        diffusion models encode and condition each tile once. Sample ``j`` of tile ``i`` is what
        ``predict(batch[i:i + 1], seeds=[seeds[i][j]])`` gives, up to the float32 rounding of a
        network run on a larger batch.

        Parameters
        ----------
        batch : `numpy.ndarray`
            ``(B, H, W)`` float32 tiles in network units, with no NaN.
        seeds : sequence of sequences of int or None
            ``B`` rows of ``S`` seeds: row ``i`` seeds the samples of tile ``i``.
        signs : sequence of sequences of {1, -1}, optional
            Rows like ``seeds``: ``-1`` negates the initial noise that the sample's seed draws (its
            later random draws, if the sampler makes any, are not negated). Two samples of one seed
            and opposite signs form an antithetic pair. Default: all ``1``. Deterministic models
            ignore it.
        noise_levels : sequence of float, optional
            For a model conditioned on the noise level: one level per tile (G, each one the model
            makes), in place of its `noise_level` (`~sunpy_superres.superresolve` gives each tile of
            a map HMI's noise where it lies). Refused by other models.
        noise : `numpy.ndarray`, optional
            For a model that draws an initial noise (a ``draw_noise`` method): ``(B, S, ...)``,
            the initial noise of each sample in place of its seed's draw (the seed still draws any
            later noise, and ``signs`` still apply). `~sunpy_superres.superresolve` gives
            overlapping tiles one noise where they overlap (`~sunpy_superres.tiling.SharedNoise`).
            Refused by other models.

        Returns
        -------
        `numpy.ndarray`
            ``(B, S, factor * H, factor * W)`` float32 in network units.
        """
        batch = self._array(batch, "predict_samples")
        rows = [list(row) for row in seeds]
        n = len(rows[0]) if rows else 0
        if len(rows) != batch.shape[0] or n == 0 or any(len(row) != n for row in rows):
            raise ValueError(
                f"predict_samples takes one row of seeds per tile, all rows of one length >= 1: "
                f"got {[len(row) for row in rows]} for {batch.shape[0]} tiles"
            )
        flat_signs = None
        if signs is not None:
            sign_rows = [list(row) for row in signs]
            if [len(row) for row in sign_rows] != [len(row) for row in rows] or any(
                v not in (1, -1) for row in sign_rows for v in row
            ):
                raise ValueError("predict_samples takes signs of 1 or -1, in rows shaped like the seeds")
            flat_signs = [int(v) for row in sign_rows for v in row]
        flat = [s for row in rows for s in row]
        extra = {}
        if noise is not None:
            if not hasattr(self, "draw_noise"):
                raise ValueError(f"{self.name} draws no initial noise; leave noise out")
            noise = np.asarray(noise, dtype=np.float32)
            if noise.shape[:2] != (len(rows), n):
                raise ValueError(
                    f"predict_samples takes noise shaped ({len(rows)}, {n}, ...): got {noise.shape}"
                )
            extra["noise"] = noise.reshape(len(rows) * n, *noise.shape[2:])
        if noise_levels is None:
            y = self._predict_samples(batch, flat, n, flat_signs, **extra)
        else:
            levels = [float(v) for v in noise_levels]
            if getattr(self, "noise_level", None) is None:
                raise ValueError(f"{self.name} is not conditioned on a noise level; leave noise_levels out")
            if len(levels) != len(rows):
                raise ValueError(
                    f"predict_samples takes one noise level per tile: got {len(levels)} for {len(rows)}"
                )
            y = self._predict_samples(batch, flat, n, flat_signs, noise_levels=levels, **extra)
        return y.reshape(len(rows), n, *y.shape[1:])

    def _predict_samples(self, batch, seeds, repeats, signs=None):
        """``repeats`` samples of each tile, tile-major, as ``(B * repeats, fH, fW)``: here by `predict`.

        ``signs`` (one per sample, or `None`) is for models that draw an initial noise; others ignore it."""
        return self.predict(np.repeat(batch, repeats, axis=0), seeds=seeds)

    @staticmethod
    def _array(batch, caller):
        """``batch`` as a float32 array, refused unless it is ``(B, H, W)``."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 3:
            raise ValueError(f"{caller} takes a (B, H, W) batch, got shape {batch.shape}")
        return batch

    def _tensor(self, batch):
        """A ``(B, 1, H, W)`` tensor on the model's device from a ``(B, H, W)`` float32 array."""
        return torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)[:, None]

    def configure_sampler(
        self, *, steps=None, sampler=None, start_timestep=None, spacing=None, noise_level=None, scheduler=None
    ):
        """
        Choose the sampler of a stochastic model (number of steps, sampler name, first timestep,
        timestep spacing, target noise level of a noise-conditioned model).

        Returns the configured model (a copy where settings change, so a model passed in by the
        caller is not altered). Deterministic models have no sampler: any non-`None` argument raises
        `ValueError`. ``scheduler`` is the old name of ``sampler``.
        """
        sampler = renamed_sampler(sampler, scheduler)
        if any(v is not None for v in (steps, sampler, start_timestep, spacing, noise_level)):
            raise ValueError(
                f"model {self.name!r} is deterministic and has no sampler; steps=, sampler=, "
                "start_timestep=, spacing= and noise_level= apply to diffusion models only."
            )
        return self

    def configure_runtime(self, *, precision=None, compile=None):
        """
        A copy of this model with another arithmetic precision or compilation setting.

        Parameters
        ----------
        precision : {None, "auto", "fp32", "bf16", "fp16"}, optional
            `None` keeps the current precision; see
            `sunpy_superres.models.accel.resolve_precision` for the others.
        compile : bool or None, optional
            `True` compiles the network's forward with ``torch.compile`` (see `compile`), `False`
            runs it eagerly, `None` keeps the current setting.

        Returns
        -------
        `SuperResolutionModel`
            ``self`` when nothing changes, else a copy sharing the networks (a model passed in by
            the caller is not altered).

        Raises
        ------
        ValueError
            If the precision is unknown or not supported by the model, or compilation is asked of a
            model that does not support it (the base class supports neither; the interpolation
            baselines run in float32 and have no network).
        """
        from .accel import resolve_precision

        reduced = precision not in (None, "auto")
        if reduced and resolve_precision(precision, self.device) not in self.precisions:
            raise ValueError(
                f"model {self.name!r} runs in {', '.join(self.precisions)} only, "
                f"not {precision!r}; use precision='auto' or 'fp32'."
            )
        if compile and not self.compiled:
            raise ValueError(
                f"model {self.name!r} has no network that torch.compile could speed up; use compile=False."
            )
        return self

    def compile(self):
        """
        Compile the network's forward with ``torch.compile``, in place.

        Raises
        ------
        ValueError
            If the model has no network to compile (the base class and the interpolation baselines).
        """
        raise ValueError(f"model {self.name!r} has no network that torch.compile could speed up.")

    def memory_probe(self):
        """
        The model to run once on one tile to measure its peak memory
        (`sunpy_superres.models.accel.measure_tile_memory`): a cheap configuration with the same
        memory peak. The model itself by default.
        """
        return self

    def provenance(self):
        """Extra header keys (lower case, at most 8 characters) that describe how the model ran."""
        return {}

    def _forward(self, x, *, seeds):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} revision={self.revision!r} device={self.device}>"
