"""
====================================================
Super-resolve a folder of magnetograms with Dask
====================================================

An archive of MDI magnetograms (15 years of full-disk maps) is many files and many hours of work.
`sunpy_superres.batch.superresolve_files` runs `~sunpy_superres.superresolve` on each file as one
task of a `dask.distributed <https://distributed.dask.org>`__ cluster, writes ``<name>_sr.fits``
for each, and keeps a manifest of what was done, so that a run that stops part-way is resumed by
running it again. The ``[batch]`` extra (``dask[distributed]``) is needed.

Here the archive is three small real maps shipped with the package, and the cluster is two local
worker processes.
"""

import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import sunpy.map
from astropy.table import Table
from distributed import Client, LocalCluster

from sunpy_superres.batch import MANIFEST_NAME, superresolve_files
from sunpy_superres.data import HMI_AR_CUTOUT, MDI_AR_CUTOUT, MDI_LIMB_CUTOUT
from sunpy_superres.evaluation import degrade
from sunpy_superres.visualization import plot_comparison

###############################################################################
# Dask starts its worker processes by running this script again (multiprocessing's ``spawn``), so
# in a script everything that starts or uses the cluster sits under ``if __name__ == "__main__":``;
# in a notebook the guard is not needed.
#
# The input folder: the two MDI cut-outs of 2010-10-15 (an active region, and the east limb with
# off-disk pixels), and the HMI cut-out of 2011-12-17 averaged over 4x4 blocks to MDI's 2"/pixel.
# The HMI map as it is (0.5"/pixel) would be refused: inputs must lie between 1 and 4"/pixel
# (``check_scale``), and the manifest would record it as failed, with that reason. The 1/1.4
# calibration applies to the MDI maps only (by their headers), not to the HMI copy.

if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="batch-example-"))
    in_dir, out_dir = work / "mdi", work / "mdi_sr"
    in_dir.mkdir()
    for path in (MDI_AR_CUTOUT, MDI_LIMB_CUTOUT):
        shutil.copy(path, in_dir)
    hmi_2arcsec = degrade(sunpy.map.Map(HMI_AR_CUTOUT))
    hmi_2arcsec.save(in_dir / "hmi_20111217_ar_cutout_2arcsec.fits")
    paths = sorted(in_dir.glob("*.fits"))
    for p in paths:
        print(p.name)

###############################################################################
# A local cluster of two worker processes, one task (file) at a time each. The same call runs on
# any cluster a `distributed.Client` is connected to (``dask-jobqueue`` on a batch system,
# ``dask-cuda`` for one GPU per worker). ``address="tcp://HOST:8786"`` instead of ``client=``
# connects to a running scheduler by its address (``--cluster ADDRESS`` on the command line); with
# neither, `superresolve_files` starts a `distributed.LocalCluster` itself for the run, and gives
# each worker its share of the cores. A cluster of your own runs torch on one core per worker unless
# told otherwise: dask sets ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 in its workers. For the
# default model on CPUs, set both to each worker's share before the cluster starts (here, say,
# ``dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 4,
# "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 4})``).
#
# The model is loaded once on each worker, not once per file. Here it is bicubic interpolation, so
# that the example runs in seconds; the default, ``model="default"`` (the embedded latent diffusion
# model ``ldm-res``), runs the same way, with ``seed=`` for reproducible samples (each file gets its
# own seed from the run's seed and its name) and ``samples=`` for an uncertainty map.

if __name__ == "__main__":
    environ = dict(os.environ)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    table = superresolve_files(paths, out_dir, client=client, model="bicubic", progress=False)
    print(table.meta["run"])

###############################################################################
# The output folder holds one ``_sr.fits`` per input and the manifest, an ECSV table with one row
# per file: its output, ``done`` or ``failed`` (with the reason), the seconds it took on its
# worker, the output's size, the worker, and what made it (the model and weights,
# ``name@revision``, and the sunpy-superres version). The run's settings are in its header.

if __name__ == "__main__":
    print(sorted(p.name for p in out_dir.iterdir()))
    manifest = Table.read(out_dir / MANIFEST_NAME, format="ascii.ecsv")
    manifest["input"] = [Path(p).name for p in manifest["input"]]
    manifest["seconds"].info.format = ".2f"
    manifest["input", "status", "seconds", "bytes", "worker", "model"].pprint(max_width=-1)
    print({k: manifest.meta[k] for k in ("model", "samples", "seed", "calibrate")})

###############################################################################
# Running the same call again redoes nothing: every file is recorded as done and its output is
# there, with the recorded size. After a kill, the same call does the files that are missing and
# retries those that failed. Other settings (another model, seed, ...) for the same output folder
# are refused, unless ``overwrite=True``, and so are other weights under the same settings (a model
# directory trained again, or another release's default): one folder holds one dataset. Files that
# another version of sunpy-superres made are kept, with a warning.

if __name__ == "__main__":
    again = superresolve_files(paths, out_dir, client=client, model="bicubic", progress=False)
    print(again.meta["run"])
    print(again["status"].tolist())
    print("finished at the same times as before:", (again["finished"] == table["finished"]).all())

###############################################################################
# Close the client and the cluster. Dask's nanny puts its worker settings (``OMP_NUM_THREADS=1``,
# ...) into this process's environment too; put it back.

if __name__ == "__main__":
    client.close()
    cluster.close()
    os.environ.clear()
    os.environ.update(environ)

###############################################################################
# The command line does the same, with a local cluster of ``--workers`` processes (or
# ``--cluster ADDRESS`` for a running cluster), e.g.::
#
#     sunpy-superres batch "mdi/**/*.fits" -o mdi_sr --workers 2 --model bicubic
#
# Quote the pattern: ``**`` is expanded by sunpy-superres, recursively, and the folder tree under
# the inputs is mirrored into the output folder. Without ``--model`` it runs the default diffusion
# model (add ``--seed 0`` for reproducible samples). It prints a summary line, and exits with status
# 1 if any file failed; the manifest says why.
#
# One of the outputs beside its input: the limb cut-out, from 2"/pixel to 0.5"/pixel. The field here
# is mostly noise of about 10 G, at MDI levels in the input and at HMI levels (1/1.4) in the output;
# off-disk pixels stay NaN (blank), on the 4x finer grid.

if __name__ == "__main__":
    row = manifest[manifest["input"] == Path(MDI_LIMB_CUTOUT).name][0]
    limb = sunpy.map.Map(out_dir / row["output"])
    print(row["output"], limb.data.shape, f"{limb.scale.axis1:.4f}", limb.meta["srmodel"])
    fig = plt.figure(figsize=(11, 5))
    plot_comparison(sunpy.map.Map(in_dir / row["input"]), limb, fig=fig)
    plt.show()
    shutil.rmtree(work)
