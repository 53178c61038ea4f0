"""Block-mean consistency: exact block means, and a smooth correction (no block grid in the spectrum)."""

import numpy as np
import pytest

from sunpy_superres.consistency import block_means, project_block_means


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(64, 64)).cumsum(0).cumsum(1)  # smooth, red-spectrum field
    truth -= truth.mean()
    target = block_means(truth, 4)
    guess = truth + 0.3 * rng.normal(size=truth.shape) + 0.5  # off by a bias and noise
    return guess.astype(np.float32), target


@pytest.mark.parametrize("method", ["backprojection", "block"])
def test_block_means_become_the_target(pair, method):
    guess, target = pair
    before = guess.copy()
    out = project_block_means(guess, target, 4, method=method)
    np.testing.assert_array_equal(guess, before)  # input untouched
    assert out.dtype == np.float32
    np.testing.assert_allclose(block_means(out, 4), target, atol=1e-4 * np.abs(target).max())


def test_consistent_image_is_left_alone(pair):
    guess, target = pair
    exact = project_block_means(guess, target, 4)
    np.testing.assert_allclose(project_block_means(exact, target, 4), exact, atol=1e-4 * np.abs(target).max())


def test_backprojection_adds_no_block_grid(pair):
    # The constant-per-block fix is a staircase: all of its change happens across block edges. The
    # back-projected fix changes as much inside blocks as across their edges (no block grid).
    guess, target = pair

    def jumps(correction):  # mean |step| between columns across block edges, and inside blocks
        d = np.abs(np.diff(correction, axis=1))
        return d[:, 3::4].mean(), np.delete(d, np.s_[3::4], axis=1).mean()

    across, inside = jumps(project_block_means(guess, target, 4, method="block") - guess)
    assert inside < 1e-4 * across
    across, inside = jumps(project_block_means(guess, target, 4) - guess)
    assert across < 1.6 * inside


def test_bad_input():
    with pytest.raises(ValueError, match="not 4x the target"):
        project_block_means(np.zeros((8, 8)), np.zeros((3, 3)), 4)
    with pytest.raises(ValueError, match="finite"):
        project_block_means(np.full((8, 8), np.nan), np.zeros((2, 2)), 4)
    with pytest.raises(ValueError, match="method"):
        project_block_means(np.zeros((8, 8)), np.zeros((2, 2)), 4, method="nearest")
