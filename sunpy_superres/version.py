"""The package's version, in a module of its own so that any module can import it without a cycle."""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.0.0.dev0"

__all__ = ["__version__"]
