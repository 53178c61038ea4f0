"""
The ``sunpy-superres`` command.

::

    sunpy-superres INPUT.fits -o OUTPUT.fits [--model NAME] [--samples N] [--seed S] [--device D]
                   [--steps N] [--sampler NAME] [--start-timestep T] [--spacing S] [--noise-level G]
                   [--png QUICKLOOK.png] [--no-calibrate] [--overwrite]
    sunpy-superres evaluate HMI.fits [HMI2.fits ...] -o OUT_DIR [--models NAME ...] [--samples N]
                   [--crop PIXELS] [--seed S] [--sampler NAME] [--steps N] [--device D] [--overwrite]
    sunpy-superres batch INPUT_GLOB [INPUT_GLOB ...] -o OUT_DIR [--cluster ADDRESS] [--workers N]
                   [--model NAME] [--samples N] [--seed S] [--steps N] [--sampler NAME]
                   [--start-timestep T] [--spacing S] [--noise-level G] [--root DIR] [--overwrite] [--quiet]

``batch`` (needs the ``[batch]`` extra) runs many files on a Dask cluster (a local one, or the one at
``--cluster``), writes ``OUT_DIR/<sub-folders>/<stem>_sr.fits`` and ``OUT_DIR/manifest.ecsv``, and
resumes when run again; it exits with status 1 if any file failed (the manifest says why).

It never modifies the input, refuses to replace an existing output without ``--overwrite``, writes
through a temporary file and a rename, and on bad input exits with status 2 and a one-line reason.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from .options import add_cli_arguments, options_from_cli

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class _Refusal(Exception):
    """A reason to stop that the user can act on; printed as one line."""


def _parser():
    from .models import available_models

    names = ", ".join(available_models())
    p = argparse.ArgumentParser(
        prog="sunpy-superres",
        description='Super-resolve a line-of-sight magnetogram FITS file 4x (MDI 2"/px -> 0.5"/px).',
    )
    p.add_argument("input", type=Path, help="input magnetogram FITS file (read with sunpy.map.Map)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output FITS file")
    add_cli_arguments(p, models=names)
    p.add_argument(
        "--png",
        type=Path,
        default=None,
        help="also write a PNG quick-look, input beside output (and the standard deviation with --samples > 1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _read_map(path):
    from .io import read_map

    try:
        return read_map(path)
    except ValueError as err:
        raise _Refusal(f"{path}: {err}") from err


def _check_outputs(args):
    """Refuse, before any work, outputs that would destroy something or could not be written."""
    out_paths = [args.output] + ([args.png] if args.png else [])
    if args.png and Path(os.path.abspath(args.png)) == Path(os.path.abspath(args.output)):
        raise _Refusal(
            f"--png {args.png} is the FITS output too; the quick-look would replace the result. "
            "Give the PNG another name"
        )
    for out in out_paths:
        if out.is_dir():
            raise _Refusal(f"output {out} is a folder; give a file name, e.g. {out / 'output.fits'}")
        if out.exists() and out.resolve() == args.input.resolve():
            raise _Refusal(f"output {out} is the input file; choose another output name")
        if out.exists() and not args.overwrite:
            raise _Refusal(f"{out} exists; pass --overwrite to replace it")
        folder = _existing_parent(out)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _Refusal(
                f"cannot write {out}: the folder {folder} is not writable; choose another output folder"
            )


@contextlib.contextmanager
def _write_errors_refused(output):
    """A full disk or a folder made read-only meanwhile, in one line; the writes leave no partial file."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as err:
        raise _Refusal(
            f"cannot write {err.filename or output}: {err.strerror or err}; no partial file was left"
        ) from err


def _existing_parent(path):
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists():
        folder = folder.parent
    return folder


def _run(args):
    from .io import save_map
    from .models.manifest import WeightsNotFoundError
    from .superresolve import superresolve
    from .visualization import save_quicklook

    _check_outputs(args)
    smap = _read_map(args.input)
    try:
        result = superresolve(smap, options=options_from_cli(args, progress=not args.quiet))
    except (TypeError, ValueError, WeightsNotFoundError) as err:
        raise _Refusal(f"{args.input}: {err}") from err
    with _write_errors_refused(args.output):
        save_map(result, args.output, overwrite=args.overwrite)
        if args.png:
            save_quicklook(smap, result, args.png, overwrite=args.overwrite)
    ny, nx = result.data.shape
    print(
        f"{args.input} -> {args.output} ({nx}x{ny} px, {abs(result.scale.axis1.value):.4f} arcsec/px, "
        f"model {result.meta['srmodel']})" + (f"; quick-look {args.png}" if args.png else "")
    )


def _evaluate_parser():
    p = argparse.ArgumentParser(
        prog="sunpy-superres evaluate",
        description="Score models on ground-truth HMI maps with the protocol of Ramunno et al. (2025, Tables 1-2): "
        "AR-centred crops, 4x4 block-mean degradation, image, physics and Fourier metrics.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="ground-truth magnetogram FITS files (HMI)")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="folder for the ECSV tables and PNG figures"
    )
    p.add_argument("--models", nargs="+", default=["nearest", "bicubic"], help="models to score")
    p.add_argument("--samples", type=int, default=10, help="samples per image of stochastic models")
    p.add_argument("--crop", type=int, default=1024, help="AR-centred crop side in pixels (multiple of 4)")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    # The evaluation sets the model, samples, seed and calibration itself.
    add_cli_arguments(p, exclude=("model", "samples", "seed", "calibrate", "check_scale"))
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _run_evaluate(args):
    from .evaluation import evaluate
    from .models.manifest import WeightsNotFoundError

    if args.output.exists() and not args.output.is_dir():
        raise _Refusal(
            f"-o {args.output} is a file; evaluate writes several tables and figures into a folder"
        )
    maps = [_read_map(path) for path in args.inputs]
    try:
        options = options_from_cli(args, progress=False)
        result = evaluate(
            args.models, maps, samples=args.samples, crop=args.crop, seed=args.seed, options=options
        )
    except (TypeError, ValueError, WeightsNotFoundError) as err:
        raise _Refusal(str(err)) from err
    with _write_errors_refused(args.output):
        written = result.write(args.output, overwrite=args.overwrite)
    print(result)
    print("wrote " + ", ".join(str(p) for p in written))


def _batch_parser():
    from .models import available_models

    p = argparse.ArgumentParser(
        prog="sunpy-superres batch",
        description="Super-resolve many magnetogram files on a Dask cluster. Outputs mirror the input "
        "folders under OUT_DIR as <stem>_sr.fits; OUT_DIR/manifest.ecsv records each file. Run "
        "the same command again to resume: finished files are skipped, failed ones retried.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT_GLOB",
        help="input FITS files or glob patterns (quote them; ** recurses)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler (default: start a local cluster)",
    )
    # --scheduler was the flag's name in 0.1; the sampler of a diffusion model is --sampler.
    p.add_argument("--scheduler", dest="old_scheduler", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="workers of the local cluster (default: one per GPU, else one per 4 CPU cores)",
    )
    add_cli_arguments(p, models=", ".join(available_models()))
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder whose tree is mirrored in the output (default: the inputs' common folder)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo every file and replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no dashboard link or progress bar")
    return p


def _run_batch(args):
    try:
        from .batch import MANIFEST_NAME, expand_paths, superresolve_files
    except ImportError as err:
        raise _Refusal(f"batch needs dask.distributed ({err}); pip install 'sunpy-superres[batch]'") from err
    if args.old_scheduler is not None:
        warnings.warn(
            "--scheduler is now --cluster (a Dask scheduler's address)", FutureWarning, stacklevel=1
        )
        args.cluster = args.cluster or args.old_scheduler
    if args.workers is not None and args.cluster is not None:
        raise _Refusal("--workers sizes the local cluster only; do not combine it with --cluster")
    manifest = args.output / MANIFEST_NAME
    try:
        inputs = expand_paths(args.inputs)
        table = superresolve_files(
            inputs,
            args.output,
            address=args.cluster,
            overwrite=args.overwrite,
            n_workers=args.workers,
            root=args.root,
            progress=not args.quiet,
            options=options_from_cli(args, progress=False),
        )
    except (TypeError, ValueError) as err:
        # The batch's messages name its keyword; here the flag does the same.
        raise _Refusal(" ".join(str(err).split()).replace("overwrite=True", "--overwrite")) from err
    except OSError as err:  # e.g. no scheduler at --cluster
        raise _Refusal(f"{type(err).__name__}: {' '.join(str(err).split())}") from err
    except (KeyboardInterrupt, _Terminated) as stop:
        how = "terminated (SIGTERM)" if isinstance(stop, _Terminated) else "interrupted"
        print(
            f"sunpy-superres: {how}; finished files are recorded in {manifest}; run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM if isinstance(stop, _Terminated) else 130
    run = table.meta["run"]
    names = {str(p) for p in inputs}
    failed = [row for row in table if row["status"] == "failed" and row["input"] in names]
    print(
        f"{run['done']} files done, {run['skipped']} done earlier, {len(failed)} failed; manifest {manifest}"
    )
    if len(failed):
        print(
            f"sunpy-superres: error: {len(failed)} of {len(inputs)} files failed; reasons in {manifest}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that temporary files are removed as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _cli_signals_and_warnings():
    """SIGTERM cleans up like Ctrl-C; the package's warnings print as one line each."""

    def one_line(message, category, filename, lineno, line=None):
        return f"sunpy-superres: warning: {' '.join(str(message).split())}\n"

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    old_format = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = old_format
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    """Entry point of ``sunpy-superres``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with _cli_signals_and_warnings():
        return _main(argv)


def _main(argv):
    try:
        if argv[:1] == ["evaluate"]:
            _run_evaluate(_evaluate_parser().parse_args(argv[1:]))
        elif argv[:1] == ["batch"]:
            return _run_batch(_batch_parser().parse_args(argv[1:]))
        else:
            _run(_parser().parse_args(argv))
    except (_Refusal, FileExistsError) as err:
        print(f"sunpy-superres: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("sunpy-superres: interrupted; no output was written", file=sys.stderr)
        return 130
    except _Terminated:
        print("sunpy-superres: terminated (SIGTERM); no output was written", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def console_main():  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
