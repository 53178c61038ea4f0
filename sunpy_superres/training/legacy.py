"""
The flat ``[model]`` layout of configs written before each kind had its own table.

``ae_factor``, ``enhance_residual_blocks``, ``space``, ... were keys of ``[model]`` itself; they are
now keys of ``[model.autoencoder]``, ``[model.enhance]``, ``[model.diffusion]``, ... Each kind's task
lists its old keys (`~sunpy_superres.training.tasks.base.Task.legacy_keys`). Checkpoints and exported
models keep their records in the old layout, so reading it is not optional: `upgrade_model` moves the
keys of a ``[model]`` dict, and `ModelConfig <sunpy_superres.training.config.ModelConfig>` accepts and
answers to the old names (with a `FutureWarning`), so scripts written for the flat layout still run.
"""

import functools
import warnings

from .tasks import TASKS

__all__ = ["upgrade_model", "place", "warn"]


@functools.cache
def _places():
    """``{old key: [(kind, key in the kind's table), ...]}``; a key two kinds shared has two places."""
    places = {}
    for kind, task in TASKS.items():
        for old, new in task.legacy_keys.items():
            places.setdefault(old, []).append((kind, new))
    return places


def place(name, kind=None):
    """
    Where an old flat ``[model]`` key lives now, or `None` if ``name`` is not one.

    Parameters
    ----------
    name : str
        The old key.
    kind : str, optional
        The config's kind: of a key two kinds shared (``cnn_channels``), its table's place.

    Returns
    -------
    tuple of str or None
        ``(kind, key)``.
    """
    places = _places().get(name)
    if not places:
        return None
    return next((p for p in places if p[0] == kind), places[0])


def upgrade_model(values):
    """
    A ``[model]`` dict with the flat keys of the old layout moved into their tables.

    Parameters
    ----------
    values : dict
        ``[model]`` as read, old keys, tables or both.

    Returns
    -------
    values : dict
        ``[model]`` in the table layout (a new dict; the tables are new dicts too).
    moved : dict
        ``{old key: its new place}`` of each key moved, for telling the user.

    Raises
    ------
    ValueError
        If a setting is given both ways, or a kind's table is not a table.
    """
    places = _places()
    values = dict(values)
    # "autoencoder" was the trained autoencoder's directory (a string); now it is also a table (a dict,
    # or the kind's config object when a ModelConfig is built or replaced in Python).
    found = {k: values.pop(k) for k in list(values) if k in places and not _is_table(k, values[k])}
    for kind in TASKS:
        if kind in values:
            if not _is_table(kind, values[kind]):
                raise ValueError(f"[model.{kind}] must be a table, got {values[kind]!r}")
            if isinstance(values[kind], dict):
                values[kind] = dict(values[kind])
    moved = {}
    for old, value in found.items():
        for kind, new in places[old]:
            table = values.setdefault(kind, {})
            if new in table:
                raise ValueError(
                    f"[model] {old} and [model.{kind}] {new} are the same setting; keep the second"
                )
            table[new] = value
        moved[old] = " and ".join(f"[model.{kind}] {new}" for kind, new in places[old])
    return values, moved


def _is_table(key, value):
    """Whether ``value`` is the table of the kind ``key``: a dict, or that kind's config object."""
    config_class = TASKS[key].config_class if key in TASKS else None
    return isinstance(value, dict) or (config_class is not None and isinstance(value, config_class))


def warn(where, moved, stacklevel):
    """Tell that old flat keys were used, and where each one went (a `FutureWarning`)."""
    warnings.warn(
        f"{where}: flat [model] keys are deprecated and will stop working; each kind's settings now "
        f"have their own table: {'; '.join(f'{old} -> {new}' for old, new in moved.items())}",
        FutureWarning,
        stacklevel=stacklevel + 1,
    )
