"""The options object: one declaration, read by superresolve, batch, evaluate and the CLI."""

import argparse
import dataclasses
import inspect

import pytest

from sunpy_superres import superresolve
from sunpy_superres.options import Options, add_cli_arguments, options_from_cli


def test_every_option_is_a_documented_keyword_of_superresolve():
    names = [f.name for f in dataclasses.fields(Options)]
    params = inspect.signature(superresolve).parameters
    assert [n for n in params if n in names] == names
    assert all(
        params[n].default == f.default for n, f in zip(names, dataclasses.fields(Options), strict=True)
    )
    for name in names:  # numpydoc entries, filled from Options
        assert f"\n    {name} : " in superresolve.__doc__
        assert f"\n    {name} : " in Options.__doc__
    assert "{options}" not in superresolve.__doc__


def test_from_kwargs_replaces_fields_and_refuses_unknown_ones():
    base = Options(samples=4, seed=3)
    opts = Options.from_kwargs(base, seed=5)
    assert (opts.samples, opts.seed, base.seed) == (4, 5, 3)
    assert Options.from_kwargs() == Options()
    with pytest.raises(
        TypeError, match="unknown option 'n_samples'; the options are model, adapter, samples"
    ):
        Options.from_kwargs(n_samples=2)
    with pytest.raises(TypeError, match="options must be an Options"):
        Options.from_kwargs({"samples": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.samples = 2


def test_the_sampler_is_the_sampler():
    with pytest.warns(FutureWarning, match="scheduler= is now sampler="):
        assert Options.from_kwargs(scheduler="ddim").sampler == "ddim"
    with pytest.warns(FutureWarning), pytest.raises(TypeError, match="sampler= only"):
        Options.from_kwargs(scheduler="ddim", sampler="ddpm")
    assert Options(sampler="ddim").sampler_settings()["sampler"] == "ddim"
    assert Options.from_kwargs(Options(sampler="ddim"), scheduler=None).sampler == "ddim"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 0}, "samples must be a positive integer"),
        ({"samples": True}, "samples must be a positive integer"),
        ({"seed": -1}, "seed must be an integer from 0 to 2"),
        ({"seed": 2**63}, "seed must be an integer from 0 to 2"),
        ({"batch_size": 0}, "batch_size must be a positive integer or 'auto'"),
        ({"batch_size": "max"}, "batch_size must be a positive integer or 'auto'"),
        ({"consistency": "smooth"}, "consistency must be True, False, 'auto'"),
    ],
)
def test_bad_values_are_refused_on_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Options(**kwargs)


def test_output_settings_are_those_that_change_values():
    settings = Options().output_settings()
    assert {"model", "samples", "seed", "sampler", "calibrate", "tile_size"} <= set(settings)
    assert not {"device", "batch_size", "progress", "precision", "compile"} & set(settings)


def test_cli_flags_come_from_the_options():
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser, exclude=("seed",))
    args = parser.parse_args(
        ["--samples", "3", "--sampler", "ddim", "--no-calibrate", "--noise-level", "4.5"]
    )
    opts = options_from_cli(args, seed=9)
    assert (opts.samples, opts.sampler, opts.calibrate, opts.noise_level, opts.seed) == (
        3,
        "ddim",
        False,
        4.5,
        9,
    )
    assert options_from_cli(parser.parse_args([])) == Options()
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "1"])  # excluded
