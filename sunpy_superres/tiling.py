"""
Overlapping tiles, blending windows and per-tile seeds for whole-image inference.

A full-disk MDI magnetogram (1024x1024) becomes 4096x4096; a diffusion model cannot take that in one
pass. The image is cut into equal, overlapping tiles on the input grid, the fewest of at most the
tile size and as small as that many allow (`balanced_tile`); each tile is super-resolved
on its own; the outputs are blended with windows that are

* zero within ``halo`` input pixels of a tile edge that lies inside the image, where a tile's output
  depends on the missing context beyond the tile (so a model whose receptive field fits in the halo
  gives the untiled result exactly: the seam test);
* a raised-cosine ramp across the rest of the overlap, so stochastic tiles meet without a visible seam
  (plain averaging leaves box artefacts; ResShift issue #118);
* one at the image border, where every tiling sees the same edge as the untiled image.

Weights are normalised by their sum, so the blend is a convex combination at every pixel. Written by
hand because no maintained library offers halo-aware blending windows on a super-resolved grid.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .seeds import tile_seed  # public here since 0.1; derived, like every seed, in seeds.py

__all__ = ["Tile", "tile_starts", "balanced_tile", "plan_tiles", "blend_window", "tile_seed", "SharedNoise"]


@dataclass(frozen=True)
class Tile:
    """One tile on the input grid: rows ``y0:y0+size_y`` and columns ``x0:x0+size_x``."""

    y0: int
    x0: int
    size_y: int
    size_x: int
    index: tuple  # (row, column) of the tile in the tiling, used to derive its seed

    @property
    def slices(self):
        return np.s_[self.y0 : self.y0 + self.size_y, self.x0 : self.x0 + self.size_x]

    def scaled_slices(self, factor):
        return np.s_[
            factor * self.y0 : factor * (self.y0 + self.size_y),
            factor * self.x0 : factor * (self.x0 + self.size_x),
        ]


def tile_starts(length, tile, overlap):
    """
    Start offsets of tiles of size ``tile`` covering ``range(length)`` with at least ``overlap``.

    The last tile is moved back to end at the image edge, so every tile has the same size (and tiles
    can be batched).
    """
    if tile >= length:
        return [0]
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    stride = tile - overlap
    # The fewest tiles: n - 1 strides reach the last start, n - 2 do not, so the starts are distinct.
    n = int(np.ceil((length - tile) / stride)) + 1
    return [min(i * stride, length - tile) for i in range(n)]


def balanced_tile(length, tile, overlap):
    """
    The side of the fewest tiles of at most ``tile`` that cover ``length`` with ``overlap``, as small as they allow.

    Tiles of side ``tile`` that do not fit a length overlap more than they need to at its end: an MDI
    full disk (1024 pixels) in tiles of 256 with an overlap of 24 takes 5 tiles per axis, 1.56 times
    its area in network work. The same 5 tiles of side 224 cover it exactly (1.2 times).

    Parameters
    ----------
    length : int
        Image side in input pixels.
    tile : int
        Largest tile side.
    overlap : int
        Minimum overlap between neighbouring tiles.

    Returns
    -------
    int
        The tile side, at most ``min(tile, length)``.
    """
    if tile >= length:
        return length
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    n = -(-(length - overlap) // (tile - overlap))  # the fewest tiles
    return min(tile, -(-(length - overlap) // n) + overlap)


def plan_tiles(shape, tile, overlap):
    """
    All tiles for an image of ``shape`` (ny, nx), row by row, of one size.

    Along each axis the tiles are the fewest of side at most ``tile``, and of the smallest side that
    many need (`balanced_tile`), so that no work goes into a larger overlap than asked for.

    Parameters
    ----------
    shape : tuple of int
        Input image shape.
    tile : int
        Largest tile side in input pixels.
    overlap : int
        Minimum overlap between neighbouring tiles in input pixels.

    Returns
    -------
    list of `Tile`
    """
    ny, nx = shape
    sy, sx = balanced_tile(ny, tile, overlap), balanced_tile(nx, tile, overlap)
    ys = tile_starts(ny, sy, overlap)
    xs = tile_starts(nx, sx, overlap)
    return [Tile(y0, x0, sy, sx, (i, j)) for i, y0 in enumerate(ys) for j, x0 in enumerate(xs)]


def _ramp_1d(n, lower_inside, upper_inside, halo, ramp):
    """Window along one axis of n pixels; an edge that is inside the image fades out over ``ramp``."""
    d = np.arange(n) + 0.5  # distance of pixel centres from the lower edge
    w = np.ones(n)
    for inside, dist in ((lower_inside, d), (upper_inside, n - d)):
        if inside:
            t = np.clip((dist - halo) / max(ramp, 1e-9), 0.0, 1.0)
            w *= np.sin(0.5 * np.pi * t) ** 2
    return w


def blend_window(tile, image_shape, *, factor, halo, overlap):
    """
    Blending weights for ``tile`` on the ``factor``-times finer output grid.

    Parameters
    ----------
    tile : `Tile`
        The tile.
    image_shape : tuple of int
        Input image shape (ny, nx), to tell image borders from interior tile edges.
    factor : int
        Output pixels per input pixel.
    halo : int
        Input pixels at an interior edge whose outputs get zero weight (the model's context radius).
    overlap : int
        Overlap between tiles in input pixels; the ramp spans ``overlap - 2 * halo`` of it.

    Returns
    -------
    `numpy.ndarray`
        ``(factor * size_y, factor * size_x)`` float64 weights in [0, 1].
    """
    ramp = factor * max(overlap - 2 * halo, 1)
    ny, nx = image_shape
    wy = _ramp_1d(factor * tile.size_y, tile.y0 > 0, tile.y0 + tile.size_y < ny, factor * halo, ramp)
    wx = _ramp_1d(factor * tile.size_x, tile.x0 > 0, tile.x0 + tile.size_x < nx, factor * halo, ramp)
    return np.outer(wy, wx)


def _overlap(a, b):
    """The rows and columns (on the input grid) that tiles ``a`` and ``b`` share, or `None`."""
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1, x1 = min(a.y0 + a.size_y, b.y0 + b.size_y), min(a.x0 + a.size_x, b.x0 + b.size_x)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def _shift(s, origin):
    """The slice ``s`` of a grid, on a part of it that starts at ``origin``."""
    return slice(s.start - origin, s.stop - origin)


class SharedNoise:
    """
    The initial noise of each tile of a tiling, one noise where tiles overlap.

    Each tile draws its noise as it would alone (``draw(tile, number)``); on the input grid, every
    point then takes what the first tile (in the order of ``tiles``) that covers it drew there. Two
    tiles so start from the same noise where they overlap, and a sampler that draws nothing after its
    initial noise takes them to nearly the same sample there, up to what lies beyond the overlap.
    Tiles that start from independent noise differ there, and the blend across the overlap averages
    their textures (at the middle of a ramp, to half the variance): the samples' small-scale field and
    their spread dipped along every seam. A map of one tile keeps the noise its seed draws.

    A tile drawn under a flip (`~sunpy_superres.superresolve.TILE_SYMMETRIES`) draws in the flipped
    frame; its noise is shared on the map's grid, so every tile of a sample, flipped alike, meets the
    same noise at the same place. Written by hand: it belongs to the tiling, which no library has.

    Parameters
    ----------
    tiles : list of `Tile`
        The tiles of one map, of one size (`plan_tiles`).
    grid : int
        Noise points per input pixel along each axis.
    draw : callable
        ``draw(tile, number)``: the noise that sample seed number ``number`` draws for ``tile``,
        ``(C, grid * h', grid * w')`` with ``h' >= size_y`` and ``w' >= size_x`` (points beyond the
        tile, where a network pads it, stay the tile's own).
    threads : int, optional
        Threads that draw the tiles of a `batch` (``draw`` must release the GIL to gain from them,
        as torch's random draws do). Default: 1.
    """

    def __init__(self, tiles, grid, draw, threads=1):
        self.tiles = list(tiles)
        self.grid = int(grid)
        self.threads = max(1, int(threads))
        self._draw = draw
        self._drawn = {}  # (tile index, number) -> that tile's own draw
        # Each tile's earlier tiles that overlap it, latest first, and the earliest tile any later one needs.
        self._earlier = [
            [(k, box) for k in reversed(range(i)) if (box := _overlap(t, self.tiles[k])) is not None]
            for i, t in enumerate(self.tiles)
        ]
        self._needs = [min([i] + [k for k, _ in self._earlier[i]]) for i in range(len(self.tiles))]

    def _own(self, i, number):
        if (i, number) not in self._drawn:
            self._drawn[i, number] = self._draw(self.tiles[i], number)
        return self._drawn[i, number]

    def _draw_missing(self, keys):
        """Draw the own noise of the ``(tile index, number)`` of ``keys`` not drawn yet, on threads."""
        missing = sorted({key for key in keys if key not in self._drawn})
        workers = min(self.threads, len(missing))
        if workers < 2:
            for key in missing:
                self._own(*key)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="shared-noise") as pool:
            draws = pool.map(lambda key: self._draw(self.tiles[key[0]], key[1]), missing)
            self._drawn.update(zip(missing, draws, strict=True))

    def _map_frame(self, a, tile, flips):
        """The part of a tile's noise ``a`` on the tile, in the map's orientation (a view)."""
        g = self.grid
        a = a[:, : g * tile.size_y, : g * tile.size_x]
        return a[:, :: -1 if flips[0] else 1, :: -1 if flips[1] else 1]

    def noise(self, i, number, flips=(False, False), out=None):
        """
        The initial noise of tile ``i`` for sample seed number ``number``, drawn under ``flips``.

        Parameters
        ----------
        i : int
            Index of the tile in ``tiles``.
        number : int
            The sample's seed number (the ``sample`` of `tile_seed`).
        flips : tuple of bool
            Whether the tile's rows and columns are reversed before the network sees it.
        out : `numpy.ndarray`, optional
            Where to write it (float32, shaped like the tile's own draw).

        Returns
        -------
        `numpy.ndarray`
            ``out``, or a new array shaped like the tile's own draw, in the network's (flipped) frame.
        """
        tile, g = self.tiles[i], self.grid
        own = self._own(i, number)
        out = np.empty(own.shape, dtype=np.float32) if out is None else out
        out[...] = own
        view = self._map_frame(out, tile, flips)  # writes through to out
        for k, (y0, y1, x0, x1) in self._earlier[i]:  # latest first: the earliest tile writes last
            first = self.tiles[k]
            other = self._map_frame(self._own(k, number), first, flips)
            rows, cols = slice(g * y0, g * y1), slice(g * x0, g * x1)  # on the map's noise grid
            view[:, _shift(rows, g * tile.y0), _shift(cols, g * tile.x0)] = other[
                :, _shift(rows, g * first.y0), _shift(cols, g * first.x0)
            ]
        return out

    def batch(self, tiles, numbers, flips=(False, False)):
        """The `noise` of each tile of ``tiles`` (indices) for each seed number of ``numbers``: ``(T, S, ...)``."""
        tiles, numbers = list(tiles), list(numbers)
        self._draw_missing(
            (k, n) for i in tiles for k in (i, *(k for k, _ in self._earlier[i])) for n in numbers
        )
        out = np.empty((len(tiles), len(numbers), *self._own(tiles[0], numbers[0]).shape), dtype=np.float32)
        for a, i in enumerate(tiles):
            for b, n in enumerate(numbers):
                self.noise(i, n, flips, out=out[a, b])
        return out

    def forget_before(self, i):
        """Drop the draws that tile ``i`` and every later tile no longer need."""
        keep = min(self._needs[i:], default=len(self.tiles))
        for key in [key for key in self._drawn if key[0] < keep]:
            del self._drawn[key]
