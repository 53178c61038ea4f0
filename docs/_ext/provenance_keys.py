"""
Sphinx extension: the table of the ``SR*`` header keys, generated from the package at build time.

The meanings come from the code itself, so that the table cannot go stale:

* every key of `sunpy_superres.maps.PROVENANCE_KEYS` (the keys `sunpy_superres.superresolve` writes),
  with the text of that dict;
* every other ``SR*`` key that the package's source writes with a FITS comment,
  ``header["SRKEY"] = (value, "comment")`` (the keys of `sunpy_superres.UncertaintyMap` files), with
  that comment.

The package source is also searched for every quoted ``"sr..."`` / ``"SR..."`` key. A key found
there without a meaning, or without an entry in `WHEN` below, and an entry of `WHEN` for a key the
package no longer writes, are Sphinx warnings, so a docs build with ``-W`` fails until this page
is brought up to date. The result is written to ``generated/provenance_table.rst`` (git-ignored)
and included by ``provenance.rst``.

Sphinx is imported inside the functions only: pytest's doctest collection imports this module.
"""

import re
from pathlib import Path

__all__ = ["WHEN", "collect_keys", "table_rst", "setup"]

_EVERY = "every output of `sunpy_superres.superresolve`"

#: When each key is written (reStructuredText), read off the code that writes it.
WHEN = {
    "SRFACTOR": _EVERY,
    "SRMODEL": _EVERY,
    "SRMODREV": _EVERY + "; ``none`` for ``nearest`` and ``bicubic`` (no weights); "
    "``<base revision>+<adapter revision>`` with a LoRA ``adapter``",
    "SRSEED": _EVERY + "; -1 for a deterministic model; for a stochastic model the seed given, or the "
    "one drawn from the operating system when none is given",
    "SRSAMPLE": _EVERY,
    "SRVERS": _EVERY + " (``sunpy-superres batch`` recognises its own outputs by it)",
    "SRCALFAC": _EVERY + " (1/1.4 for MDI, 1 for other instruments, 1 with ``calibrate=False``, the "
    "number given otherwise); also on the MDI map of a training pair "
    "(``sunpy_superres.training.pairs``)",
    "SRCALREF": "with ``SRCALFAC``",
    "SRNORM": _EVERY + " (3000 G)",
    "SRNCLIP": _EVERY + "; always 0 for models that take the unclipped input (``nearest``, ``bicubic``)",
    "SRCONSIS": _EVERY + '; by default (``consistency="auto"``) true for diffusion models and false for '
    "the deterministic ones",
    "SRCONMET": 'with ``SRCONSIS``: ``backprojection`` (``consistency=True``, and ``"auto"`` for '
    "diffusion models), ``block`` or ``none``",
    "SRPREC": _EVERY + "; ``fp32`` for the deterministic models",
    "SRSTEPS": "diffusion models only (`sunpy_superres.models.diffusion.DiffusionSuperResolution.provenance`)",
    "SRSCHED": "diffusion models only",
    "SRTSTART": "diffusion models only",
    "SRSPACE": "diffusion models only",
    "SRNOISE": "diffusion models conditioned on a noise level only (``noise_level=``, an HMI map's own "
    "(`sunpy_superres.calibration.hmi_noise_level`), or the model's own level); absent for a model "
    "without noise conditioning",
    "SRNOISRC": "with ``SRNOISE``: ``'asked'`` (a level given), ``'model'`` (the model's own, for an MDI "
    "map at its place), or for an "
    "HMI map given none ``'HMI mod-C'`` or ``'HMI mod-L'``, HMI's observing sequence, with "
    "``' (nearest made)'`` where the model cannot make that sequence's noise",
    "SRNOICLV": "an HMI or MDI map given no ``noise_level`` only: the factor by which HMI's noise where the "
    "map lies differs from its frame's level, from disk centre (0.86) to limb (1.2), applied to "
    "``SRNOISE`` "
    "(`sunpy_superres.calibration.hmi_noise_clv`); absent for a map that cannot be placed on the disk",
    "SRNOILO": "with ``SRNOICLV``, a map of more than one tile only: the lowest of the tiles' levels, each "
    "tile sampled at HMI's noise where it lies (``SRNOISE`` is the map's as a whole)",
    "SRNOIHI": "with ``SRNOILO``: the highest of the tiles' levels",
    "SRREGREV": "diffusion models whose residual is taken to a regression's output only "
    '(``residual_base="regression"``): the revision of that regression\'s weights',
    "SRANTI": "``samples > 1`` only: true when the samples were drawn in antithetic pairs "
    '(``antithetic=True``, or ``"auto"`` with a model calibrated on pairs: the shipped diffusion '
    "models), false for independent samples",
    "SRSYMM": "``samples > 1`` only: true when the samples were drawn under the flips of the input "
    '(``symmetric=True``, or ``"auto"`` with a model calibrated so: every shipped diffusion model), '
    "false otherwise",
    "SRUNCAL": "``samples > 1`` only (an `~sunpy_superres.UncertaintyMap`): the calibration applied to "
    "the standard deviation, or ``none`` with ``calibrate_uncertainty=False``, a model without "
    "a calibration, or one calibrated for another sample design (``SRANTI``, ``SRSYMM``)",
    "SRUNCERT": "primary header of a file written by `sunpy_superres.UncertaintyMap.save` (its value "
    "names the extension, ``STD``); removed again by `~sunpy_superres.UncertaintyMap.read`",
    "SRPROD": "header of the ``STD`` extension of such a file, and of "
    "`~sunpy_superres.UncertaintyMap.std_map` (value ``std``)",
}

# A quoted header key: "srmodel", 'SRUNCERT'.
_QUOTED_KEY = re.compile(r"""["']((?i:sr)[A-Za-z0-9]{2,6})["']""")
# A key written with a FITS comment: header["SRPROD"] = ("std", "per-pixel standard deviation ...").
_KEY_WITH_COMMENT = re.compile(
    r"""\[\s*["'](SR[A-Z0-9]{2,6})["']\s*\]\s*=\s*\(\s*[^,]+,\s*["']([^"']+)["']\s*\)"""
)


def _package_sources():
    import sunpy_superres

    root = Path(sunpy_superres.__file__).parent
    return sorted(root.rglob("*.py"))


def collect_keys():
    """
    The ``SR*`` keys the package writes.

    Returns
    -------
    keys : dict
        ``{KEY: (meaning, where the meaning comes from)}``, the keys of
        `~sunpy_superres.maps.PROVENANCE_KEYS` first, in its order.
    undocumented : list of str
        Keys quoted in the package's source that have no meaning in either place.
    """
    from sunpy_superres.maps import PROVENANCE_KEYS

    keys = {key.upper(): (text, "PROVENANCE_KEYS") for key, text in PROVENANCE_KEYS.items()}
    quoted = set()
    for path in _package_sources():
        text = path.read_text(encoding="utf-8")
        quoted.update(match.upper() for match in _QUOTED_KEY.findall(text))
        for key, comment in _KEY_WITH_COMMENT.findall(text):
            keys.setdefault(key, (comment, path.name))
    return keys, sorted(quoted - set(keys))


def _escape(text):
    """``text`` as literal reStructuredText."""
    return re.sub(r"([\\`*|_<>])", r"\\\1", text)


def table_rst(keys):
    """The reStructuredText of the table of ``keys`` (from `collect_keys`)."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 12 7 36 45",
        "",
        "   * - Key",
        "     - Unit",
        "     - Meaning",
        "     - Written",
    ]
    for key, (meaning, _) in keys.items():
        unit = ""
        found = re.match(r"\[([^\]]+)\]\s*(.*)", meaning)
        if found:
            unit, meaning = found.groups()
        lines += [
            f"   * - ``{key}``",
            f"     - {_escape(unit)}".rstrip(),
            f"     - {_escape(meaning)}",
            f"     - {WHEN.get(key, '(not documented)')}",
        ]
    sources = sorted({source for _, source in keys.values() if source != "PROVENANCE_KEYS"})
    lines += [
        "",
        "Generated when this documentation was built: the meanings are the text of "
        "``sunpy_superres.maps.PROVENANCE_KEYS``"
        + (f" and the FITS comments written in {', '.join(f'``{s}``' for s in sources)}" if sources else "")
        + "; the last column is kept in ``docs/_ext/provenance_keys.py``.",
        "",
    ]
    return "\n".join(lines)


def _write_table(app):
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    keys, undocumented = collect_keys()
    for key in undocumented:
        logger.warning(
            f"header key {key} is written by sunpy_superres but has no meaning in PROVENANCE_KEYS "
            "or a FITS comment; document it there"
        )
    for key in keys:
        if key not in WHEN:
            logger.warning(f"header key {key} has no WHEN entry in docs/_ext/provenance_keys.py")
    for key in WHEN:
        if key not in keys:
            logger.warning(
                f"docs/_ext/provenance_keys.py documents {key}, which sunpy_superres no longer writes"
            )
    out = Path(app.srcdir) / "generated" / "provenance_table.rst"
    text = table_rst(keys)
    if not out.is_file() or out.read_text(encoding="utf-8") != text:  # unchanged: no rebuild
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _write_table)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
