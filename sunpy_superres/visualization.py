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
    """
    Date, instrument, model and samples of a super-resolved map, then its revision and seed, from its
    header: two lines, as a revision and a 64-bit seed make one line wider than the figure.
    """
    meta = highres.meta
    instrument = str(getattr(lowres, "instrument", "") or "").strip() or "input"
    date = lowres.date.strftime("%Y-%m-%d %H:%M:%S") if lowres.date is not None else "no date"
    first, second = [f"{instrument} {date}"], []
    if "srmodel" in meta:
        first.append(f"model {meta['srmodel']}")
        if meta.get("srmodrev", "none") != "none":
            second.append(f"revision {meta['srmodrev']}")
        seed = int(meta.get("srseed", -1))
        samples = int(meta.get("srsample", 1))
        if seed < 0:
            first.append("deterministic")
        else:
            first.append(f"{samples} samples" if samples > 1 else "one sample")
            second.append(f"seed {seed}")
    return "\n".join(", ".join(line) for line in (first, second) if line)


def _std_panel(highres):
    """The standard deviation of an `~sunpy_superres.UncertaintyMap` in G and its panel note, or None."""
    std_map = getattr(highres, "std_map", None)  # None for a plain map or one without a std
    if std_map is None:
        return None
    calibration = highres.meta.get("sruncal")
    if calibration is None:  # not written by superresolve: nothing says either way
        note = "calibration not recorded"
    else:
        note = "sample spread, not calibrated" if str(calibration) == "none" else "calibrated"
    return _in_gauss(std_map), note


def plot_comparison(lowres, highres, *, fig=None, vlim=None):
    """
    Plot a magnetogram and its super-resolved version side by side on a common grey scale in G.

    Both panels are on one physical scale: when `sunpy_superres.superresolve` calibrated the input
    to HMI level (``SRCALFAC``), the input is shown multiplied by that factor, and its title says so.
    The figure's title gives the date, the instrument, the model with its revision, and the seed
    (from the output's provenance keys). For an `~sunpy_superres.UncertaintyMap` (several samples)
    the super-resolved panel is the samples' mean, and a third panel shows the per-pixel standard
    deviation in G on its own scale, from 0 to its 99.5th percentile, noted "calibrated" or "sample
    spread, not calibrated" after ``SRUNCAL`` ("calibration not recorded" without it).

    Parameters
    ----------
    lowres, highres : `~sunpy.map.GenericMap`
        The input map and the output of `sunpy_superres.superresolve`, in any unit of magnetic
        field (G, T, Mx/cm2); both are shown in G.
    fig : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new 11x5 inch figure by default (15x5 with the standard deviation).
    vlim : `~astropy.units.Quantity`, optional
        Symmetric colour limit; the 99.5th percentile of \\|B\\| by default.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    std = _std_panel(highres)
    if fig is None:
        fig = plt.figure(figsize=(11 if std is None else 15, 5))
    factor, notes = _levels(lowres, highres)
    fig.suptitle(_suptitle(lowres, highres))
    lowres, highres = _in_gauss(lowres), _in_gauss(highres)
    if factor != 1.0:
        lowres = lowres._new_instance(
            lowres.data * factor, lowres.meta, plot_settings=dict(lowres.plot_settings)
        )
    limit = _field_limit(lowres, highres) if vlim is None else vlim.to_value(u.G)
    grid = None if std is None else _three_panel_grid(fig)
    field_axes = []
    for i, (smap, title, note) in enumerate(
        ((lowres, "input", notes[0]), (highres, "super-resolved" if std is None else "mean", notes[1]))
    ):
        slot = (1, 2, i + 1) if grid is None else (grid[i],)
        ax = fig.add_subplot(*slot, projection=smap)
        im = smap.plot(
            axes=ax, cmap="gray", norm=None, vmin=-limit, vmax=limit, title=_panel_title(smap, title, note)
        )
        field_axes.append(ax)
        if i == 1:
            _hide_latitude_labels(ax)
    if grid is None:
        fig.colorbar(im, ax=field_axes, label="B_LOS [G]", shrink=0.8)
    else:
        fig.colorbar(im, cax=_bar_axes(field_axes[1]), label="B_LOS [G]")
    if std is not None:
        std_map, note = std
        ax = fig.add_subplot(grid[3], projection=std_map)
        im = std_map.plot(
            axes=ax,
            cmap="viridis",
            norm=None,
            vmin=0,
            vmax=_field_limit(std_map),
            title=_panel_title(std_map, "standard deviation", note),
        )
        _hide_latitude_labels(ax)
        fig.colorbar(im, cax=_bar_axes(ax), label="std [G]")
    return fig


def _three_panel_grid(fig):
    """
    Slots for the input, the mean, a gap for the field's colour bar and the standard deviation: each
    colour bar sits in a gap of its own (`_bar_axes`), so the three panels sit evenly (a colour bar
    that takes its room from the field panels left a wide gap before the third).
    """
    return fig.add_gridspec(
        1, 4, width_ratios=(1, 1, 0.12, 1), wspace=0.22, left=0.06, right=0.92, top=0.8, bottom=0.1
    )


def _bar_axes(panel):
    """Axes for a colour bar right of ``panel``, 80 % of its height; they follow the panel's drawn box."""
    return panel.inset_axes((1.04, 0.1, 0.045, 0.8))


def _panel_title(smap, title, note):
    scale = abs(smap.scale.axis1.to_value(u.arcsec / u.pix))
    return f'{title}, {note}\n{smap.data.shape[1]}x{smap.data.shape[0]} px, {scale:.3g}"/px'


def _hide_latitude_labels(ax):
    """A panel right of another shares its latitude axis: no tick labels, no axis label."""
    ax.coords[1].set_ticklabel_visible(False)
    ax.coords[1].set_axislabel(" ")


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
