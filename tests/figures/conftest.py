"""
Figure tests: images compared by hash with pytest-mpl, as sunpy and sunkit-image do.

They run only with pytest-mpl and ``--mpl`` (``tox -e figure``); the default run skips them, since a
hash holds for one matplotlib and FreeType version only. To add or change a figure, regenerate the
library with ``tox -e figure -- --mpl-generate-hash-library=tests/figures/<library name>`` and look
at the images under ``--mpl-generate-path`` before committing the new hashes.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    if config.getoption("--mpl", default=False):
        return
    skip = pytest.mark.skip(reason="figure test: needs pytest-mpl and --mpl (tox -e figure)")
    for item in items:
        if "figure" in item.keywords:
            item.add_marker(skip)
