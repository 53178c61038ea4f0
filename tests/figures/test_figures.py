"""The package's figures, pixel for pixel: quick-look, UncertaintyMap.plot and the evaluation figures."""

from pathlib import Path

import astropy.units as u
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from sunpy_superres import UncertaintyMap, superresolve
from sunpy_superres.evaluation import evaluate, plot_boxplots, plot_fourier, plot_power_spectra
from sunpy_superres.visualization import plot_comparison

# One hash library per matplotlib and FreeType version: text rendering differs between them.
HASH_LIBRARY = Path(__file__).parent / (
    f"figure_hashes_mpl_{matplotlib.__version__.replace('.', '')}"
    f"_ft_{matplotlib.ft2font.__freetype_version__.replace('.', '')}.json"
)


def figure_test(test):
    """A hash-compared figure test (``style="default"``, no software metadata in the PNG)."""
    compare = pytest.mark.mpl_image_compare(
        hash_library=HASH_LIBRARY,
        style="default",
        savefig_kwargs={"metadata": {"Software": None}},
        deterministic=True,
    )
    return pytest.mark.figure(compare(test))


@pytest.fixture(scope="module")
def evaluation(request):
    from sunpy_superres.data import HMI_AR_CUTOUT

    from ..conftest import read_map

    hmi = read_map(HMI_AR_CUTOUT)
    return evaluate(["nearest", "bicubic"], [hmi], crop=256, seed=0)


@figure_test
def test_quicklook(mdi_cutout):
    return plot_comparison(mdi_cutout, superresolve(mdi_cutout, model="bicubic", progress=False))


@figure_test
def test_quicklook_of_samples(mdi_cutout):
    from ..helpers import NoisyNearest

    samples = superresolve(mdi_cutout, model=NoisyNearest(), samples=3, seed=5, progress=False)
    return plot_comparison(mdi_cutout, samples)


@figure_test
def test_uncertainty_map_plot(hmi_cutout):
    small = hmi_cutout.submap([0, 0] * u.pix, top_right=[127, 127] * u.pix)
    rng = np.random.default_rng(0)
    std = 5 + 0.1 * np.abs(small.data) + rng.uniform(0, 1, small.data.shape)
    umap = UncertaintyMap(small.data, small.meta, std=std)
    umap.plot()
    return plt.gcf()


@figure_test
def test_evaluation_boxplots(evaluation):
    return plot_boxplots(evaluation)


@figure_test
def test_evaluation_fourier(evaluation):
    return plot_fourier(evaluation)


@figure_test
def test_evaluation_power_spectra(evaluation):
    return plot_power_spectra(evaluation)
