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


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 256)])
def test_block_means_are_numpys_mean_over_the_blocks(factor, shape):
    """OpenCV's area resampling (powers of two) against an independent NumPy reduction."""
    rng = np.random.default_rng(factor)
    image = rng.normal(0, 1000, (shape[0] * factor, shape[1] * factor)).astype(np.float32)
    expected = image.astype(np.float64).reshape(shape[0], factor, shape[1], factor).mean(axis=(1, 3))
    got = block_means(image[::1, ::1], factor)
    assert got.dtype == np.float64 and got.shape == shape
    if factor & (factor - 1) == 0:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # A view that is not contiguous (every other row of a larger image) gives the same.
    tall = np.repeat(image, 2, axis=0)
    np.testing.assert_array_equal(block_means(tall[::2], factor), got)
    with pytest.raises(ValueError, match="whole"):
        block_means(np.zeros((5, 8)), 4)


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


def test_messages_in_full():
    cases = [
        (lambda: block_means(np.zeros((8, 7)), 4), "image of shape (8, 7) is not made of whole 4x4 blocks"),
        (
            lambda: project_block_means(np.zeros((8, 8)), np.zeros((3, 3)), 4),
            "image of shape (8, 8) is not 4x the target's (3, 3)",
        ),
        (
            lambda: project_block_means(np.full((8, 8), np.nan), np.zeros((2, 2)), 4),
            "project_block_means needs finite inputs; fill missing pixels first",
        ),
        (
            lambda: project_block_means(np.zeros((8, 8)), np.zeros((2, 2)), 4, method="nearest"),
            "method must be 'backprojection' or 'block', got 'nearest'",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message


def test_arithmetic_is_float64_whatever_the_input(pair):
    guess, target = pair  # guess is float32
    means = block_means(guess, 4)
    assert means.dtype == np.float64
    np.testing.assert_array_equal(means, block_means(guess.astype(np.float64), 4))
    target = target.astype(np.float32)
    np.testing.assert_array_equal(
        project_block_means(guess, target, 4),
        project_block_means(guess.astype(np.float64), target.astype(np.float64), 4),
    )


def test_backprojection_is_a_small_correction(pair):
    # Back-projection adds to the image a correction of the size of its block-mean errors; it does
    # not replace the image (which would keep the block means but lose the field within blocks).
    guess, target = pair
    error = np.abs(target - block_means(guess, 4)).max()
    assert np.abs(project_block_means(guess, target, 4) - guess).max() < 1.5 * error


def textbook_backprojection(image, target, factor, *, max_iterations=30, tolerance=1e-6):
    """Irani & Peleg as written, on the output grid: each iteration upsamples the block-mean error
    and adds it to the image; then a constant per block. Returns the image and the iterations."""
    import cv2

    out, n = np.array(image, dtype=np.float64), 0
    limit = tolerance * max(np.abs(target).max(), 1.0)
    for _ in range(max_iterations):
        error = target - block_means(out, factor)
        if np.abs(error).max() <= limit:
            break
        out += cv2.resize(error, out.shape[::-1], interpolation=cv2.INTER_CUBIC)
        n += 1
    out += np.kron(target - block_means(out, factor), np.ones((factor, factor)))
    return out.astype(np.float32), n


@pytest.fixture
def iterations(monkeypatch):
    """The largest block-mean error each iteration of `project_block_means` corrects."""
    import cv2

    calls = []
    filter2d = cv2.filter2D

    def recording(error, *args, **kwargs):
        calls.append(np.abs(error).max())
        return filter2d(error, *args, **kwargs)

    monkeypatch.setattr(cv2, "filter2D", recording)
    return calls


@pytest.mark.parametrize("largest", [0.5, 1000.0])  # below 1 the tolerance is absolute
@pytest.mark.parametrize("tolerance", [3e-3, 1e-3, 3e-4, 1e-4])
def test_backprojection_stops_at_the_relative_tolerance(pair, iterations, largest, tolerance):
    # The loop runs while the largest block-mean error exceeds tolerance * max(|target|, 1), and no
    # longer, and gives what the textbook loop on the output grid gives, in as many iterations.
    guess, target = pair
    scale = largest / np.abs(target).max()
    guess, target = guess * scale, target * scale
    limit = tolerance * max(np.abs(target).max(), 1.0)
    out = project_block_means(guess, target, 4, tolerance=tolerance)
    reference, n = textbook_backprojection(guess, target, 4, tolerance=tolerance)
    assert 0 < len(iterations) == n < 30
    assert all(err > limit for err in iterations)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6 * np.abs(guess).max())


def test_backprojection_iterates_thirty_times_at_most(pair, iterations):
    guess, target = pair
    out = project_block_means(guess, target, 4, tolerance=0.0)
    assert len(iterations) == 30
    np.testing.assert_allclose(block_means(out, 4), target, atol=1e-4 * np.abs(target).max())
    reference, n = textbook_backprojection(guess, target, 4, tolerance=0.0)
    assert n == 30
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6 * np.abs(guess).max())


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (9, 6), (40, 33)])
def test_one_iteration_on_the_coarse_grid_is_the_upsampled_block_mean(factor, shape):
    # The filter that stands for "upsample bicubically, then take block means", edges included.
    import cv2

    from sunpy_superres.consistency import _upsampled_block_mean_kernel

    error = np.random.default_rng(3).normal(size=shape)
    upsampled = cv2.resize(error, (factor * shape[1], factor * shape[0]), interpolation=cv2.INTER_CUBIC)
    filtered = cv2.filter2D(error, -1, _upsampled_block_mean_kernel(factor), borderType=cv2.BORDER_REPLICATE)
    # Exact for a power of two; for 3, OpenCV's interpolation weights at thirds are float32's.
    atol = 1e-12 if factor & (factor - 1) == 0 else 1e-5
    np.testing.assert_allclose(filtered, block_means(upsampled, factor), rtol=0, atol=atol)


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_repeat_blocks_is_the_kronecker_product_and_undone_by_block_means(factor):
    from sunpy_superres.consistency import repeat_blocks

    image = np.random.default_rng(4).normal(size=(5, 3))
    out = repeat_blocks(image, factor)
    np.testing.assert_array_equal(out, np.kron(image, np.ones((factor, factor))))
    np.testing.assert_allclose(block_means(out, factor), image, rtol=1e-15)
    mask = image > 0
    assert repeat_blocks(mask, factor).dtype == bool
    np.testing.assert_array_equal(repeat_blocks(mask, factor), np.kron(mask, np.ones((factor, factor), bool)))
