"""
Quiet-Sun noise and unsigned flux of a super-resolved full disk, ring by ring from disk centre to limb.

HMI's quiet-Sun noise rises from disk centre to limb (`sunpy_superres.calibration.HMI_NOISE_CLV`),
and a noise-conditioned model given no ``noise_level`` places each tile of a full disk at HMI's
noise where it lies. This script shows what that gives, per ring of 0.1 solar radii:

* an **HMI** full disk (a training frame: the held-out 2016-07-07 frame is refused) is degraded by
  4x4 block means, super-resolved, and compared with itself: the median over the ring's 256x256
  boxes of the output's `~sunpy_superres.metrics.physics.quiet_noise_gauss` over the truth's, and
  the ring's unsigned flux over the truth's, over all pixels and over those of ``|B| < 100 G``;
* an **MDI** full disk is super-resolved as it is, and the output's noise is compared with HMI's
  level at that ring (the model's level times `HMI_NOISE_CLV`), beside the input's own noise per 2"
  pixel at HMI scale (64x64 boxes).

For both, the quiet 4x4 blocks within half a solar radius of disk centre tell the noise kept in the
block means (the input's) from the texture the model makes within the blocks.

``--one-level`` also runs the map at one level for the whole disk (the map's ``SRNOISE``, asked as
``noise_level``: what every tile got before tiles were placed one by one), for comparison;
``--noise-level`` asks one level instead of placing the tiles. One sample, one seed. Run from the
repository root::

    python benchmarks/noise_rings.py ../shared/data/hmi/hmi.M_720s.20190621_060000_TAI.magnetogram.fits --one-level
    python benchmarks/noise_rings.py ../shared/data/mdi/mdi.fd_M_96m_lev182.20101015_000000_TAI.data.fits
"""

import argparse
import time
import warnings

import astropy.units as u
import numpy as np
import sunpy.map

from sunpy_superres import superresolve
from sunpy_superres.calibration import HMI_NOISE_CLV, MDI_TO_HMI, disk_radius, is_hmi
from sunpy_superres.evaluation import degrade
from sunpy_superres.metrics.physics import quiet_noise_gauss
from sunpy_superres.models import load_model

HELD_OUT = "2016-07-07"
RINGS = 10  # of 0.1 solar radii


def ring_noise(data, r, box):
    """Per ring: the median `quiet_noise_gauss` of the ``box`` x ``box`` boxes inside the disk (NaN: none)."""
    found = {}
    ny, nx = data.shape
    for y0 in range(0, ny - box + 1, box):
        for x0 in range(0, nx - box + 1, box):
            cut = (slice(y0, y0 + box), slice(x0, x0 + box))
            if not np.isfinite(data[cut]).all():  # off the disk, or reaching off it
                continue
            try:
                noise = quiet_noise_gauss(data[cut])
            except ValueError:  # too little quiet Sun in the box
                continue
            found.setdefault(min(int(r[cut].mean() * RINGS), RINGS - 1), []).append(noise)
    return np.array([np.median(found[k]) if k in found else np.nan for k in range(RINGS)])


def block_split(data, r, box=256):
    """
    Within half a solar radius of disk centre, over the quiet 4x4 blocks (``|mean| < 20 G``) of
    ``box`` x ``box`` boxes: the median standard deviation of the block means and of the texture
    within the blocks, in G (``(block, within)``), which tells the input's noise, kept in the block
    means, from what the model makes inside them; NaN where no box qualifies.
    """
    ny, nx = (s - s % 4 for s in data.shape)
    means = data[:ny, :nx].reshape(ny // 4, 4, nx // 4, 4).mean(axis=(1, 3))
    up = np.repeat(np.repeat(means, 4, 0), 4, 1)
    inside = data[:ny, :nx] - up
    block, within = [], []
    for y0 in range(0, ny - box + 1, box):
        for x0 in range(0, nx - box + 1, box):
            cut = (slice(y0, y0 + box), slice(x0, x0 + box))
            quiet = np.abs(up[cut]) < 20
            if np.isfinite(data[cut]).all() and r[cut].mean() <= 0.5 and quiet.sum() >= 5000:
                block.append(np.std(up[cut][quiet]))
                within.append(np.std(inside[cut][quiet]))
    if not block:  # no quiet box near disk centre
        return np.nan, np.nan
    return float(np.median(block)), float(np.median(within))


def split_line(data, r):
    """`block_split` of ``data`` as a line of text."""
    return "quiet 4x4 blocks within 0.5 radii: std of block means {:.2f} G, within blocks {:.2f} G".format(
        *block_split(data, r)
    )


def ring_flux_ratio(data, truth, ring, mask):
    """Per ring: the output's unsigned flux over the truth's on ``mask`` (NaN where the ring has none)."""
    out = np.full(RINGS, np.nan)
    for k in range(RINGS):
        sel = mask & (ring == k)
        if sel.any():
            out[k] = np.nansum(np.abs(data[sel])) / np.nansum(np.abs(truth[sel]))
    return out


def runs(smap, args):
    """``[(label, output map, seconds)]``: placed tile by tile (or at ``--noise-level``), and one level."""
    kwargs = {"model": args.model, "seed": args.seed, "progress": False}
    if args.noise_level is not None:
        kwargs["noise_level"] = args.noise_level * u.G
    t0 = time.perf_counter()
    out = superresolve(smap, **kwargs)
    done = [("asked" if args.noise_level is not None else "tile by tile", out, time.perf_counter() - t0)]
    if args.one_level and args.noise_level is None and "srnoise" in out.meta:
        t0 = time.perf_counter()
        one = superresolve(smap, **{**kwargs, "noise_level": out.meta["srnoise"] * u.G})
        done.append((f"one level ({out.meta['srnoise']} G)", one, time.perf_counter() - t0))
    return done


def hmi_table(hmi, args):
    truth = hmi.data.astype(np.float64)
    r = disk_radius(hmi)
    ring = np.minimum((r * RINGS).astype(int), RINGS - 1)
    on_disk = np.isfinite(truth) & (r < 1)
    truth_noise = ring_noise(truth, r, 256)
    print("truth: " + split_line(truth, r))
    rows = []
    for label, out, seconds in runs(degrade(hmi), args):
        data = out.data.astype(np.float64)
        noise = ring_noise(data, r, 256) / truth_noise
        flux = ring_flux_ratio(data, truth, ring, on_disk)
        weak = ring_flux_ratio(data, truth, ring, on_disk & (np.abs(truth) < 100))
        whole = np.nansum(np.abs(data[on_disk])) / np.nansum(np.abs(truth[on_disk]))
        print(f"{label}: {seconds:.0f} s; " + ", ".join(f"{k.upper()} {out.meta.get(k)}" for k in KEYS))
        print(f"  unsigned flux of the disk over the truth's: {whole:.4f}")
        print("  " + split_line(data, r))
        rows.append((label, noise, flux, weak))
    print(
        "\n| r (solar radii) | "
        + " | ".join(
            f"noise / truth's, {lb} | flux, {lb} | flux where abs(B) < 100 G, {lb}" for lb, *_ in rows
        )
        + " |"
    )
    print("|---|" + "---|---|---|" * len(rows))
    for k in range(RINGS):
        cells = [f"{noise[k]:.3f} | {flux[k] - 1:+.2%} | {weak[k] - 1:+.2%}" for _, noise, flux, weak in rows]
        print(f"| {(k + 0.5) / RINGS:.2f} | " + " | ".join(cells) + " |")


def mdi_table(mdi, args):
    r_in = disk_radius(mdi)
    own = ring_noise(mdi.data.astype(np.float64) * MDI_TO_HMI, r_in, 64)
    rows = []
    for label, out, seconds in runs(mdi, args):
        print(f"{label}: {seconds:.0f} s; " + ", ".join(f"{k.upper()} {out.meta.get(k)}" for k in KEYS))
        data, r = out.data.astype(np.float64), disk_radius(out)
        print("  " + split_line(data, r))
        rows.append((label, ring_noise(data, r, 256), out))
    level = load_model(args.model, device="cpu").noise_level  # the model's own: today's HMI
    print(
        f"\n| r (solar radii) | input's noise per 2\" pixel (x{MDI_TO_HMI:.3g}) | HMI's at {level:.2f} G | "
        + " | ".join(f"output, {lb}" for lb, *_ in rows)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(rows))
    for k in range(RINGS):
        centre = (k + 0.5) / RINGS
        hmi_there = level * np.interp(centre, *HMI_NOISE_CLV)
        print(
            f"| {centre:.2f} | {own[k]:.2f} G | {hmi_there:.2f} G | "
            + " | ".join(f"{noise[k]:.2f} G" for _, noise, _ in rows)
            + " |"
        )


KEYS = ("srnoise", "srnoisrc", "srnoiclv", "srnoilo", "srnoihi")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("files", nargs="+", help="full-disk HMI (training frames) or MDI FITS files")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--one-level", action="store_true", help="also run at one level for the disk")
    parser.add_argument("--noise-level", type=float, default=None, help="ask this level (G) for every tile")
    args = parser.parse_args()
    for path in args.files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the files' own header quirks
            smap = sunpy.map.Map(path)
        if HELD_OUT in smap.date.isot:
            parser.error(f"{path} is the held-out {HELD_OUT} frame: nothing is measured on it")
        print(f"\n## {path.rsplit('/', 1)[-1]} ({smap.date.isot})")
        (hmi_table if is_hmi(smap) else mdi_table)(smap, args)


if __name__ == "__main__":
    main()
