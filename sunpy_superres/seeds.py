"""
Every seed the package derives, in one place.

A result is repeatable from one user seed: each unit of random work (a tile of a sample, a file of a
batch, an image of an evaluation, a training step, a crop) gets its own seed, derived from the user's
seed and the unit's identity with `numpy.random.SeedSequence`, never from the order in which units
run. So a result does not depend on tiling, batch size, the number of workers or where a folder tree
is mounted (rule 7 of ``docs/dev/design.rst``).

The derivations differ in what identifies a unit and in width. Widths are kept as first written
because recorded results depend on them: 63 bits where a seed is written into a FITS header (a
signed 64-bit integer), 31 bits for the evaluation's per-image seeds (the committed Table 1 was made
with them), 32 bits for fine-tuning noise.
"""

import hashlib
import numbers
import secrets
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_SEED",
    "check_seed",
    "fresh_seed",
    "derive",
    "tile_seed",
    "file_seed",
    "evaluation_seed",
    "step_seed",
    "pair_noise_seed",
    "sample_rng",
]

#: Largest seed: a FITS header integer is a signed 64-bit number.
MAX_SEED = 2**63 - 1


def check_seed(seed):
    """
    Refuse a seed that is not `None` or an integer from 0 to `MAX_SEED`.

    Raises
    ------
    ValueError
        Naming the allowed range.
    """
    if seed is not None and (
        not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED
    ):
        raise ValueError(
            f"seed must be an integer from 0 to 2**63 - 1 (it is written into the FITS header "
            f"as SRSEED) or None, got {seed!r}"
        )


def fresh_seed():
    """A 63-bit seed from the operating system's entropy, for a run whose user gave none."""
    return secrets.randbits(63)


def derive(seed, *key, bits=63):
    """
    A ``bits``-bit seed for the unit ``key`` of the work seeded by ``seed``.

    Parameters
    ----------
    seed : int
        The user's (or run's) seed.
    *key : int
        Non-negative integers that identify the unit (sample, tile position, image, ...), used as the
        `numpy.random.SeedSequence` spawn key.
    bits : int, optional
        Width of the result, at most 64.

    Returns
    -------
    int
        A non-negative integer below ``2**bits``.
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(64 - bits))


def tile_seed(seed, sample, tile):
    """
    The seed of one tile of one sample of `sunpy_superres.superresolve`.

    Derived from (seed, sample, tile position on the input grid), so that a result does not depend on
    the batch size, and a tile at the same position gets the same seed whatever the map's size.

    Parameters
    ----------
    seed : int or None
        The user's seed; `None` gives `None` (fresh random numbers).
    sample : int
        Sample number.
    tile : `sunpy_superres.tiling.Tile`
        The tile.
    """
    return None if seed is None else derive(seed, sample, tile.y0, tile.x0)


def file_seed(seed, name):
    """
    The seed of one file in a batch, derived from the run's ``seed`` and the file's name.

    Derived with `numpy.random.SeedSequence` from ``seed`` and a hash of the file name (not its
    folder), so a file's result depends neither on the order in which files run, nor on which worker
    runs it, nor on where the folder tree is mounted.

    Parameters
    ----------
    seed : int or None
        The run's seed; `None` gives `None` (fresh random numbers for every file).
    name : str or `pathlib.Path`
        The input file; only its name is used.

    Returns
    -------
    int or None
        A non-negative 63-bit seed, for ``superresolve(..., seed=...)``.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(Path(name).name.encode()).digest()
    return derive(seed, int.from_bytes(digest[:8], "little"))


def evaluation_seed(seed, image_index, sample):
    """The 31-bit seed of sample ``sample`` of image ``image_index`` in `sunpy_superres.evaluation.evaluate`."""
    return None if seed is None else derive(seed, image_index, sample, bits=31)


def step_seed(seed, step, rank):
    """
    The seed of training step ``step`` on process ``rank``: timesteps and noise of that step.

    Seeding each step from (seed, step, rank) means no random state is saved with a checkpoint, and a
    resumed run draws what an uninterrupted one would have drawn.
    """
    seq = np.random.SeedSequence([int(seed), int(step), int(rank)])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def pair_noise_seed(seed, index):
    """The 32-bit seed of the MDI-like noise of synthetic fine-tuning pair number ``index``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def sample_rng(seed, index):
    """The random generator of training crop number ``index``: a pure function of (seed, index)."""
    return np.random.default_rng([int(seed), int(index)])
