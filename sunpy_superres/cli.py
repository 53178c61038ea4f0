"""
The ``sunpy-superres`` command.

::

    sunpy-superres INPUT.fits -o OUTPUT.fits [--model NAME] [--samples N] [--seed S] [--device D]
                   [--png QUICKLOOK.png] [--no-calibrate] [--overwrite]
    sunpy-superres evaluate HMI.fits [HMI2.fits ...] -o OUT_DIR [--models NAME ...] [--samples N]
                   [--crop PIXELS] [--seed S] [--overwrite]

It never modifies the input, refuses to replace an existing output without ``--overwrite``, writes
through a temporary file and a rename, and on bad input exits with status 2 and a one-line reason.
"""

import argparse
import sys
import warnings
from pathlib import Path

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
        description="Super-resolve a line-of-sight magnetogram FITS file 4x (MDI 2\"/px -> 0.5\"/px).",
    )
    p.add_argument("input", type=Path, help="input magnetogram FITS file (read with sunpy.map.Map)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output FITS file")
    p.add_argument("--model", default="default", help=f"model name (default: %(default)s); one of {names}")
    p.add_argument("--samples", type=int, default=1, help="stochastic samples (default: 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed for stochastic models")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--png", type=Path, default=None, help="also write a PNG quick-look, input beside output")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="do not scale MDI by 1/1.4 to HMI levels")
    p.add_argument("--no-check-scale", dest="check_scale", action="store_false",
                   help="accept pixel scales outside 1-4 arcsec/pixel")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _read_map(path):
    import sunpy.map

    if not path.is_file():
        raise _Refusal(f"input file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # metadata notes of real instrument headers
            smap = sunpy.map.Map(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is the user's file, reported in one line
        raise _Refusal(f"cannot read {path} as a sunpy Map: {' '.join(str(err).split())}") from err
    if isinstance(smap, list):
        raise _Refusal(f"{path} holds {len(smap)} images; write the one to super-resolve to its own file")
    return smap


def _run(args):
    from .io import save_map
    from .superresolve import superresolve
    from .visualization import save_quicklook

    out_paths = [args.output] + ([args.png] if args.png else [])
    for out in out_paths:
        if out.exists() and out.resolve() == args.input.resolve():
            raise _Refusal(f"output {out} is the input file; choose another output name")
        if out.exists() and not args.overwrite:
            raise _Refusal(f"{out} exists; pass --overwrite to replace it")
    smap = _read_map(args.input)
    try:
        result = superresolve(smap, model=args.model, samples=args.samples, seed=args.seed,
                              device=args.device, calibrate=args.calibrate, check_scale=args.check_scale,
                              progress=not args.quiet)
    except (TypeError, ValueError) as err:
        raise _Refusal(f"{args.input}: {err}") from err
    save_map(result, args.output, overwrite=args.overwrite)
    if args.png:
        save_quicklook(smap, result, args.png, overwrite=args.overwrite)
    ny, nx = result.data.shape
    print(f"{args.input} -> {args.output} ({nx}x{ny} px, {result.scale.axis1.value:.4f} arcsec/px, "
          f"model {result.meta['srmodel']})" + (f"; quick-look {args.png}" if args.png else ""))


def _evaluate_parser():
    p = argparse.ArgumentParser(
        prog="sunpy-superres evaluate",
        description="Score models on ground-truth HMI maps with the protocol of Ramunno et al. (Tables 1-2): "
                    "AR-centred crops, 4x4 block-mean degradation, image, physics and Fourier metrics.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="ground-truth magnetogram FITS files (HMI)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the ECSV tables and PNG figures")
    p.add_argument("--models", nargs="+", default=["nearest", "bicubic"], help="models to score")
    p.add_argument("--samples", type=int, default=10, help="samples per image of stochastic models")
    p.add_argument("--crop", type=int, default=1024, help="AR-centred crop side in pixels (multiple of 4)")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _run_evaluate(args):
    from .evaluation import evaluate

    maps = [_read_map(path) for path in args.inputs]
    try:
        result = evaluate(args.models, maps, samples=args.samples, crop=args.crop, seed=args.seed,
                          device=args.device)
    except (TypeError, ValueError) as err:
        raise _Refusal(str(err)) from err
    written = result.write(args.output, overwrite=args.overwrite)
    print(result)
    print("wrote " + ", ".join(str(p) for p in written))


def main(argv=None):
    """Entry point of ``sunpy-superres``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["evaluate"]:
            _run_evaluate(_evaluate_parser().parse_args(argv[1:]))
        else:
            _run(_parser().parse_args(argv))
    except (_Refusal, FileExistsError) as err:
        print(f"sunpy-superres: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("sunpy-superres: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


def console_main():  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
