"""Diffusion variants: shapes, seeded determinism, samplers, save/load, superresolve with WCS."""

import json

import astropy.units as u
import numpy as np
import pytest

from sunpy_superres import superresolve
from sunpy_superres.models import available_models, load_model
from sunpy_superres.models.diffusion import (
    DEFAULT_STEPS,
    ConditionalDenoiser,
    DiffusionSuperResolution,
    log_snr_timesteps,
    make_scheduler,
    set_sampler_timesteps,
)
from sunpy_superres.tiling import SharedNoise, Tile, plan_tiles

from .tiny import tiny_autoencoder, tiny_model

EXPECTED_LDM_RES = [0.22043714, 0.33036116, 0.23491104, 0.05721025]

VARIANTS = [
    ("latent", True, "ldm-res"),
    ("latent", False, "ldm"),
    ("pixel", True, "ddpm-res"),
    ("pixel", False, "ddpm"),
]


def lr_input(seed=0, shape=(2, 10, 12)):
    return np.random.default_rng(seed).normal(0, 0.1, shape).astype(np.float32)


@pytest.mark.parametrize(("space", "residual", "name"), VARIANTS)
def test_variant_shapes_and_seeds(space, residual, name):
    model = tiny_model(space, residual)
    assert model.name == name and model.stochastic and model.clip_input
    x = lr_input()
    a = model.predict(x, seeds=[1, 2])
    assert a.shape == (2, 40, 48) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, model.predict(x, seeds=[1, 2]))  # same seeds: identical on CPU
    assert not np.allclose(a[0], model.predict(x[:1], seeds=[3])[0])  # another seed: another sample
    # A tile's sample does not depend on its batch (one generator per tile, rule 7 of docs/dev/design.rst).
    np.testing.assert_allclose(model.predict(x[1:], seeds=[2])[0], a[1], atol=1e-3)


def test_exact_seeded_slice():
    """Guards sampler, conditioning and decoding against silent change (values recorded on CPU)."""
    out = tiny_model("latent", True).predict(lr_input(), seeds=[7, 8])
    np.testing.assert_allclose(out[0, 0, :4], EXPECTED_LDM_RES, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++"])
def test_samplers(scheduler):
    model = tiny_model("pixel", True)
    fast = model.configure_sampler(sampler=scheduler, steps=3)
    assert fast is not model and model.steps == 4  # a configured copy; the original is untouched
    assert fast.provenance() == {"srsteps": 3, "srsched": scheduler, "srtstart": 999, "srspace": "linear"}
    assert fast.network_evaluations == 3
    x = lr_input()
    np.testing.assert_array_equal(fast.predict(x, seeds=[5, 6]), fast.predict(x, seeds=[5, 6]))
    assert model.configure_sampler(sampler=scheduler).steps == DEFAULT_STEPS[scheduler]


def test_sde_sampler_draws_fresh_noise_at_every_step():
    """The SDE form of DPM-Solver++ adds noise at every step: from the same seeds (the same initial
    noise) it gives another sample than the ODE form, and the same sample again."""
    model = tiny_model("pixel", True)
    x = lr_input()
    ode, sde = (
        model.configure_sampler(sampler=name, steps=4) for name in ("dpm-solver++", "sde-dpm-solver++")
    )
    a, b = sde.predict(x, seeds=[5, 6]), sde.predict(x, seeds=[5, 6])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - ode.predict(x, seeds=[5, 6])).max() > 1e-4


def test_default_sampler_needs_far_fewer_evaluations():
    model = tiny_model()
    assert model.sampler == model.scheduler == "dpm-solver++"
    default = model.configure_sampler(steps=DEFAULT_STEPS["dpm-solver++"])
    ddpm = model.configure_sampler(sampler="ddpm")
    assert ddpm.network_evaluations == 1000
    assert ddpm.network_evaluations / default.network_evaluations >= 25


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
        ({"steps": 0}, "steps must be an integer"),
        ({"steps": 2.5}, "steps must be an integer"),
    ],
)
def test_sampler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model().configure_sampler(**kwargs)


def test_scheduler_config_follows_paper():
    cfg = ConditionalDenoiser(
        block_out_channels=(8, 16), attention_levels=(False, True), norm_num_groups=4
    ).config
    sched = make_scheduler("ddpm", cfg)
    assert sched.config.num_train_timesteps == 1000 and sched.config.beta_schedule == "linear"
    assert sched.config.prediction_type == "epsilon" and not sched.config.clip_sample
    with pytest.raises(ValueError, match="space must be"):
        ConditionalDenoiser(space="wavelet")


@pytest.mark.parametrize(("space", "residual", "name"), VARIANTS)
def test_save_load_round_trip(tmp_path, space, residual, name):
    model = tiny_model(space, residual)
    model.save_pretrained(tmp_path / name)
    files = {p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*") if p.is_file()}
    assert "superres.json" in files and "denoiser/diffusion_pytorch_model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files)  # no pickles
    loaded = load_model(str(tmp_path / name), device="cpu")
    assert (loaded.name, loaded.steps, loaded.tile_size, loaded.halo) == (name, 4, 32, 4)
    x = lr_input()
    np.testing.assert_array_equal(loaded.predict(x, seeds=[1, 2]), model.predict(x, seeds=[1, 2]))


def test_saving_a_loaded_model_leaves_no_local_path(tmp_path):
    # diffusers records the directory a network came from as "_name_or_path" (the learnt autoencoder
    # is diffusers'; the package's own networks record nothing); a re-saved model must not carry that
    # machine's path, and its files must still match its manifest.
    tiny_model("latent", True).save_pretrained(tmp_path / "first")
    loaded = load_model(str(tmp_path / "first"), device="cpu")
    loaded.save_pretrained(tmp_path / "second")
    for config in (tmp_path / "second").rglob("config.json"):
        assert "_name_or_path" not in json.loads(config.read_text()), config
        assert str(tmp_path) not in config.read_text()
    again = load_model(str(tmp_path / "second"), device="cpu")  # verifies every sha256
    x = lr_input()
    np.testing.assert_array_equal(again.predict(x, seeds=[1, 2]), loaded.predict(x, seeds=[1, 2]))


def test_superresolve_start_timestep_reaches_sampler_and_header(hmi_cutout):
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    model = tiny_model("latent", True)
    out = superresolve(lr, model=model, seed=1, start_timestep=700, progress=False)
    same = superresolve(lr, model=model.configure_sampler(start_timestep=700), seed=1, progress=False)
    whole = superresolve(lr, model=model, seed=1, progress=False)
    assert out.meta["srtstart"] == 700 and whole.meta["srtstart"] == 999
    np.testing.assert_array_equal(out.data, same.data)
    assert not np.array_equal(out.data, whole.data)
    assert model.start_timestep == 999  # the caller's model is not altered


def test_superresolve_map_shape_wcs_and_seed(tmp_path, hmi_cutout):
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean)  # 128x128 at 2"/px
    lr = lr.submap([0, 0] * u.pix, top_right=[47, 39] * u.pix)  # 48x40: several tiles, uneven edges
    model = tiny_model("latent", True)
    model.save_pretrained(tmp_path / "m")
    out = superresolve(lr, model=str(tmp_path / "m"), seed=3, steps=2, progress=False, device="cpu")
    assert out.data.shape == (160, 192)
    assert u.allclose(out.scale.axis1, lr.scale.axis1 / 4)
    for px, py in [(0, 0), (191, 159), (95.5, 79.5)]:
        world = out.pixel_to_world(px * u.pix, py * u.pix)
        back = lr.world_to_pixel(world)
        assert abs(back.x.value - ((px + 0.5) / 4 - 0.5)) < 1e-6
        assert abs(back.y.value - ((py + 0.5) / 4 - 0.5)) < 1e-6
    assert out.meta["srsteps"] == 2 and out.meta["srsched"] == "dpm-solver++"
    assert out.meta["srmodel"] == "ldm-res" and out.meta["srseed"] == 3
    again = superresolve(lr, model=model, seed=3, steps=2, progress=False)
    np.testing.assert_array_equal(out.data, again.data)
    other = superresolve(lr, model=model, seed=4, steps=2, progress=False)
    assert not np.array_equal(out.data, other.data)


def test_untrained_registry_names_say_what_to_do(monkeypatch):
    # A trained model's name registers only when its weights exist, so an installation without them
    # must say what to do instead of listing a name that cannot load.
    from sunpy_superres.models import registry

    for name in ("ddpm-res", "ddpm"):
        if name in available_models():  # shipped (tests/models/test_embedded.py): hide its weights
            monkeypatch.delitem(registry._REGISTRY, name)
        assert name not in available_models()
        with pytest.raises(ValueError, match=f"'{name}'.*no trained weights.*model='/path/to/dir'"):
            load_model(name)


def test_missing_directory():
    with pytest.raises(ValueError, match="neither a registered name nor a model directory"):
        load_model("./no/such/model")


@pytest.mark.parametrize(
    ("name", "steps", "count", "first", "last"),
    [
        ("dpm-solver++", 20, 20, 700, 35),
        ("sde-dpm-solver++", 20, 20, 700, 35),
        ("ddim", 50, 50, 700, 14),
        ("ddpm", 1000, 701, 700, 0),
    ],
)
def test_sampler_start_timestep(name, steps, count, first, last):
    cfg = ConditionalDenoiser(
        block_out_channels=(8, 16), attention_levels=(False, True), norm_num_groups=4
    ).config
    full, late = make_scheduler(name, cfg), make_scheduler(name, cfg)
    assert set_sampler_timesteps(full, name, steps) == full.init_noise_sigma == 1.0
    sigma = set_sampler_timesteps(late, name, steps, start=700)
    t = late.timesteps.numpy()
    assert (len(t), t[0], t[-1]) == (count, first, last) and (np.diff(t) < 0).all()
    # The zero-target marginal of the forward process at 700: sqrt(1 - alpha_bar), alpha_bar = prod(1 - beta).
    alpha_bar = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:701])
    assert np.isclose(sigma, np.sqrt(1 - alpha_bar), rtol=1e-5) and 0.99 < sigma < 1
    if name == "ddim":  # diffusers' DDIM steps back by its own stride: it must be the timesteps' spacing
        assert cfg.num_train_timesteps // late.num_inference_steps == 14


def test_model_start_timestep(tmp_path):
    model = tiny_model("latent", True)
    assert model.start_timestep == 999 and model.provenance()["srtstart"] == 999
    late = model.configure_sampler(start_timestep=700)
    assert late.provenance() == {
        "srsteps": 4,
        "srsched": "dpm-solver++",
        "srtstart": 700,
        "srspace": "linear",
    }
    x = lr_input()
    assert not np.array_equal(late.predict(x, seeds=[1, 2]), model.predict(x, seeds=[1, 2]))
    np.testing.assert_array_equal(
        model.configure_sampler(start_timestep=999).predict(x, seeds=[1, 2]), model.predict(x, seeds=[1, 2])
    )
    late.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert loaded.start_timestep == 700
    np.testing.assert_array_equal(loaded.predict(x, seeds=[1, 2]), late.predict(x, seeds=[1, 2]))
    assert late.configure_sampler(sampler="ddpm").network_evaluations == 701
    for bad in (1000, -1, 2.5, True):
        with pytest.raises(ValueError, match="start_timestep must be an integer"):
            model.configure_sampler(start_timestep=bad)
    ddim = make_scheduler("ddim", model.denoiser.config)
    with pytest.raises(ValueError, match="DDIM cannot take 10 evenly spaced steps from timestep 490"):
        set_sampler_timesteps(ddim, "ddim", 10, start=490)


def _half_log_snr(scheduler, t):
    abar = scheduler.alphas_cumprod.numpy().astype(np.float64)[t]
    return 0.5 * np.log(abar / (1 - abar))


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize(("steps", "start"), [(12, 999), (10, 999), (6, 400), (2, 999)])
def test_log_snr_timesteps_are_uniform_in_log_snr(schedule, steps, start):
    cfg = ConditionalDenoiser(
        block_out_channels=(8, 16), attention_levels=(False, True), norm_num_groups=4, beta_schedule=schedule
    ).config
    sched = make_scheduler("dpm-solver++", cfg)
    ts = np.array(log_snr_timesteps(sched.alphas_cumprod.numpy(), steps, start))
    assert len(ts) == steps and ts[0] == start and (np.diff(ts) < 0).all() and ts[-1] >= 0
    lam = _half_log_snr(sched, ts[1:])
    if start == 999 and steps > 2:
        # after the first step, uniform in half log-SNR over (-4, 4) (one timestep of rounding)
        assert lam[0] == pytest.approx(max(-4.0, _half_log_snr(sched, 998)), abs=0.05)
        assert lam[-1] == pytest.approx(4.0, abs=0.2)
        gaps = np.diff(lam)
        assert gaps.max() - gaps.min() < 0.25 * gaps.mean()
    set_sampler_timesteps(sched, "dpm-solver++", steps, start=start, spacing="log-snr")
    np.testing.assert_array_equal(sched.timesteps.numpy(), ts)


def test_spacing_reaches_sampler_header_and_manifest(tmp_path, hmi_cutout):
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    model = tiny_model("latent", True)
    assert model.spacing == "linear"
    snr = superresolve(lr, model=model, seed=1, spacing="log-snr", progress=False)
    lin = superresolve(lr, model=model, seed=1, progress=False)
    assert snr.meta["srspace"] == "log-snr" and lin.meta["srspace"] == "linear"
    assert not np.array_equal(snr.data, lin.data)
    spaced = model.configure_sampler(spacing="log-snr")
    spaced.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert loaded.spacing == "log-snr"
    np.testing.assert_array_equal(superresolve(lr, model=loaded, seed=1, progress=False).data, snr.data)
    # DDPM and DDIM step through their own timesteps: another sampler falls back to linear spacing,
    # and asking for log-SNR with one of them is refused.
    assert spaced.configure_sampler(sampler="ddpm").spacing == "linear"
    with pytest.raises(ValueError, match="spacing 'log-snr' is for the DPM-Solver samplers"):
        model.configure_sampler(sampler="ddim", spacing="log-snr")
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        model.configure_sampler(spacing="karras")


@pytest.mark.parametrize(("space", "residual", "name"), VARIANTS)
def test_samples_of_a_tile_run_together_and_match_one_at_a_time(space, residual, name):
    """`predict_samples`: the samples of a tile share one encoding and are the samples of `predict`; on a
    CPU the sampler then runs them one at a time (a batch of samples costs more per sample there)."""
    model = tiny_model(space, residual, noise_conditioning=True).configure_sampler(steps=3)
    x = lr_input()
    seeds = [[1, 2, 3], [4, 5, 6]]
    sizes = []
    denoise = model._denoise
    model._denoise = lambda z, cond, t: sizes.append(z.shape[0]) or denoise(z, cond, t)
    calls = []
    encode = model.autoencoder.encode_mean if model.autoencoder is not None else None
    if encode is not None:
        model.autoencoder.encode_mean = lambda t: calls.append(t.shape[0]) or encode(t)
    together = model.predict_samples(x, seeds)
    assert together.shape == (2, 3, 40, 48) and together.dtype == np.float32
    if encode is not None:
        assert calls == [2]  # two tiles encoded once, not six
    assert sizes == [1] * 6 * 3  # six samples, three steps each, one sample per network call
    for i, row in enumerate(seeds):
        for j, s in enumerate(row):
            alone = model.predict(x[i : i + 1], seeds=[s])[0]
            # The two tiles' encoding in one batch changes only the float32 rounding (rule 7 of
            # docs/dev/design.rst).
            np.testing.assert_allclose(together[i, j], alone, rtol=0, atol=2e-5 * together.std())
    assert not np.allclose(
        together[0, 0], together[0, 1], atol=1e-2 * together.std()
    )  # other seed, other sample


@pytest.mark.parametrize("seeds", [[[1, 2], [3]], [[1], [2], [3]], [[], []]])
def test_predict_samples_refuses_seeds_that_do_not_fit(seeds):
    with pytest.raises(
        ValueError, match=r"^predict_samples takes one row of seeds per tile, all rows of one"
    ):
        tiny_model().predict_samples(lr_input(), seeds)


def test_a_negative_sign_negates_the_initial_noise(monkeypatch):
    """`predict_samples` signs: -1 runs the sampler from the negated noise of the sample's seed."""
    import sunpy_superres.models.diffusion as diffusion

    model = tiny_model(noise_conditioning=True).configure_sampler(steps=3)
    x = lr_input()[:1]
    pair = model.predict_samples(x, [[7, 7]], signs=[[1, -1]])[0]
    np.testing.assert_allclose(pair[0], model.predict(x, seeds=[7])[0], rtol=0, atol=2e-5 * pair.std())
    draw = diffusion.initial_noise
    monkeypatch.setattr(diffusion, "initial_noise", lambda *a, **k: -draw(*a, **k))
    negated = model.predict(x, seeds=[7])[0]
    np.testing.assert_allclose(pair[1], negated, rtol=0, atol=2e-5 * pair.std())
    assert not np.allclose(pair[0], pair[1], atol=1e-2 * pair.std())


@pytest.mark.parametrize("signs", [[[1]], [[1, 0]], [[1, -1], [1, 1]]])
def test_predict_samples_refuses_signs_that_do_not_fit(signs):
    with pytest.raises(ValueError, match=r"^predict_samples takes signs of 1 or -1"):
        tiny_model().predict_samples(lr_input()[:1], [[1, 2]], signs=signs)


@pytest.mark.parametrize("space", ["latent", "pixel"])
@pytest.mark.parametrize("sampler", ["dpm-solver++", "ddpm", "sde-dpm-solver++"])
def test_given_noise_is_the_seeds_draw(space, sampler):
    """`draw_noise` is what a seed draws: given as ``noise``, the samples are the seed's, to the bit, also
    for a sampler that draws again at every step (it draws from where the initial draw left off)."""
    model = tiny_model(space).configure_sampler(sampler=sampler, steps=3)
    x = lr_input()[:, :9, :11]  # padded to the network's multiple: the noise covers the padding too
    noise = model.draw_noise(5, x.shape[1:])
    grid = model.noise_grid
    assert grid == (1 if space == "latent" else 4)
    assert noise.shape[1] >= grid * 9 and noise.shape[2] >= grid * 11
    seeded = model.predict_samples(x[:1], [[5, 6]], signs=[[1, -1]])
    given = model.predict_samples(
        x[:1], [[5, 6]], signs=[[1, -1]], noise=[[noise, model.draw_noise(6, (9, 11))]]
    )
    np.testing.assert_array_equal(given, seeded)
    other = model.predict_samples(x[:1], [[5]], noise=[[model.draw_noise(7, (9, 11))]])
    assert not np.allclose(other[0, 0], seeded[0, 0], atol=1e-2 * seeded.std())


def test_a_latent_coarser_than_the_input_keeps_each_tiles_noise():
    """An autoencoder that downsamples 8x under a 4x model: latent points fall between input pixels,
    so a tiled map's tiles keep their own noise (no SharedNoise), and draw_noise still fits."""
    from sunpy_superres.superresolve import _shared_noise

    src = tiny_model("latent")
    model = DiffusionSuperResolution(
        src.denoiser, tiny_autoencoder(factor=8), tile_size=32, halo=4, device="cpu", steps=2
    )
    assert model.noise_grid is None
    x = lr_input()[:1, :9, :11]
    noise = model.draw_noise(3, x.shape[1:])
    np.testing.assert_array_equal(
        model.predict_samples(x, [[3]], noise=[[noise]]), model.predict_samples(x, [[3]])
    )
    assert _shared_noise(model, plan_tiles((40, 40), 32, 16), seed=1) is None
    assert _shared_noise(src, plan_tiles((40, 40), 32, 16), seed=1) is not None


def test_tiles_given_one_noise_where_they_overlap_agree_there():
    """Two overlapping tiles sampled from `SharedNoise` agree where neither is within its halo of an
    edge; from their own seeds' noise alone they differ there by about a sample's spread."""
    model = tiny_model("latent").configure_sampler(sampler="dpm-solver++", steps=4)
    x = (np.random.default_rng(0).standard_normal((32, 48)) * 0.1).astype(np.float32)
    tiles = [Tile(0, 0, 32, 32, (0, 0)), Tile(0, 16, 32, 32, (0, 1))]
    seeds = [11, 12]
    shared = SharedNoise(tiles, model.noise_grid, lambda t, n: model.draw_noise(seeds[t.index[1]], (32, 32)))
    gaps = []
    for noise in (None, [[[shared.noise(0, 0)]], [[shared.noise(1, 0)]]]):
        a, b = (
            model.predict_samples(x[t.slices][None], [[s]], noise=None if noise is None else noise[i])[0, 0]
            for i, (t, s) in enumerate(zip(tiles, seeds, strict=True))
        )
        # Input columns 20-28: at least the halo (4) from both tiles' inner edges.
        gaps.append(np.sqrt(np.mean((a[:, 80:112] - b[:, 16:48]) ** 2)) / a.std())
    assert gaps[0] > 0.8 and gaps[1] < 0.2, gaps


def test_noise_is_refused_by_a_model_that_draws_none_and_when_it_does_not_fit():
    x = lr_input()[:1]
    with pytest.raises(ValueError, match="draws no initial noise; leave noise out"):
        load_model("bicubic").predict_samples(x, [[1]], noise=np.zeros((1, 1, 1, 40, 48)))
    model = tiny_model()
    with pytest.raises(ValueError, match=r"predict_samples takes noise shaped \(1, 2, ...\)"):
        model.predict_samples(x, [[1, 2]], noise=[[model.draw_noise(1, x.shape[1:])]])
    with pytest.raises(ValueError, match="got initial noise of shape"):
        model.predict_samples(x, [[1]], noise=np.zeros((1, 1, 2, 3, 3), dtype=np.float32))


def _teacher_with_student(tmp_path, default_sampler="distilled"):
    """A tiny teacher directory that ships a (hand-made, untrained) trajectory student as its default."""
    teacher = tiny_model("latent", True, revision="tiny-teacher", sampler="dpm-solver++", steps=6)
    student = tiny_model(
        "latent",
        True,
        seed=1,
        revision="tiny-student",
        trajectory={"timesteps": [999, 600, 250, 40], "teacher": "tiny-teacher"},
    )
    teacher.student_dirs = {"distilled": student.save_pretrained(tmp_path / "student")}
    teacher.default_sampler = default_sampler
    return teacher.save_pretrained(tmp_path / "teacher")


def test_a_directory_can_serve_its_student_as_its_default_sampler(tmp_path):
    """A manifest's default_sampler: load_model gives the student, which hands other samplers back."""
    path = _teacher_with_student(tmp_path)
    assert json.loads((path / "superres.json").read_text())["default_sampler"] == "distilled"
    served = load_model(path, device="cpu")
    assert (served.revision, served.sampler, served.steps) == ("tiny-student", "distilled", 4)
    teacher = served.teacher
    assert (teacher.revision, teacher.sampler, teacher.steps, teacher.default_sampler) == (
        "tiny-teacher", "dpm-solver++", 6, "distilled"
    )  # fmt: skip
    # The teacher's own sampler with its own steps; any other with its default steps, or those asked.
    assert served.configure_sampler(sampler="dpm-solver++") is teacher
    ddim = served.configure_sampler(sampler="ddim", steps=3)
    assert (ddim.revision, ddim.sampler, ddim.steps) == ("tiny-teacher", "ddim", 3)
    assert ddim.denoiser is teacher.denoiser and served.configure_sampler(sampler="ddpm").steps == 1000
    # And back: the teacher's "distilled" is this same student (its networks loaded once).
    assert teacher.configure_sampler(sampler="distilled") is served
    # Runtime settings carry over either way.
    bf16 = served.configure_runtime(precision="bf16")
    assert bf16.configure_sampler(sampler="ddim").precision == "bf16"
    assert bf16.configure_sampler(sampler="ddim").configure_sampler(sampler="distilled").precision == "bf16"
    # The student's own settings are its own; the teacher's are refused with the way to them.
    for kwargs, asked in (
        ({"steps": 6}, "steps=6"),
        ({"spacing": "log-snr"}, "spacing='log-snr'"),
        ({"start_timestep": 700}, "start_timestep=700"),
    ):
        with pytest.raises(ValueError, match=rf"its 4-step student \(tiny-student\), which takes no {asked};.*"
                           r"sampler='dpm-solver\+\+' \(6 steps"):  # fmt: skip
            served.configure_sampler(**kwargs)
    assert served.configure_sampler(steps=4).revision == "tiny-student"
    # stored=True: as the directory stores it (what training and the tools start from).
    stored = load_model(path, device="cpu", stored=True)
    assert (stored.revision, stored.sampler) == ("tiny-teacher", "dpm-solver++")
    assert load_model(served, stored=True) is teacher and load_model(served) is served
    from sunpy_superres.training.common import load_reference

    assert load_reference(str(path))[1].revision == "tiny-teacher"  # fine-tuning, distillation
    # Written again, the teacher keeps its default sampler; the student alone is an ordinary model.
    again = load_model(teacher.save_pretrained(tmp_path / "again"), device="cpu")
    assert again.revision == "tiny-student" and again.teacher.revision == "tiny-teacher"
    alone = load_model(tmp_path / "student", device="cpu")
    assert alone.teacher is None and load_model(alone, stored=True) is alone


def test_a_default_sampler_without_its_student_is_refused(tmp_path):
    from sunpy_superres.models.manifest import rewrite_manifest

    path = _teacher_with_student(tmp_path)
    rewrite_manifest(path, {"default_sampler": "lcm"})
    with pytest.raises(ValueError, match=r"default_sampler 'lcm' is none of its students' \('distilled'\)"):
        load_model(path, device="cpu")


def test_superresolve_records_which_network_ran(tmp_path, hmi_cutout):
    """The header says which network sampled: the student by default, the teacher for its samplers."""
    path = _teacher_with_student(tmp_path)
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    fast = superresolve(lr, model=str(path), seed=0, calibrate=False, progress=False)
    slow = superresolve(lr, model=str(path), sampler="dpm-solver++", seed=0, calibrate=False, progress=False)
    assert (fast.meta["srsched"], fast.meta["srsteps"], fast.meta["srmodrev"]) == (
        "distilled",
        4,
        "tiny-student",
    )
    assert (slow.meta["srsched"], slow.meta["srsteps"], slow.meta["srmodrev"]) == (
        "dpm-solver++",
        6,
        "tiny-teacher",
    )
