"""
`UncertaintyMap`: a super-resolved magnetogram with its per-pixel uncertainty.

Diffusion models are stochastic: super-resolving the same input N times gives N different maps whose
spread shows where the model is unsure (Ramunno et al. 2025, section 7, Figs. 11-12). An
`UncertaintyMap` is a sunpy map whose data are the per-pixel mean of those samples and which carries
the per-pixel standard deviation (in the map's unit) and, optionally, the samples themselves.

It keeps the instrument class of its input: an uncertainty map made from an `~sunpy.map.sources.MDIMap`
is also an ``MDIMap`` (so dates, observer and plot settings are read as for MDI), built as a subclass
of both on first use.
"""

import functools
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits
from sunpy.map import GenericMap

__all__ = ["UncertaintyMap"]

_DOC = """
    A map of the mean of stochastic samples that carries their per-pixel standard deviation.

    Parameters
    ----------
    data : `numpy.ndarray`
        Per-pixel mean of the samples.
    header : dict or `sunpy.util.MetaDict`
        Header of the mean (and of the standard deviation).
    std : `numpy.ndarray`, optional
        Per-pixel standard deviation of the samples, in the unit of ``data``. Computed from
        ``samples`` when not given.
    samples : `numpy.ndarray`, optional
        ``(N, ny, nx)`` samples, kept only when asked for (they are large).
    **kwargs
        Passed to `~sunpy.map.GenericMap` (``plot_settings``, ``mask``).

    Notes
    -----
    `submap`, `superpixel` and `resample` return an `UncertaintyMap` with mean and standard deviation
    transformed together (sunpy's own methods drop NDData uncertainties). With the samples kept, the
    operation is applied to every sample and the standard deviation recomputed, which is exact.
    Without them, `submap` is exact, `resample` interpolates the standard deviation, and
    `superpixel` combines it as if the pixels of a block were fully correlated (the sum or mean of the
    standard deviations), an upper bound. Arithmetic (``um * 2``) returns a plain map of the mean:
    it does not propagate uncertainties.

    References
    ----------
    .. [1] Ramunno, F. P. et al. 2025, A&A 698, A140, section 7, Figs. 11-12.
    """

_STD_EXTNAME = "STD"
_SAMPLES_EXTNAME = "SAMPLES"


class UncertaintyMap(GenericMap):
    # The docstring is _DOC above, attached after the class is made (see the end of this module).

    def __init__(self, data, header, *, std=None, samples=None, **kwargs):
        super().__init__(data, header, **kwargs)
        if samples is not None:
            samples = np.asarray(samples)
            if samples.ndim != 3 or samples.shape[1:] != self.data.shape:
                raise ValueError(
                    f"samples must have shape (N, {self.data.shape[0]}, {self.data.shape[1]}), "
                    f"got {samples.shape}"
                )
            if std is None:
                std = np.std(samples, axis=0, ddof=1 if len(samples) > 1 else 0)
        if std is not None:
            std = np.asarray(std)
            if std.shape != self.data.shape:
                raise ValueError(f"std must have the data's shape {self.data.shape}, got {std.shape}")
        self._std = std
        self._samples = samples

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_map(cls, smap, std=None, samples=None):
        """
        Wrap a map of means with its standard deviation, keeping the map's instrument class.

        Parameters
        ----------
        smap : `~sunpy.map.GenericMap`
            The mean; its class (e.g. MDIMap) is kept.
        std, samples : `numpy.ndarray`, optional
            See `UncertaintyMap`.
        """
        klass = _uncertainty_class(type(smap))
        return klass(
            smap.data,
            smap.meta,
            std=std,
            samples=samples,
            plot_settings=dict(smap.plot_settings),
            mask=smap.mask,
        )

    # -- the uncertainty ----------------------------------------------------------------------

    @property
    def std(self):
        """Per-pixel standard deviation of the samples as a `~astropy.units.Quantity`."""
        if self._std is None:
            raise AttributeError("this UncertaintyMap carries no standard deviation")
        return u.Quantity(self._std, self.unit)

    @property
    def std_map(self):
        """The per-pixel standard deviation as a map of the source class with the same WCS."""
        from matplotlib.colors import Normalize

        meta = self.meta.copy()
        meta["srprod"] = "std"
        std_map = _source_class(type(self))(self.std.value, meta)
        top = np.nanpercentile(std_map.data, 99.5) if np.isfinite(std_map.data).any() else 1.0
        std_map.plot_settings.update(cmap="viridis", norm=Normalize(vmin=0, vmax=top or 1.0))
        return std_map

    @property
    def mean_map(self):
        """The mean as a plain map of the source class (drops the uncertainty)."""
        return _source_class(type(self))(
            self.data, self.meta, plot_settings=dict(self.plot_settings), mask=self.mask
        )

    @property
    def samples(self):
        """``(N, ny, nx)`` samples as a Quantity, or `None` when they were not kept."""
        return None if self._samples is None else u.Quantity(self._samples, self.unit)

    @u.quantity_input
    def small_scale_uncertainty(self, cutoff: u.arcsec = 2 * u.arcsec, *, order=2.0):
        """
        The part of the standard-deviation map at scales below ``cutoff`` (Butterworth high pass).

        Parameters
        ----------
        cutoff : `~astropy.units.Quantity`, optional
            Feature size of the split; 2" (MDI's pixel) by default, as the paper's Fig. 12.
        order : float, optional
            Butterworth order.

        Returns
        -------
        `~sunpy.map.GenericMap`
            High-pass filtered std map, in the map's unit.
        """
        from .metrics.spectra import butterworth_split

        return butterworth_split(self.std_map, cutoff, order=order)[1]

    @u.quantity_input
    def large_scale_uncertainty(self, cutoff: u.arcsec = 2 * u.arcsec, *, order=2.0):
        """The part of the standard-deviation map at scales above ``cutoff`` (Butterworth low pass)."""
        from .metrics.spectra import butterworth_split

        return butterworth_split(self.std_map, cutoff, order=order)[0]

    # -- operations that keep mean and std together -------------------------------------------

    def _combine(self, mean_map, std_data, samples):
        out = _uncertainty_class(_source_class(type(self)))(
            mean_map.data,
            mean_map.meta,
            std=std_data,
            samples=samples,
            plot_settings=dict(self.plot_settings),
            mask=mean_map.mask,
        )
        return out

    def _apply(self, operation, std_operation):
        mean_map = operation(self.mean_map)
        if self._samples is not None:
            maps = [operation(_source_class(type(self))(s, self.meta)) for s in self._samples]
            samples = np.stack([m.data for m in maps])
            return self._combine(mean_map, None, samples)
        return self._combine(mean_map, std_operation(self.std_map).data, None)

    def submap(self, bottom_left, *, top_right=None, width=None, height=None):
        """`~sunpy.map.GenericMap.submap` of mean, standard deviation (and samples)."""

        def op(m):
            return m.submap(bottom_left, top_right=top_right, width=width, height=height)

        return self._apply(op, op)

    def superpixel(self, dimensions, offset=(0, 0) * u.pix, func=np.sum, conservative_mask=False):
        """
        `~sunpy.map.GenericMap.superpixel` of mean and standard deviation.

        Without samples the standard deviation is combined by ``func`` as for fully correlated
        pixels (an upper bound for `numpy.sum` and `numpy.mean`).
        """

        def op(m):
            return m.superpixel(dimensions, offset=offset, func=func, conservative_mask=conservative_mask)

        return self._apply(op, op)

    def resample(self, dimensions, method="linear"):
        """`~sunpy.map.GenericMap.resample` of mean and standard deviation (interpolated)."""

        def op(m):
            return m.resample(dimensions, method=method)

        return self._apply(op, op)

    def _new_instance_from_op(self, new_data):
        # Arithmetic does not propagate the uncertainty: return a plain map of the result.
        meta = self.meta.copy()
        meta["bunit"] = new_data.unit.to_string()
        return _source_class(type(self))(new_data.value, meta, plot_settings=dict(self.plot_settings))

    # -- input and output ---------------------------------------------------------------------

    def save(self, filepath, filetype="auto", *, overwrite=False, **kwargs):
        """
        Write mean, standard deviation (and samples, if kept) to one FITS file.

        The primary HDU holds the mean with the map's header; an image extension ``STD`` holds the
        standard deviation with the same header; ``SAMPLES`` holds the samples as a cube. The file is
        written through a temporary file and a rename. Read it back with `UncertaintyMap.read`;
        ``sunpy.map.Map`` reads the mean and the standard deviation as two plain maps (and truncates a
        ``SAMPLES`` cube with a warning).

        Parameters
        ----------
        filepath : str or `pathlib.Path`
            Destination ``.fits`` file.
        filetype : str, optional
            Only ``"auto"`` or ``"fits"``.
        overwrite : bool, optional
            Replace an existing file.
        """
        from .io import atomic_output

        if filetype not in ("auto", "fits") or kwargs:
            raise ValueError("an UncertaintyMap is saved as FITS only; call save(path, overwrite=...)")
        header = self.fits_header
        header["SRUNCERT"] = (_STD_EXTNAME, "extension with the per-pixel standard deviation")
        hdus = [fits.PrimaryHDU(np.asarray(self.data, dtype=np.float32), header=header)]
        std_header = header.copy()
        std_header["SRPROD"] = ("std", "per-pixel standard deviation of the samples")
        hdus.append(
            fits.ImageHDU(np.asarray(self.std.value, dtype=np.float32), header=std_header, name=_STD_EXTNAME)
        )
        if self._samples is not None:
            hdus.append(fits.ImageHDU(np.asarray(self._samples, dtype=np.float32), name=_SAMPLES_EXTNAME))
        with atomic_output(filepath, overwrite=overwrite) as tmp:
            fits.HDUList(hdus).writeto(tmp, overwrite=True)
        return Path(filepath)

    @classmethod
    def read(cls, filepath):
        """
        Read an `UncertaintyMap` written by `save`.

        Raises
        ------
        ValueError
            If the file has no ``STD`` extension (it is not an uncertainty map).
        """
        with fits.open(filepath) as hdul:
            if _STD_EXTNAME not in hdul:
                raise ValueError(
                    f"{filepath} has no {_STD_EXTNAME} extension: it is not an UncertaintyMap "
                    "file; read a plain map with sunpy.map.Map()."
                )
            header = hdul[0].header.copy()
            mean = hdul[0].data.copy()
            std = hdul[_STD_EXTNAME].data.copy()
            samples = hdul[_SAMPLES_EXTNAME].data.copy() if _SAMPLES_EXTNAME in hdul else None
        header.pop("SRUNCERT", None)
        source = sunpy.map.Map((mean, header))
        return cls.from_map(source, std=std, samples=samples)

    def __reduce__(self):
        # The instrument-combined classes are made at run time; rebuild them when unpickling.
        return (
            _rebuild,
            (
                _source_class(type(self)),
                self.data,
                self.meta,
                self._std,
                self._samples,
                dict(self.plot_settings),
            ),
        )

    # -- plotting -----------------------------------------------------------------------------

    def plot(self, *, axes=None, **kwargs):
        """
        Plot the mean; with no ``axes`` given, the mean and the standard deviation side by side.

        Parameters
        ----------
        axes : `~astropy.visualization.wcsaxes.WCSAxes`, optional
            Plot only the mean into these axes, as `~sunpy.map.GenericMap.plot` does.
        **kwargs
            Passed to `~sunpy.map.GenericMap.plot` for the mean.

        Returns
        -------
        `matplotlib.image.AxesImage` or list of them
            The mean's image, or ``[mean image, std image]`` for the side-by-side figure.
        """
        if axes is not None:
            return super().plot(axes=axes, **kwargs)
        import matplotlib.pyplot as plt
        from matplotlib.colors import Normalize

        from .visualization import _hide_latitude_labels

        fig = plt.figure(figsize=(11, 5))
        ax_mean = fig.add_subplot(1, 2, 1, projection=self)
        limit = np.nanpercentile(np.abs(self.data), 99.5) or 1.0
        kwargs.setdefault("norm", Normalize(vmin=-limit, vmax=limit))
        kwargs.setdefault("cmap", "gray")
        im_mean = super().plot(axes=ax_mean, title="mean", **kwargs)
        fig.colorbar(im_mean, ax=ax_mean, label=f"B [{self.unit.to_string()}]", shrink=0.8)
        std_map = self.std_map
        ax_std = fig.add_subplot(1, 2, 2, projection=std_map)
        im_std = std_map.plot(axes=ax_std, title="standard deviation")
        _hide_latitude_labels(ax_std)
        fig.colorbar(im_std, ax=ax_std, label=f"std [{self.unit.to_string()}]", shrink=0.8)
        return [im_mean, im_std]


# GenericMap merges sunpy's generic notes (with sunpy-only citation roles) into every subclass's
# docstring at class creation; ours is complete as written, so it is set afterwards.
UncertaintyMap.__doc__ = _DOC


def _rebuild(source, data, meta, std, samples, plot_settings):
    return _uncertainty_class(source)(data, meta, std=std, samples=samples, plot_settings=plot_settings)


def _source_class(klass):
    """The instrument map class an uncertainty class was built on (GenericMap for UncertaintyMap)."""
    if klass is UncertaintyMap or not issubclass(klass, UncertaintyMap):
        return GenericMap if klass is UncertaintyMap else klass
    return klass.__bases__[1]


@functools.cache
def _uncertainty_class(source):
    """``UncertaintyMap`` combined with an instrument map class, e.g. ``UncertaintyMDIMap``."""
    if issubclass(source, UncertaintyMap):
        return source
    if source is GenericMap:
        return UncertaintyMap
    klass = type(f"Uncertainty{source.__name__}", (UncertaintyMap, source), {"__module__": __name__})
    klass.__doc__ = _DOC
    # GenericMap registers every subclass that has an `is_datasource_for` with the Map factory;
    # this combined class inherits one but must never be picked for reading a file.
    GenericMap._registry.pop(klass, None)
    return klass
