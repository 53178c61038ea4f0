"""Quick-look figures of a magnetogram before and after super-resolution."""

import astropy.units as u
import numpy as np

__all__ = ["plot_comparison", "save_quicklook"]


def _in_gauss(smap):
    """``smap`` with its data in G (a new map; a T or kG map plots on the same scale as a G one)."""
    from .maps import map_unit

    unit = map_unit(smap) or u.G
    meta = smap.meta.copy()
    meta["bunit"] = "G"
    return smap._new_instance(
        (np.asarray(smap.data, dtype=np.float64) * unit).to_value(u.G),
        meta,
        plot_settings=dict(smap.plot_settings),
    )


def _field_limit(*maps, percentile=99.5):
    """``percentile`` of |B| over maps in G."""
    values = np.concatenate([np.abs(m.data[np.isfinite(m.data)]).ravel() for m in maps])
    return max(float(np.percentile(values, percentile)), 1.0) if values.size else 1000.0


def _levels(lowres, highres):
    """Panel notes: the input at its instrument's level, the output at HMI level when calibrated."""
    # sunpy's name ("MDI", "HMI SIDE1"): the instrument, not the telescope; its first word is enough.
    instrument = (str(getattr(lowres, "instrument", "") or "").split() or [""])[0]
    factor = float(highres.meta.get("srcalfac", 1.0))
    source = f"{instrument} level" if instrument else "level of the input"
    if factor != 1.0:
        return source, f"HMI level (input x{factor:.3g})"
    return source, source + " (not calibrated)"


def plot_comparison(lowres, highres, *, fig=None, vlim=None):
    """
    Plot a magnetogram and its super-resolved version side by side on a common grey scale in G.

    The titles say at which level each map is: the input at its instrument's (e.g. MDI), the
    output at HMI level when `sunpy_superres.superresolve` calibrated it (``SRCALFAC``).

    Parameters
    ----------
    lowres, highres : `~sunpy.map.GenericMap`
        The input map and the output of `sunpy_superres.superresolve`, in any unit of magnetic
        field (G, T, Mx/cm2); both are shown in G.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new 11x5 inch figure by default.
    vlim : `~astropy.units.Quantity`, optional
        Symmetric colour limit; the 99.5th percentile of \\|B\\| by default.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(11, 5))
    notes = _levels(lowres, highres)
    lowres, highres = _in_gauss(lowres), _in_gauss(highres)
    limit = _field_limit(lowres, highres) if vlim is None else vlim.to_value(u.G)
    for i, (smap, title, note) in enumerate(
        ((lowres, "input", notes[0]), (highres, "super-resolved", notes[1]))
    ):
        ax = fig.add_subplot(1, 2, i + 1, projection=smap)
        scale = abs(smap.scale.axis1.to_value(u.arcsec / u.pix))
        im = smap.plot(
            axes=ax,
            cmap="gray",
            norm=None,
            vmin=-limit,
            vmax=limit,
            title=f'{title}, {note}\n{smap.data.shape[1]}x{smap.data.shape[0]} px, {scale:.3g}"/px',
        )
        if i == 1:
            ax.coords[1].set_ticklabel_visible(False)
            ax.coords[1].set_axislabel(" ")
    fig.colorbar(im, ax=fig.axes, label="B_LOS [G]", shrink=0.8)
    return fig


def save_quicklook(lowres, highres, path, *, overwrite=False):
    """Write `plot_comparison` as a PNG through a temporary file and a rename."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .io import atomic_output

    fig = plot_comparison(lowres, highres)
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
