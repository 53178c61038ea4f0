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
    """
    The calibration factor the input is shown with, and the panel notes.

    When `sunpy_superres.superresolve` calibrated the input to HMI level (``SRCALFAC``), the input is
    shown multiplied by that factor, so both panels are on one physical scale, and its note says so.
    """
    # sunpy's name ("MDI", "HMI SIDE1"): the instrument, not the telescope; its first word is enough.
    instrument = (str(getattr(lowres, "instrument", "") or "").split() or [""])[0]
    factor = float(highres.meta.get("srcalfac", 1.0))
    source = f"{instrument} level" if instrument else "level of the input"
    if factor != 1.0:
        return factor, (f"{source} x{factor:.3g} = HMI level", "HMI level")
    return factor, (source, source + " (not calibrated)")


def _suptitle(lowres, highres):
    """Date, instrument, model, revision and seed of a super-resolved map, from its header."""
    meta = highres.meta
    instrument = str(getattr(lowres, "instrument", "") or "").strip() or "input"
    date = lowres.date.strftime("%Y-%m-%d %H:%M:%S") if lowres.date is not None else "no date"
    parts = [f"{instrument} {date}"]
    if "srmodel" in meta:
        model = str(meta["srmodel"]) + (
            f" ({meta['srmodrev']})" if meta.get("srmodrev", "none") != "none" else ""
        )
        parts.append(f"model {model}")
        seed = int(meta.get("srseed", -1))
        samples = int(meta.get("srsample", 1))
        parts.append(
            "deterministic" if seed < 0 else f"seed {seed}" + (f", {samples} samples" if samples > 1 else "")
        )
    return ", ".join(parts)


def plot_comparison(lowres, highres, *, fig=None, vlim=None):
    """
    Plot a magnetogram and its super-resolved version side by side on a common grey scale in G.

    Both panels are on one physical scale: when `sunpy_superres.superresolve` calibrated the input
    to HMI level (``SRCALFAC``), the input is shown multiplied by that factor, and its title says so.
    The figure's title gives the date, the instrument, the model with its revision, and the seed
    (from the output's provenance keys).

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
    factor, notes = _levels(lowres, highres)
    fig.suptitle(_suptitle(lowres, highres))
    lowres, highres = _in_gauss(lowres), _in_gauss(highres)
    if factor != 1.0:
        lowres = lowres._new_instance(
            lowres.data * factor, lowres.meta, plot_settings=dict(lowres.plot_settings)
        )
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
