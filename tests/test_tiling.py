"""Tile plans, blending windows and per-tile seeds."""

import numpy as np
import pytest

from sunpy_superres.tiling import (
    SharedNoise,
    Tile,
    balanced_tile,
    blend_window,
    plan_tiles,
    tile_seed,
    tile_starts,
)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(1024, 256, 16), (100, 32, 8), (33, 32, 8), (20, 64, 8), (257, 64, 63)]
)
def test_tiles_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    covered = np.zeros(length, dtype=int)
    for s in starts:
        assert 0 <= s <= length - size
        covered[s : s + size] += 1
    assert covered.min() >= 1
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert a + size - b >= overlap  # neighbours overlap by at least `overlap`


def test_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 16, 16)


def test_window_zero_in_halo_one_at_image_border():
    shape = (100, 100)
    tiles = plan_tiles(shape, 40, 12)
    f, halo = 4, 2
    weights = np.zeros((400, 400))
    for t in tiles:
        w = blend_window(t, shape, factor=f, halo=halo, overlap=12)
        assert w.shape == (f * t.size_y, f * t.size_x)
        assert w.min() >= 0 and w.max() <= 1
        if t.x0 > 0:  # interior left edge: nothing from the halo
            assert np.all(w[:, : f * halo] == 0)
        if t.x0 == 0:  # image border: full weight right up to the edge (away from other edges)
            assert w[f * t.size_y // 2, 0] == 1
        weights[t.scaled_slices(f)] += w
    assert weights.min() > 0.5  # every output pixel is well covered


def test_single_tile_window_is_flat():
    t = Tile(0, 0, 50, 60, (0, 0))
    np.testing.assert_array_equal(blend_window(t, (50, 60), factor=4, halo=2, overlap=12), 1.0)


def test_tile_seeds_reproducible_and_distinct():
    tiles = plan_tiles((300, 300), 64, 16)
    seeds = [tile_seed(7, 0, t) for t in tiles]
    assert seeds == [tile_seed(7, 0, t) for t in reversed(tiles)][::-1]
    assert len(set(seeds)) == len(seeds)
    assert tile_seed(7, 1, tiles[0]) != seeds[0]
    assert tile_seed(8, 0, tiles[0]) != seeds[0]
    assert tile_seed(None, 0, tiles[0]) is None
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(1024, 256, 16), (100, 32, 8), (33, 32, 8), (32, 32, 8)]
)
def test_tiles_are_the_fewest_that_cover(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert all(a < b for a, b in zip(starts[:-1], starts[1:], strict=True))  # distinct, increasing
    # One tile fewer, evenly spread, would overlap less than asked (or not cover at all).
    stride = tile - overlap
    assert len(starts) == 1 or (len(starts) - 2) * stride + tile < length
    assert starts[0] == 0 and starts[-1] == max(length - tile, 0)


def test_tiles_know_their_place_in_the_plan():
    tiles = plan_tiles((100, 70), 32, 8)
    rows, cols = len(tile_starts(100, 32, 8)), len(tile_starts(70, 32, 8))
    assert [t.index for t in tiles] == [(i, j) for i in range(rows) for j in range(cols)]


def _expected_ramp(n, halo, ramp):
    """The window of an interior lower edge, written out: 0 in the halo, sin^2 over the ramp, then 1."""
    d = np.arange(n) + 0.5
    t = np.clip((d - halo) / ramp, 0, 1)
    return np.sin(np.pi / 2 * t) ** 2


@pytest.mark.parametrize(("factor", "halo", "overlap"), [(4, 2, 12), (1, 2, 5), (4, 2, 5), (2, 0, 6)])
def test_window_values_at_an_interior_edge(factor, halo, overlap):
    """A tile whose left and top edges are inside the image, one input pixel from its border."""
    tile = Tile(1, 1, 32, 32, (1, 1))
    w = blend_window(tile, (33, 33), factor=factor, halo=halo, overlap=overlap)
    ramp = factor * max(overlap - 2 * halo, 1)
    expected = _expected_ramp(factor * 32, factor * halo, ramp)
    np.testing.assert_allclose(w, np.outer(expected, expected), rtol=0, atol=1e-15)
    assert w[0, 0] == 0 if halo else w[0, 0] < 0.01


def test_balanced_tiles_are_the_fewest_and_the_smallest():
    # The MDI full disk: 5 tiles of 224 per axis instead of 5 of 256 (1.20 times its area, not 1.56).
    assert balanced_tile(1024, 256, 24) == 224
    tiles = plan_tiles((1024, 1024), 256, 24)
    assert len(tiles) == 25 and {(t.size_y, t.size_x) for t in tiles} == {(224, 224)}
    assert [t.y0 for t in tiles[::5]] == [0, 200, 400, 600, 800]
    for length in range(20, 400, 7):
        for tile, overlap in ((32, 8), (64, 24), (100, 17), (256, 24)):
            side = balanced_tile(length, tile, overlap)
            assert side <= min(tile, length)
            n = len(tile_starts(length, side, overlap))
            assert n == len(tile_starts(length, min(tile, length), overlap))  # as few tiles as before
            if overlap < side - 1 < length:
                assert len(tile_starts(length, side - 1, overlap)) > n  # and none smaller would do
            starts = tile_starts(length, side, overlap)
            assert starts[0] == 0 and starts[-1] + side == length
            assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_balanced_tile_refuses_an_overlap_as_large_as_the_tile():
    with pytest.raises(ValueError, match=r"^overlap \(16\) must be smaller than the tile size \(16\)$"):
        balanced_tile(100, 16, 16)


def _draw(tile, number, grid=1, pad=0, channels=2):
    """A stand-in for a model's draw: its own noise for each tile and seed number, padded at the far edges."""
    rng = np.random.default_rng([number, tile.y0, tile.x0])
    shape = (channels, grid * (tile.size_y + pad), grid * (tile.size_x + pad))
    return rng.standard_normal(shape).astype(np.float32)


def _flip(a, flips):
    return a[:, :: -1 if flips[0] else 1, :: -1 if flips[1] else 1]


def _first_cover(tiles, shape, draw, grid, number, flips):
    """Brute force: the noise field on the map's grid whose every point is the first covering tile's draw."""
    field = np.full((2, grid * shape[0], grid * shape[1]), np.nan, dtype=np.float32)
    for t in reversed(tiles):  # the first tile paints last
        own = _flip(draw(t, number)[:, : grid * t.size_y, : grid * t.size_x], flips)
        field[:, t.scaled_slices(grid)[0], t.scaled_slices(grid)[1]] = own
    return field


FLIPS = [(False, False), (False, True), (True, False), (True, True)]


@pytest.mark.parametrize("flips", FLIPS)
@pytest.mark.parametrize("grid", [1, 2])
def test_shared_noise_is_the_first_covering_tiles_draw(flips, grid):
    shape = (50, 61)
    tiles = plan_tiles(shape, 24, 9)
    assert len(tiles) == 12  # 3 x 4, the last of each axis moved back to the edge
    draw = lambda t, n: _draw(t, n, grid=grid, pad=3)  # noqa: E731
    shared = SharedNoise(tiles, grid, draw)
    field = _first_cover(tiles, shape, draw, grid, 7, flips)
    assert not np.isnan(field).any()
    for i, t in enumerate(tiles):
        got, own = shared.noise(i, 7, flips), draw(t, 7)
        assert got.shape == own.shape and got.dtype == np.float32
        on_map = _flip(got[:, : grid * t.size_y, : grid * t.size_x], flips)
        np.testing.assert_array_equal(on_map, field[:, t.scaled_slices(grid)[0], t.scaled_slices(grid)[1]])
        # The points beyond the tile, where the network pads it, are the tile's own.
        np.testing.assert_array_equal(got[:, grid * t.size_y :], own[:, grid * t.size_y :])
        np.testing.assert_array_equal(got[:, :, grid * t.size_x :], own[:, :, grid * t.size_x :])
    # Another seed number is another field; the first tile keeps its own draw.
    assert not np.array_equal(shared.noise(4, 8, flips), shared.noise(4, 7, flips))
    np.testing.assert_array_equal(shared.noise(0, 8), draw(tiles[0], 8))


@pytest.mark.parametrize("flips", FLIPS)
def test_one_tile_keeps_its_own_noise(flips):
    (tile,) = plan_tiles((20, 30), 32, 8)
    shared = SharedNoise([tile], 4, lambda t, n: _draw(t, n, grid=4, pad=1))
    np.testing.assert_array_equal(shared.noise(0, 3, flips), _draw(tile, 3, grid=4, pad=1))


def test_shared_noise_draws_each_tile_once_and_forgets_what_is_done():
    tiles = plan_tiles((70, 70), 24, 9)
    calls = []

    def draw(t, n):
        calls.append((t.index, n))
        return _draw(t, n)

    whole = SharedNoise(tiles, 1, _draw)
    shared = SharedNoise(tiles, 1, draw)
    held = []
    for start in range(0, len(tiles), 2):  # as superresolve runs them: chunks in order
        for i in range(start, min(start + 2, len(tiles))):
            for n in (0, 1):
                np.testing.assert_array_equal(
                    shared.noise(i, n, (True, False)), whole.noise(i, n, (True, False))
                )
        shared.forget_before(start + 2)
        held.append(len(shared._drawn))
    assert sorted(calls) == sorted({(t.index, n) for t in tiles for n in (0, 1)})  # each drawn once
    per_row = int(np.sqrt(len(tiles)))
    assert max(held) <= 2 * (per_row + 2) and held[-1] == 0


def test_a_batch_is_its_tiles_noise_whatever_the_threads():
    tiles = plan_tiles((70, 70), 24, 9)
    one = SharedNoise(tiles, 2, lambda t, n: _draw(t, n, grid=2, pad=2))
    calls = []

    def draw(t, n):
        calls.append((t.index, n))
        return _draw(t, n, grid=2, pad=2)

    threaded = SharedNoise(tiles, 2, draw, threads=4)
    got = threaded.batch(range(3, 9), [0, 2], (False, True))
    assert got.shape == (6, 2, *_draw(tiles[0], 0, grid=2, pad=2).shape)
    for a, i in enumerate(range(3, 9)):
        for b, n in enumerate([0, 2]):
            np.testing.assert_array_equal(got[a, b], one.noise(i, n, (False, True)))
    assert len(calls) == len(set(calls))  # each tile's own noise drawn once
