"""
The registry of training tasks: ``[model] kind`` -> `~sunpy_superres.training.tasks.base.Task` subclass.

It imports nothing, so that a kind's module can register itself without an import cycle.
"""

__all__ = ["TASKS", "register", "get_task"]

#: ``{kind: Task subclass}`` (`~sunpy_superres.training.config.MODEL_KINDS` are its keys).
TASKS = {}


def register(kind):
    """
    Class decorator: register a `~sunpy_superres.training.tasks.base.Task` subclass as ``[model] kind``.

    Raises
    ------
    ValueError
        If the kind is taken.
    """

    def decorator(cls):
        if kind in TASKS:
            raise ValueError(f"model kind {kind!r} is registered twice")
        cls.kind = kind
        TASKS[kind] = cls
        return cls

    return decorator


def get_task(kind):
    """
    The task class of ``[model] kind``.

    Raises
    ------
    ValueError
        If no task has that kind.
    """
    if kind not in TASKS:
        raise ValueError(f"[model] kind must be one of {', '.join(map(repr, TASKS))}, got {kind!r}")
    return TASKS[kind]
