"""
The options of a super-resolution run, declared once.

`Options` is read by `sunpy_superres.superresolve`, `sunpy_superres.batch.superresolve_files`,
`sunpy_superres.evaluation.evaluate`, the Dask worker plugin and the ``sunpy-superres`` command: an
option added here (name, default, type, documentation, command-line flag) is everywhere at once.
The functions' docstrings are filled from here too (`fill_doc`), so the documentation cannot drift.
"""

import dataclasses
import inspect
import numbers
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as np

from .seeds import check_seed

__all__ = ["Options", "fill_doc", "add_cli_arguments", "options_from_cli", "renamed_sampler"]

_CONSISTENCY = ("backprojection", "block")


def _option(default, type_, doc, *, output=True, cli=None):
    """
    A field of `Options`: its default, numpydoc type line, description and command-line flag.

    ``output`` says whether the option can change the output's values (the batch manifest records
    those, and refuses to mix results of different ones in one folder). ``cli`` holds the
    `argparse.ArgumentParser.add_argument` keywords of its ``--flag`` (`None`: no flag).
    """
    return field(default=default, metadata={"type": type_, "doc": doc, "output": output, "cli": cli})


@dataclass(frozen=True, kw_only=True)
class Options:
    """
    How to super-resolve: the model, its sampler and the run's settings.

    Every field is also a keyword argument of `sunpy_superres.superresolve`; pass either
    ``superresolve(m, samples=8)`` or ``superresolve(m, options=Options(samples=8))``. Values are
    checked on construction; an `Options` never changes (use `dataclasses.replace`).

    Parameters
    ----------
    {options}
    """

    model: object = _option(
        "default",
        "str, path-like or `~sunpy_superres.models.SuperResolutionModel`",
        """Registry name (see `sunpy_superres.models.available_models`), a model directory, a pinned
        Hub reference ``"hf://owner/repo@<40-hex commit>"``, or a loaded model. ``"default"`` is the
        embedded default model.""",
        cli={"metavar": "NAME", "help": "model name or directory (default: %(default)s)"},
    )
    adapter: object = _option(
        None,
        "path-like",
        """A LoRA adapter directory (from ``sunpy-superres-train finetune``) applied to a diffusion
        ``model`` and merged before sampling; needs the ``[train]`` extra (peft).""",
        cli={"metavar": "DIR", "help": "LoRA adapter directory of a diffusion model"},
    )
    samples: int = _option(
        1,
        "int",
        """Number of stochastic samples. With more than one the result is an
        `~sunpy_superres.UncertaintyMap` of their mean and standard deviation. Deterministic models
        take only 1.""",
        cli={"type": int, "metavar": "N", "help": "stochastic samples (default: %(default)s)"},
    )
    seed: int | None = _option(
        None,
        "int",
        """Seed of the random numbers of stochastic models (0 to 2**63 - 1); each tile and sample gets
        its own seed derived from it (where tiles overlap, they start from the first one's noise), so a
        result does not depend on the order of the tiles or the batch size. When not
        given, a stochastic model draws one from the operating system's entropy; either way the seed
        used is recorded as ``SRSEED`` (-1 for deterministic models), so every result can be repeated.""",
        cli={"type": int, "metavar": "S", "help": "random seed of stochastic models"},
    )
    antithetic: object = _option(
        "auto",
        'bool, "polarity" or "auto"',
        """With ``samples > 1``, draw the samples in antithetic pairs: sample ``2k + 1`` starts from
        the negated initial noise of sample ``2k`` (Jia et al. 2025, "Antithetic noise in diffusion
        models", arXiv:2506.06185). Each sample is still a draw of the model's posterior, but a
        deterministic sampler maps opposite noise to nearly opposite departures from the posterior
        mean, so the mean of the samples is far closer to it than the mean of as many independent
        samples. ``"polarity"``: sample ``2k + 1`` starts from the same noise as sample ``2k``, for
        the input with its polarity reversed, and is reversed back. Nothing in the physics depends
        on the field's sign, and the training augmentation reverses it, so a model maps a reversed
        input and the same noise to the reversed sample of the negated noise: the same pair, but its
        mean also averages out the networks' sign-dependent errors. ``"auto"`` (default): the design
        the model's uncertainty calibration was fitted for (independent samples for a model without
        one); a standard deviation calibrated for another design is not applied (with a warning).
        Recorded as ``SRANTI`` (``T``, ``F`` or ``'polarity'``).""",
    )
    symmetric: object = _option(
        "auto",
        'bool or "auto"',
        """With ``samples > 1``, draw the samples under the symmetries of the model's training
        augmentation that keep a tile's shape: group ``j`` of the samples (pair ``j`` with
        ``antithetic``, else sample ``j``) super-resolves the input flipped by the ``j % 4``-th of
        (none, columns, rows, both: a 180-degree rotation), its polarity also reversed when
        ``j % 8 >= 4``, and undoes that on the output. Each sample is still a draw of the model's
        posterior for the input, so the spread keeps its meaning; the mean, a self-ensemble, no
        longer carries the network's orientation-dependent errors, and so depends far less on whether
        a map is stored north up (MDI) or north down (HMI). The first sample (the first pair, with
        ``antithetic``) is unchanged. ``"auto"`` (default): the design the model's uncertainty
        calibration was fitted for (plain samples for a model without one); a standard deviation
        calibrated for another design is not applied (with a warning). Recorded as ``SRSYMM``.""",
    )
    steps: int | None = _option(
        None,
        "int",
        "Sampler steps of a diffusion model (its default when not given).",
        cli={
            "type": int,
            "metavar": "N",
            "help": "sampler steps of a diffusion model (default: the model's)",
        },
    )
    sampler: str | None = _option(
        None,
        "str",
        """Sampler of a diffusion model: ``"ddpm"``, ``"ddim"``, ``"dpm-solver++"`` or
        ``"sde-dpm-solver++"`` (the model's own when not given); ``"lcm"``, 1 to 8 steps, for a
        model that ships a consistency-distilled student, and ``"distilled"``, the steps it was
        distilled for, for one that ships a trajectory-distilled student (it then runs the student).
        The default ``ldm-res`` samples with its ``"distilled"`` student unless another sampler is
        named (its manifest's ``default_sampler``). Recorded as ``SRSCHED``.""",
        cli={
            "metavar": "NAME",
            "help": "sampler of a diffusion model: ddpm, ddim, dpm-solver++, sde-dpm-solver++, or lcm or "
            "distilled for a model that ships a distilled student (default: the model's)",
        },
    )
    start_timestep: int | None = _option(
        None,
        "int",
        """Timestep (0 to 999) at which a diffusion model's reverse process starts; by default the
        model's own (999, the paper's whole chain, for the embedded ``ldm-res`` and for models that
        set none). Recorded as ``SRTSTART``.""",
        cli={
            "type": int,
            "metavar": "T",
            "help": "timestep at which a diffusion model's reverse process starts, 0-999; 999 is the "
            "paper's whole chain (default: the model's)",
        },
    )
    spacing: str | None = _option(
        None,
        '{"linear", "log-snr"}',
        """How a DPM-Solver sampler spaces its steps: ``"linear"`` in timestep, or ``"log-snr"``,
        uniformly in log signal-to-noise ratio after the first
        (`sunpy_superres.models.diffusion.log_snr_timesteps`), which spends the steps where the
        small scales are decided; the model's own by default. Recorded as ``SRSPACE``.""",
        cli={
            "choices": ("linear", "log-snr"),
            "help": "spacing of a DPM-Solver sampler's steps (default: the model's)",
        },
    )
    noise_level: object = _option(
        None,
        "`~astropy.units.Quantity`",
        """For a model conditioned on the noise level: the quiet-Sun noise (G) of the output's
        small-scale texture, as `sunpy_superres.metrics.physics.quiet_sun_noise` measures it on an
        HMI map (HMI's changed over the mission; match the HMI data you compare with). By default,
        for an HMI map (one degraded to MDI's resolution to test a model against its original, say)
        the noise of HMI's data at the time and place (`sunpy_superres.calibration.hmi_noise_level`:
        4.8 G before April 2016, 3.5 G since, times 0.86 at disk centre to 1.2 at the limb), or the
        nearest level the model makes; for a model given a level with ``configure_sampler``, that
        level; for an MDI map, the model's own (today's HMI) at its place, as HMI would have seen
        it; for any other map, the model's own. An HMI or MDI map of several tiles (a full disk,
        say) is placed tile by tile: each tile gets the level of its own place. Refused for models
        without noise conditioning. Recorded as ``SRNOISE`` (the map's level), where it came from as
        ``SRNOISRC``, the factor of an HMI or MDI map's place as ``SRNOICLV``, and the range of the
        tiles' levels as ``SRNOILO`` and ``SRNOIHI``.""",
        cli={
            "type": float,
            "metavar": "G",
            "help": "quiet-Sun noise of the output in gauss, for a noise-conditioned diffusion model "
            "(default: for an HMI map HMI's own at the time and place, for an MDI map the model's at "
            "the place, each tile of a full disk at its own place; else the model's)",
        },
    )
    calibrate: object = _option(
        True,
        "bool or float",
        """``True`` (default) scales MDI maps by 1/1.4 to HMI levels (Liu et al. 2012, Sol. Phys. 279,
        295); ``False`` does not; a number is used as the factor. Recorded as ``SRCALFAC``.""",
        cli={
            "flag": "--no-calibrate",
            "action": "store_false",
            "help": "do not scale MDI by 1/1.4 to HMI levels",
        },
    )
    consistency: object = _option(
        "auto",
        'bool, "auto", "backprojection" or "block"',
        """After sampling, correct the output so that the mean of every ``factor x factor`` block equals
        the (calibrated) input pixel: the field, and so the net flux, at the input's scale is kept by
        construction (not in the paper). ``True`` or ``"backprojection"`` spreads the correction
        smoothly (iterative back-projection, `sunpy_superres.consistency.project_block_means`);
        ``"block"`` adds a constant per block, which leaves steps at block edges. ``"auto"``
        (default) back-projects for stochastic (diffusion) models and leaves the deterministic
        baselines as the paper compares them. Recorded as ``SRCONSIS`` and ``SRCONMET``.""",
    )
    tile_size: int | None = _option(
        None,
        "int",
        """Largest tile side in input pixels; the model's default when not given. Along each axis the
        tiles are the fewest of at most this side, made as small as that many allow
        (`sunpy_superres.tiling.balanced_tile`).""",
    )
    overlap: int | None = _option(
        None,
        "int",
        """Overlap of neighbouring tiles in input pixels; by default twice the model's context halo
        plus 8 pixels of blending ramp.""",
    )
    keep_samples: bool = _option(
        False,
        "bool",
        "Keep every sample in the `~sunpy_superres.UncertaintyMap` (memory: ``samples`` output maps).",
    )
    calibrate_uncertainty: bool = _option(
        True,
        "bool",
        """With ``samples > 1``, scale the standard deviation of the samples by the model's calibration
        (`sunpy_superres.conformal`: split-conformal factors per ``|B|`` bin, fitted on calibration
        crops and checked on held-out data, so that ``mean +- 2 std`` covers about 95 % of true
        pixels), when the model has one (default `True`). `False` returns the raw spread of the
        samples. Recorded as ``SRUNCAL``.""",
    )
    device: str = _option(
        "auto",
        "str",
        """``"auto"`` (a CUDA GPU when present, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.""",
        output=False,
        cli={"help": "auto, cpu, cuda or cuda:N (default: %(default)s)"},
    )
    precision: str | None = _option(
        None,
        '{None, "auto", "fp32", "bf16", "fp16"}',
        """Arithmetic of a diffusion model's networks (`torch.autocast`); the sampler update, the
        blending and the consistency projection stay in float32 or float64. ``"auto"`` is bfloat16 on
        a CUDA GPU that has it natively (compute capability 8.0+) or a CPU with Intel AMX or AVX-512
        BF16, and float32 elsewhere (`sunpy_superres.models.accel.resolve_precision`). `None`
        (default) keeps the model's own setting, which is ``"auto"`` for a model loaded by name or
        directory. The baselines run in float32 only. Recorded as ``SRPREC``.""",
        output=False,
        cli={
            "choices": ("auto", "fp32", "bf16", "fp16"),
            "help": "arithmetic of a diffusion model's networks (default: the model's)",
        },
    )
    compile: bool | None = _option(
        None,
        "bool or None",
        """Compile a diffusion model's denoiser with ``torch.compile``: worth it on a GPU for full
        disks or many samples (the first call compiles, which takes about a minute), rarely on the
        CPU. `None` (default) keeps the model's own setting (eager unless ``model.compile()`` was
        called). Falls back to eager execution, with a warning, where ``torch.compile`` does not work.""",
        output=False,
    )
    batch_size: object = _option(
        "auto",
        'int or "auto"',
        """Tiles per model call; with ``samples > 1``, (tile, sample) pairs per call: the samples
        of a tile run side by side, the tile encoded once. ``"auto"`` (default): on a GPU, as many
        as fit in 70% of the free memory (one tile's peak memory is measured first, see
        `sunpy_superres.models.accel.auto_batch_size`), at most 64; on the CPU, one tile's samples
        (those drawn under one flip, with ``symmetric``). The result does not depend on it beyond
        floating-point rounding.""",
        output=False,
    )
    check_scale: bool = _option(
        True,
        "bool",
        """Refuse pixel scales outside 1-4"/pixel (default `True`). The models are trained at 2".""",
        output=False,
        cli={
            "flag": "--no-check-scale",
            "action": "store_false",
            "help": "accept pixel scales outside 1-4 arcsec/pixel",
        },
    )
    progress: bool = _option(True, "bool", "Show a progress bar of tiles done.", output=False)

    def __post_init__(self):
        _check_positive("samples", self.samples)
        check_seed(self.seed)
        # steps, start_timestep, tile_size and overlap are checked against the model, which knows its ranges.
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            try:
                _check_positive("batch_size", self.batch_size)
            except ValueError:
                raise ValueError(
                    f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}"
                ) from None
        for name, words in (("antithetic", ("auto", "polarity")), ("symmetric", ("auto",))):
            value = getattr(self, name)
            if not (isinstance(value, bool | np.bool_) or (isinstance(value, str) and value in words)):
                allowed = ["True", "False", *map(repr, words)]
                raise ValueError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
        if not (
            isinstance(self.consistency, bool | np.bool_)
            or (isinstance(self.consistency, str) and self.consistency in ("auto", *_CONSISTENCY))
        ):
            raise ValueError(
                "consistency must be True, False, 'auto', 'backprojection' or 'block', "
                f"got {self.consistency!r}"
            )

    @classmethod
    def from_kwargs(cls, options=None, /, *, stacklevel=3, **kwargs):
        """
        ``options`` (or the defaults) with the fields named in ``kwargs`` replaced.

        ``stacklevel`` points the `FutureWarning` of an old keyword at the caller's caller.

        Raises
        ------
        TypeError
            For a keyword that is no option; the message lists the options.
        """
        scheduler = kwargs.pop("scheduler", None)
        if scheduler is not None:
            kwargs["sampler"] = renamed_sampler(kwargs.get("sampler"), scheduler, stacklevel=stacklevel + 1)
        unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(f.name for f in dataclasses.fields(cls))}"
            )
        if options is not None and not isinstance(options, cls):
            raise TypeError(f"options must be an Options, got {type(options).__name__}")
        return dataclasses.replace(options or cls(), **kwargs)

    def sampler_settings(self):
        """The keyword arguments of ``SuperResolutionModel.configure_sampler``."""
        return {
            "steps": self.steps,
            "sampler": self.sampler,
            "start_timestep": self.start_timestep,
            "spacing": self.spacing,
            "noise_level": self.noise_level,
        }

    def output_settings(self):
        """``{name: value}`` of the options that can change the output's values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["output"]}


def renamed_sampler(sampler, scheduler, *, stacklevel=3):
    """
    ``sampler``, or the value given under its old name ``scheduler`` (0.1), with a `FutureWarning`.

    The sampler of a diffusion model was called ``scheduler`` (diffusers' word); the package now says
    sampler everywhere, and "scheduler" means only Dask's.
    """
    if scheduler is None:
        return sampler
    warnings.warn(
        "scheduler= is now sampler= (the sampler of a diffusion model); scheduler= will be removed "
        "in a future release",
        FutureWarning,
        stacklevel=stacklevel,
    )
    if sampler is not None:
        raise TypeError("give sampler= only, not scheduler= too")
    return scheduler


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _parameters_doc(names=None, indent=4):
    """The numpydoc ``Parameters`` entries of the named options (all by default)."""
    entries = []
    for f in dataclasses.fields(Options):
        if names is not None and f.name not in names:
            continue
        doc = textwrap.dedent("        " + f.metadata["doc"].strip())
        entries.append(f"{f.name} : {f.metadata['type']}, optional\n{textwrap.indent(doc, '    ')}")
    return textwrap.indent("\n".join(entries), " " * indent).lstrip()


Options.__doc__ = Options.__doc__.replace("{options}", _parameters_doc())


def fill_doc(*, exclude=()):
    """
    Fill a function's ``{options}`` docstring field with the entries of every option but ``exclude``.

    A decorator: the options' documentation is written once, in `Options`.
    """
    names = [f.name for f in dataclasses.fields(Options) if f.name not in exclude]

    def decorate(func):
        func.__doc__ = func.__doc__.replace("{options}", _parameters_doc(names))
        # help(), IDEs and the API docs show the options as keyword arguments, not as **kwargs.
        signature = inspect.signature(func)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in dataclasses.fields(Options)
            if f.name in names and f.name not in signature.parameters
        ]
        func.__signature__ = signature.replace(parameters=params)
        return func

    return decorate


def add_cli_arguments(parser, *, exclude=(), models=None):
    """
    Add a ``--flag`` to ``parser`` for every option that has one, but those in ``exclude``.

    ``models``, a text such as ``"bicubic, ldm-res, ..."``, is appended to the help of ``--model``.
    """
    for f in dataclasses.fields(Options):
        spec = f.metadata["cli"]
        if spec is None or f.name in exclude:
            continue
        spec = dict(spec)
        if f.name == "model" and models:
            spec["help"] += f"; one of {models}"
        flag = spec.pop("flag", "--" + f.name.replace("_", "-"))
        parser.add_argument(flag, dest=f.name, default=f.default, **spec)


def options_from_cli(args, **overrides):
    """The `Options` of parsed command-line ``args`` (the flags `add_cli_arguments` added)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options) if hasattr(args, f.name)}
    return Options(**{**given, **overrides})
