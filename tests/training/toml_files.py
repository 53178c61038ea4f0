"""Training configs written as TOML files, as a user writes them (for the tests of the command line)."""

import json

__all__ = ["toml_text"]


def toml_text(d, prefix=""):
    """A config dict as TOML: its values, then its tables (``[model]``, ``[model.diffusion]`` and so on)."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(toml_text(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines) + "\n"
