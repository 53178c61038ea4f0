"""Sphinx configuration for sunpy-superres."""

import os
import sys
import warnings

from sunpy_superres import __version__

# Local extensions: docs/_ext/provenance_keys.py writes the table of the SR* header keys.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "sunpy-superres"
author = "The sunpy-superres developers"
copyright = "2026, The sunpy-superres developers"  # noqa: A001
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_automodapi.automodapi",
    "sphinx_gallery.gen_gallery",
    "sphinx_changelog",
    # the model cards are Markdown files shipped with the weights, included as they are
    "myst_parser",
    "provenance_keys",
    # figures drawn by the package from tables in docs/paper (reproducing.rst)
    "matplotlib.sphinxext.plot_directive",
]
# The plot directive runs its code in docs/, where the paper/ tables are; figures only, no source.
plot_working_directory = os.path.dirname(os.path.abspath(__file__))
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
# Markdown only where it is meant: the model-card pages. sphinx-gallery's sources are .py files and
# its README is README.txt; nothing else under docs/ ends in .md.
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
numpydoc_show_class_members = False
automodapi_toctreedirnm = "generated/api"
automodsumm_inherited_members = False
# generated/provenance_table.rst is written by the provenance_keys extension and included by
# provenance.rst, not a page of its own.
exclude_patterns = [
    "_build",
    "generated/gallery/*.ipynb",
    "**.ipynb_checkpoints",
    "generated/provenance_table.rst",
]
default_role = "obj"
nitpicky = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "astropy": ("https://docs.astropy.org/en/stable/", None),
    "sunpy": ("https://docs.sunpy.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
}
# No network on the build machines: intersphinx inventories are fetched only when allowed.
if os.environ.get("SUNPY_SUPERRES_DOCS_OFFLINE", "1") == "1":
    intersphinx_mapping = {}

html_theme = "sunpy"
html_title = f"sunpy-superres {version}"

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["generated/gallery"],
    "filename_pattern": r"^((?!skip_).)*$",
    "default_thumb_file": None,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
}

# Real instrument headers carry non-standard keys that sunpy notes; they are not doc errors.
warnings.filterwarnings("ignore", category=UserWarning, message=".*non-standard.*")
