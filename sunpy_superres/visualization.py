"""Quick-look figures of a magnetogram before and after super-resolution."""

import astropy.units as u
import numpy as np

__all__ = ["plot_comparison", "save_quicklook"]


def _field_limit(*maps, percentile=99.5):
    values = np.concatenate([np.abs(m.quantity.to_value(u.G)[np.isfinite(m.data)]).ravel() for m in maps])
    return max(float(np.percentile(values, percentile)), 1.0) if values.size else 1000.0


def plot_comparison(lowres, highres, *, fig=None, vlim=None):
    """
    Plot a magnetogram and its super-resolved version side by side on a common grey scale.

    Parameters
    ----------
    lowres, highres : `~sunpy.map.GenericMap`
        The input map and the output of `sunpy_superres.superresolve`.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new 11x5 inch figure by default.
    vlim : `~astropy.units.Quantity`, optional
        Symmetric colour limit in G; the 99.5th percentile of \\|B\\| by default.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(11, 5))
    limit = _field_limit(lowres, highres) if vlim is None else vlim.to_value(u.G)
    for i, (smap, title) in enumerate(((lowres, "input"), (highres, "super-resolved"))):
        ax = fig.add_subplot(1, 2, i + 1, projection=smap)
        scale = smap.scale.axis1.to_value(u.arcsec / u.pix)
        im = smap.plot(axes=ax, cmap="gray", norm=None, vmin=-limit, vmax=limit,
                       title=f"{title}: {smap.data.shape[1]}x{smap.data.shape[0]} px, {scale:.3g}\"/px")
        if i == 1:
            ax.coords[1].set_ticklabel_visible(False)
            ax.coords[1].set_axislabel(" ")
    fig.colorbar(im, ax=fig.axes, label=f"B_LOS [{highres.unit.to_string()}]", shrink=0.8)
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
