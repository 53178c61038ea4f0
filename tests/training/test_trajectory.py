"""Trajectory distillation (issue 18): the loss, the task, and the "distilled" sampler of what it exports."""

import json

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames

from sunpy_superres import superresolve
from sunpy_superres.metrics.spectra import radial_power_spectrum
from sunpy_superres.models import load_model
from sunpy_superres.models.diffusion import (
    CANCELLATION_EDGES_GAUSS,
    _x0_and_eps,
    band_log_power,
    block_cancellation,
    cancellation_loss,
    decode_sample,
    make_scheduler,
    set_sampler_timesteps,
    student_sample,
    teacher_states,
    trajectory_loss,
)
from sunpy_superres.training import train
from sunpy_superres.training.tasks.trajectory import student_timesteps

from .test_consistency import _pixel_denoiser, teacher  # noqa: F401  (teacher is a fixture)
from .test_loop import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)


def _batch(n=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    hr = torch.randn(n, 1, 16, 16, generator=gen) * 0.01
    return hr.reshape(n, 1, 4, 4, 4, 4).mean(dim=(3, 5)).repeat_interleave(4, -2).repeat_interleave(4, -1)


def _teacher_sampler(cfg, name, steps, spacing="linear"):
    """A teacher's sampler as trajectory_loss takes it, and that sampler's timesteps."""
    sched = make_scheduler(name, cfg)
    set_sampler_timesteps(sched, name, steps, spacing=spacing)
    sampler = {"name": name, "steps": steps, "start_timestep": None, "spacing": spacing}
    return sampler, [int(t) for t in sched.timesteps]


def test_the_distilled_sampler_takes_ddim_steps_to_the_clean_end():
    """The scheduler of "distilled" (first-order DPM-Solver++) against DDIM written out: x_s = a_s x0 + b_s eps."""
    den = _pixel_denoiser("v_prediction")
    abar = make_scheduler("ddpm", den.config).alphas_cumprod
    sched = make_scheduler("distilled", den.config)
    ts = [999, 700, 301, 40]
    sigma = set_sampler_timesteps(sched, "distilled", 4, timesteps=ts)
    assert [int(t) for t in sched.timesteps] == ts and sigma == pytest.approx(float((1 - abar[999]).sqrt()))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=gen)
    for i, t in enumerate(ts):
        out = torch.randn(2, 1, 8, 8, generator=gen)
        x0, eps = _x0_and_eps(out, x, abar[t], "v_prediction")
        a_s = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        expected = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
        x = sched.step(out, torch.tensor(t), x).prev_sample
        torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"takes the 4 timesteps \[999, 700, 301, 40\] its student"):
        set_sampler_timesteps(make_scheduler("distilled", den.config), "distilled", 3, timesteps=ts)
    with pytest.raises(ValueError, match="only the distilled sampler takes explicit timesteps"):
        set_sampler_timesteps(make_scheduler("ddim", den.config), "ddim", 4, timesteps=ts)


def test_a_student_on_every_teacher_step_of_ddim_is_already_exact():
    """With the teacher's own DDIM steps, the teacher itself lands on its trajectory: zero loss; with
    fewer, larger steps it does not, and the loss says so."""
    den = _pixel_denoiser("v_prediction")
    cfg = den.config
    abar = make_scheduler("ddpm", cfg).alphas_cumprod
    lr_up = _batch()
    sampler = {"name": "ddim", "steps": 8, "start_timestep": None, "spacing": "linear"}
    sched = make_scheduler("ddim", cfg)
    sigma = set_sampler_timesteps(sched, "ddim", 8)
    schedule = [int(t) for t in sched.timesteps]
    args = (den, den, cfg, None, abar, lr_up)
    exact = trajectory_loss(*args, torch.Generator().manual_seed(2), sampler=sampler, timesteps=schedule)
    assert exact.item() < 1e-8
    coarse = trajectory_loss(
        *args, torch.Generator().manual_seed(2), sampler=sampler, timesteps=schedule[::2]
    )
    assert coarse.item() > 1e-4
    # The states are the teacher sampler's: its sample is what the model's own sampling makes.
    noise = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    cond = lr_up / cfg.cond_scale
    states = teacher_states(den, cfg, cond, noise, sampler, schedule[::2])
    assert len(states) == 5 and torch.equal(states[0], noise * sigma)
    z = states[0]
    for t in sched.timesteps:
        z = sched.step(den(z, cond, t), t, z).prev_sample
    torch.testing.assert_close(states[-1], z)


def test_the_loss_trains_the_student_and_refuses_a_stochastic_teacher():
    den = _pixel_denoiser("v_prediction")
    teacher_net = _pixel_denoiser("v_prediction", seed=1).requires_grad_(False)
    abar = make_scheduler("ddpm", den.config).alphas_cumprod
    assert student_timesteps([999, 900, 700, 400, 100, 10], 3) == [999, 700, 100]
    sampler, schedule = _teacher_sampler(den.config, "dpm-solver++", 6, spacing="log-snr")
    ts = student_timesteps(schedule, 3)
    loss = trajectory_loss(
        den, teacher_net, den.config, None, abar, _batch(), torch.Generator().manual_seed(3),
        sampler=sampler, timesteps=ts,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    assert all(p.grad is None for p in teacher_net.parameters())
    with pytest.raises(ValueError, match="must be among the teacher's"):
        trajectory_loss(
            den, teacher_net, den.config, None, abar, _batch(), torch.Generator(), sampler=sampler,
            timesteps=[999, 500],
        )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"from a deterministic sampler .*; the teacher's is 'sde-dpm-solver\+\+'"
    ):
        trajectory_loss(
            den, teacher_net, den.config, None, abar, _batch(), torch.Generator(),
            sampler={**sampler, "name": "sde-dpm-solver++"}, timesteps=ts,
        )  # fmt: skip


def test_the_x0_weighting_weighs_every_steps_target_estimate_alike():
    """Both weightings against the per-step errors written out: "snr+1" divides by b_t^2, "x0" does not."""
    den = _pixel_denoiser("v_prediction")
    teacher_net = _pixel_denoiser("v_prediction", seed=1).requires_grad_(False)
    cfg = den.config
    abar = make_scheduler("ddpm", cfg).alphas_cumprod
    sampler, schedule = _teacher_sampler(cfg, "ddim", 8)
    ts = schedule[::3]
    lr_up = _batch()
    losses = {
        w: trajectory_loss(
            den, teacher_net, cfg, None, abar, lr_up, torch.Generator().manual_seed(4), sampler=sampler,
            timesteps=ts, weighting=w,
        ).item()
        for w in ("snr+1", "x0")
    }  # fmt: skip
    # The same draw, step by step: DDIM from the teacher's state at t lands on its state at s for x0_aim.
    gen = torch.Generator().manual_seed(4)
    cond = lr_up / cfg.cond_scale
    noise = torch.randn((3, 1, 16, 16), generator=gen)
    states = teacher_states(teacher_net, cfg, cond, noise, sampler, ts)
    per_x0, per_v = [], []
    for k, t in enumerate(ts):
        s = ts[k + 1] if k + 1 < len(ts) else None
        a_t, b_t = abar[t].sqrt(), (1 - abar[t]).sqrt()
        a_s, b_s = (abar[s].sqrt(), (1 - abar[s]).sqrt()) if s is not None else (1.0, 0.0)
        aim = (states[k + 1] - (b_s / b_t) * states[k]) / (a_s - b_s * a_t / b_t)
        x0, _ = _x0_and_eps(den(states[k], cond, torch.full((3,), t)), states[k], abar[t], "v_prediction")
        per_x0.append(((x0 - aim) ** 2).mean().item())
        per_v.append(per_x0[-1] / (1 - abar[t]).item())
    assert losses["x0"] == pytest.approx(np.mean(per_x0), rel=1e-4)
    assert losses["snr+1"] == pytest.approx(np.mean(per_v), rel=1e-4)
    assert losses["snr+1"] > losses["x0"] > 0  # 1 / b_t^2 > 1 at every step
    with pytest.raises(ValueError, match=r"unknown trajectory weighting 'eps'; use one of 'snr\+1', 'x0'"):
        trajectory_loss(
            den, teacher_net, cfg, None, abar, lr_up, torch.Generator(), sampler=sampler, timesteps=ts,
            weighting="eps",
        )  # fmt: skip


def _student_and_teacher():
    """Two tiny pixel denoisers, a student and a frozen teacher, with the teacher's sampler (DPM-Solver++
    in 8 log-SNR steps), 3 student timesteps among them and a batch: what the sample and spectral
    terms' tests share."""
    den = _pixel_denoiser("v_prediction")
    teacher_net = _pixel_denoiser("v_prediction", seed=1).requires_grad_(False)
    cfg = den.config
    abar = make_scheduler("ddpm", cfg).alphas_cumprod
    sampler, schedule = _teacher_sampler(cfg, "dpm-solver++", 8, spacing="log-snr")
    return den, teacher_net, cfg, abar, sampler, student_timesteps(schedule, 3), _batch()


def test_the_sample_term_is_the_students_own_sampler_against_the_teachers_sample():
    """student_sample is the "distilled" sampler run by its scheduler; the loss adds its squared error."""
    den, teacher_net, cfg, abar, sampler, ts, lr_up = _student_and_teacher()
    cond = lr_up / cfg.cond_scale
    # The student's own steps, each from where the previous one landed, as the sampler runs them.
    x = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(6))
    run = make_scheduler("distilled", cfg)
    set_sampler_timesteps(run, "distilled", 3, timesteps=ts)
    z = x
    for t in run.timesteps:
        z = run.step(den(z, cond, t), t, z).prev_sample
    with torch.no_grad():
        torch.testing.assert_close(student_sample(den, cond, x, abar, ts, cfg), z, rtol=1e-4, atol=1e-5)
    # The loss: the per-step objective plus the weighted squared error against the teacher's sample.
    args = (den, teacher_net, cfg, None, abar, lr_up)
    kwargs = {"sampler": sampler, "timesteps": ts, "weighting": "x0"}
    steps_only = trajectory_loss(*args, torch.Generator().manual_seed(7), **kwargs)
    both = trajectory_loss(*args, torch.Generator().manual_seed(7), sample_weight=0.5, **kwargs)
    noise = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(7))
    states = teacher_states(teacher_net, cfg, cond, noise, sampler, ts)
    with torch.no_grad():
        end = ((student_sample(den, cond, states[0], abar, ts, cfg) - states[-1]) ** 2).mean()
    assert end > 0
    assert both.item() == pytest.approx(steps_only.item() + 0.5 * end.item(), rel=1e-5)
    both.backward()
    assert all(p.grad is None for p in teacher_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    # The teacher against itself on its own steps: every term vanishes, the spectral one too.
    ddim, own = _teacher_sampler(cfg, "ddim", 8)
    exact = trajectory_loss(
        den, den, cfg, None, abar, lr_up, torch.Generator().manual_seed(2), sampler=ddim, timesteps=own,
        sample_weight=1.0, spectral_weight=1.0,
    )  # fmt: skip
    assert exact.item() < 1e-8
    with pytest.raises(ValueError, match="sample_weight must be 0 or more, got -1"):
        trajectory_loss(*args, torch.Generator(), sample_weight=-1, **kwargs)


@pytest.mark.parametrize("shape", [(64, 64), (63, 64)])
def test_band_log_power_is_the_metrics_radial_spectrum_over_the_added_scales(shape):
    """Against `radial_power_spectrum` (numpy, the whole plane) on the same rings: the same spectrum up
    to its normalisation (a constant in ln), over 1/8 < k <= 1/2 cycles per pixel for factor 4."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape).cumsum(0).cumsum(1) * 0.1 + rng.standard_normal(shape)
    header = sunpy.map.make_fitswcs_header(
        image,
        SkyCoord(
            0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective, obstime="2020-01-01", observer="earth"
        ),
        scale=[0.5, 0.5] * u.arcsec / u.pix,
    )
    _, power = radial_power_spectrum(sunpy.map.Map(image, header))
    n = min(shape)
    expected = np.log(power.value[n // 8 + 1 : n // 2 + 1])
    ours = band_log_power(torch.tensor(image)[None, None], 4)[0].numpy()
    assert ours.shape == expected.shape == (n // 2 - n // 8,)
    offset = ours - expected
    np.testing.assert_allclose(offset, offset[0], atol=1e-9)
    # Without the taper, white noise has the same power at every scale: ln P ~ const to its scatter.
    noise = torch.randn((16, 1, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    flat = band_log_power(noise, 4, window=False).exp().mean(0).log()
    assert flat.std() < 0.05 and abs(flat.mean() - np.log(shape[0] * shape[1])) < 0.05


def test_the_spectral_term_is_the_log_ratio_of_the_two_samples_spectra():
    """trajectory_loss adds spectral_weight x mean squared log ratio of the student's sample's band power
    to the teacher's; it vanishes for the teacher against itself and trains the student."""
    den, teacher_net, cfg, abar, sampler, ts, lr_up = _student_and_teacher()
    args = (den, teacher_net, cfg, None, abar, lr_up)
    kwargs = {"sampler": sampler, "timesteps": ts, "weighting": "x0"}
    steps_only = trajectory_loss(*args, torch.Generator().manual_seed(7), **kwargs)
    both = trajectory_loss(*args, torch.Generator().manual_seed(7), spectral_weight=0.5, **kwargs)
    cond = lr_up / cfg.cond_scale
    noise = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(7))
    states = teacher_states(teacher_net, cfg, cond, noise, sampler, ts)
    with torch.no_grad():
        sample = student_sample(den, cond, states[0], abar, ts, cfg)
        term = ((band_log_power(sample, 4) - band_log_power(states[-1], 4)) ** 2).mean()
    assert term > 0
    assert both.item() == pytest.approx(steps_only.item() + 0.5 * term.item(), rel=1e-5)
    both.backward()
    assert all(p.grad is None for p in teacher_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    # Another factor takes other scales: 1/4 < k <= 1/2 for factor 2. (The teacher against itself:
    # the sample term's test.)
    assert band_log_power(sample, 2).shape == (3, 16 // 2 - 16 // 4)
    with pytest.raises(ValueError, match="spectral_weight must be 0 or more, got -1"):
        trajectory_loss(*args, torch.Generator(), spectral_weight=-1, **kwargs)
    # A learned decoder's image of a residual alone is no residual image: refused.
    with pytest.raises(ValueError, match="needs a denoiser in pixel space or on the space-to-depth latent"):
        trajectory_loss(
            den, teacher_net, cfg, torch.nn.Identity(), abar, lr_up, torch.Generator(), spectral_weight=1,
            **kwargs,
        )  # fmt: skip


def _brute_cancellation(image, reference, edges):
    """`block_cancellation` written out block by block, in numpy (the independent implementation)."""
    out = np.zeros(len(edges))
    for y in range(0, image.shape[0], 4):
        for x in range(0, image.shape[1], 4):
            block = image[y : y + 4, x : x + 4]
            mean = abs(reference[y : y + 4, x : x + 4].mean()) * 3000
            bins = [k for k, edge in enumerate(edges) if mean >= edge]
            if bins:
                out[bins[-1]] += np.abs(block).sum() - abs(block.sum())
    return out


def test_block_cancellation_is_the_flux_that_cancels_inside_each_block_per_range_of_field():
    """Analytic blocks, then random images against the block-by-block numpy sum."""
    g = 1 / 3000  # one G in network units
    image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    image[0, 0, :4, :4] = 20 * g  # one sign: nothing cancels, mean 20 G
    image[0, 0, :4, 4:] = 20 * g
    image[0, 0, 0, 4] = -40 * g  # 15 x 20 - 40 = 260 G of 340 G: 80 G cancels, mean 16.25 G
    image[0, 0, 4:, :4] = 3 * g
    image[0, 0, 4, 0] = -30 * g  # mean 0.94 G: below 5 G, left out
    image[0, 0, 4:, 4:] = 400 * g
    image[0, 0, 4, 4] = -100 * g  # mean 368.75 G: 200 G cancels, in the open last range
    got = (block_cancellation(image, image, 4) * 3000).numpy()[0]
    np.testing.assert_allclose(got, [0, 80, 0, 0, 0, 200], atol=1e-9)
    # The reference, not the image, chooses the range: all four blocks at 60 G.
    got = (block_cancellation(image, torch.full_like(image, 60 * g), 4) * 3000).numpy()[0]
    np.testing.assert_allclose(got, [0, 0, 0, 80 + 200 + 3 * 15 + 30 - 15, 0, 0], atol=1e-9)
    rng = np.random.default_rng(3)
    images = rng.standard_normal((2, 1, 16, 24)) * 60 / 3000 + rng.standard_normal((2, 1, 16, 24)) ** 3 * 0.01
    reference = rng.standard_normal((2, 1, 16, 24)) * 80 / 3000
    got = block_cancellation(torch.tensor(images), torch.tensor(reference), 4).numpy()
    for i in range(2):
        np.testing.assert_allclose(
            got[i], _brute_cancellation(images[i, 0], reference[i, 0], CANCELLATION_EDGES_GAUSS), rtol=1e-12
        )
    # The loss: per range, the difference over that range's |block sums| of the truth plus 2 % of the
    # truth's unsigned flux, squared, summed over the ranges; mean over the images.
    truth = images[::-1].copy()
    expected = []
    for i in range(2):
        theirs = _brute_cancellation(truth[i, 0], reference[i, 0], CANCELLATION_EDGES_GAUSS)
        flux = np.array(
            [
                np.abs(truth[i, 0].reshape(4, 4, 6, 4).sum(axis=(1, 3)))[
                    _range_index(reference[i, 0]) == k
                ].sum()
                for k in range(len(CANCELLATION_EDGES_GAUSS))
            ]
        )
        scale = flux + 0.02 * np.abs(truth[i, 0]).sum()
        expected.append((((got[i] - theirs) / scale) ** 2).sum())
    loss = cancellation_loss(torch.tensor(images), torch.tensor(truth), torch.tensor(reference), 4)
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-12) and np.mean(expected) > 0
    assert cancellation_loss(torch.tensor(truth), torch.tensor(truth), torch.tensor(reference), 4).item() == 0


def _range_index(reference):
    """Each 4x4 block's range of CANCELLATION_EDGES_GAUSS by the |mean| of ``reference`` (-1: below all)."""
    means = np.abs(reference.reshape(reference.shape[0] // 4, 4, -1, 4).mean(axis=(1, 3))) * 3000
    return np.digitize(means, CANCELLATION_EDGES_GAUSS) - 1


def test_the_flux_term_holds_the_students_sample_to_the_truth():
    """trajectory_loss adds flux_weight x cancellation_loss of the student's decoded sample against hr;
    it vanishes when hr is that sample, trains the student only, and needs hr."""
    den, teacher_net, cfg, abar, sampler, ts, lr_up = _student_and_teacher()
    args = (den, teacher_net, cfg, None, abar, lr_up)
    kwargs = {"sampler": sampler, "timesteps": ts, "weighting": "x0"}
    cond = lr_up / cfg.cond_scale
    noise = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(7))
    states = teacher_states(teacher_net, cfg, cond, noise, sampler, ts)
    with torch.no_grad():
        image = decode_sample(den, None, student_sample(den, cond, states[0], abar, ts, cfg), lr_up)
    hr = _batch(seed=4) + torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(5)) * 0.02
    steps_only = trajectory_loss(*args, torch.Generator().manual_seed(7), **kwargs)
    both = trajectory_loss(*args, torch.Generator().manual_seed(7), hr=hr, flux_weight=0.5, **kwargs)
    term = cancellation_loss(image, hr, lr_up, 4)
    assert term > 0
    assert both.item() == pytest.approx(steps_only.item() + 0.5 * term.item(), rel=1e-5)
    both.backward()
    assert all(p.grad is None for p in teacher_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    itself = trajectory_loss(*args, torch.Generator().manual_seed(7), hr=image, flux_weight=0.5, **kwargs)
    assert itself.item() == pytest.approx(steps_only.item(), rel=1e-6)
    with pytest.raises(ValueError, match="flux_weight must be 0 or more, got -1"):
        trajectory_loss(*args, torch.Generator(), hr=hr, flux_weight=-1, **kwargs)
    with pytest.raises(ValueError, match="flux_weight holds the student's sample to the truth: give hr"):
        trajectory_loss(*args, torch.Generator(), flux_weight=1, **kwargs)


def trajectory_config(out, data_dir, teacher, steps=2, timesteps=None):  # noqa: F811
    cfg = tiny_config(out, data_dir, steps=steps, every=2)
    cfg.name, cfg.model.kind = "tiny-distilled", "trajectory"
    cfg.model.trajectory.teacher = str(teacher)
    if timesteps is not None:
        cfg.model.trajectory.timesteps = timesteps
    return cfg


def _lr(hmi_cutout):
    return hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )


def test_distillation_exports_the_distilled_sampler(tmp_path, data_dir, teacher, hmi_cutout):  # noqa: F811
    teacher_model = load_model(teacher, device="cpu").configure_sampler(sampler="dpm-solver++", steps=10)
    shipped_teacher = teacher_model.save_pretrained(tmp_path / "teacher")
    final = train(trajectory_config(tmp_path / "run", data_dir, shipped_teacher), progress=False)
    record = json.loads((final / "training_config.json").read_text())
    assert record["teacher_revision"] == teacher_model.revision == "tiny-step2"
    student = load_model(final, device="cpu")
    ts = student.trajectory["timesteps"]
    # The teacher's 10 DPM-Solver++ steps are spaced linearly from 999 (diffusers' "linspace").
    schedule = student_timesteps(np.linspace(999, 0, 11)[:-1].round().astype(int).tolist(), 4)
    assert (student.sampler, student.steps, ts) == ("distilled", 4, schedule)
    assert student.trajectory["teacher_sampler"] == {
        "name": "dpm-solver++", "steps": 10, "start_timestep": 999, "spacing": "linear"
    }  # fmt: skip
    assert student.noise_level == teacher_model.noise_level
    a, b = student.denoiser.state_dict(), teacher_model.denoiser.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # The sampler runs the student once per distilled step, at exactly those timesteps.
    seen = []
    forward = student.denoiser.forward
    student.denoiser.forward = lambda x, c, t: seen.append(int(t)) or forward(x, c, t)
    out = superresolve(_lr(hmi_cutout), model=student, seed=0, progress=False)
    del student.denoiser.forward
    assert seen == ts and out.data.shape == (96, 96) and np.isfinite(out.data).all()
    assert (out.meta["srsched"], out.meta["srsteps"], out.meta["srmodrev"]) == (
        "distilled",
        4,
        "tiny-distilled-step2",
    )
    with pytest.raises(ValueError, match=r"was distilled for 4 steps .*takes no other number; got 2$"):
        student.configure_sampler(steps=2)
    with pytest.raises(ValueError, match=r"is a trajectory-distilled denoiser: its sampler is 'distilled'$"):
        student.configure_sampler(sampler="dpm-solver++")
    with pytest.raises(ValueError, match=r"^the distilled sampler needs a trajectory-distilled denoiser"):
        teacher_model.configure_sampler(sampler="distilled")

    # Shipped inside its teacher (tools/attach_student.py), it is the teacher's "distilled" sampler.
    teacher_model.student_dirs = {"distilled": final}
    shipped = teacher_model.save_pretrained(tmp_path / "shipped")
    manifest = json.loads((shipped / "superres.json").read_text())
    assert (
        manifest["students"] == {"distilled": "distilled"} and "distilled/superres.json" in manifest["files"]
    )
    fast = superresolve(_lr(hmi_cutout), model=str(shipped), sampler="distilled", seed=0, progress=False)
    assert (fast.meta["srsched"], fast.meta["srsteps"]) == ("distilled", 4)
    np.testing.assert_array_equal(fast.data, out.data)
    with pytest.raises(ValueError, match=r"ships no student for the 'lcm' sampler; it ships 'distilled'"):
        load_model(shipped, device="cpu").student("lcm")


def test_a_student_keeps_its_teachers_regression(tmp_path, data_dir, teacher, hmi_cutout):  # noqa: F811
    from sunpy_superres.models.diffusion import DiffusionSuperResolution
    from sunpy_superres.models.progressive import ProgressiveNet

    base = load_model(teacher, device="cpu")
    den = base.denoiser
    den.register_to_config(residual_base="regression")
    torch.manual_seed(0)
    net = ProgressiveNet(channels=8, growth_rate=4, layers_per_block=2, blocks_per_level=(1, 1))
    model = DiffusionSuperResolution(
        den, base.autoencoder, revision="tiny-corr", sampler="dpm-solver++", steps=10, tile_size=32,
        halo=4, device="cpu", noise_level=base.noise_level, regression=net, regression_revision="tiny-prog",
    )  # fmt: skip
    shipped_teacher = model.save_pretrained(tmp_path / "teacher")
    final = train(trajectory_config(tmp_path / "run", data_dir, shipped_teacher), progress=False)
    student = load_model(final, device="cpu")
    assert student.regression_revision == "tiny-prog" and student.halo == model.halo == net.halo
    for k, v in net.state_dict().items():
        torch.testing.assert_close(student.regression.state_dict()[k], v, rtol=0, atol=0)
    out = superresolve(_lr(hmi_cutout), model=student, seed=0, progress=False)
    assert out.meta["srregrev"] == "tiny-prog" and np.isfinite(out.data).all()


def test_trajectory_distillation_refuses_what_it_cannot_distil(tmp_path, data_dir, teacher):  # noqa: F811
    cfg = trajectory_config(tmp_path / "none", data_dir, "")
    with pytest.raises(ValueError, match=r"set \[model.trajectory\] teacher"):
        train(cfg, progress=False)
    stochastic = load_model(teacher, device="cpu").configure_sampler(sampler="sde-dpm-solver++", steps=4)
    with pytest.raises(ValueError, match=r"samples with 'sde-dpm-solver\+\+', which is stochastic"):
        train(
            trajectory_config(tmp_path / "sde", data_dir, stochastic.save_pretrained(tmp_path / "t")),
            progress=False,
        )
    with pytest.raises(ValueError, match=r"timesteps \[999, 501\] must be among the teacher sampler's"):
        train(trajectory_config(tmp_path / "ts", data_dir, teacher, timesteps=[999, 501]), progress=False)
    student = train(trajectory_config(tmp_path / "s", data_dir, teacher, steps=1), progress=False)
    with pytest.raises(ValueError, match="is not a diffusion model to distil"):
        train(trajectory_config(tmp_path / "again", data_dir, student, steps=1), progress=False)


def test_noise_labels_are_drawn_over_the_range_the_teacher_can_be_asked_for(tmp_path, data_dir, teacher):  # noqa: F811
    from types import SimpleNamespace

    from sunpy_superres.training.tasks.base import Batch
    from sunpy_superres.training.tasks.trajectory import TrajectoryTask

    batch = Batch(torch.zeros(4000, 1, 4, 4), noise_level=torch.full((4000,), 3.5))
    drawn = TrajectoryTask._labels(
        SimpleNamespace(label_range=(1.5, 7.0)), batch, torch.Generator().manual_seed(0)
    )
    assert drawn.shape == (4000,) and 1.5 <= drawn.min() < 1.6 and 6.9 < drawn.max() <= 7.0
    assert abs(drawn.mean().item() - 4.25) < 0.1
    assert (
        TrajectoryTask._labels(SimpleNamespace(label_range=None), batch, torch.Generator())
        is batch.noise_level
    )
    cfg = trajectory_config(tmp_path / "bad", data_dir, teacher, steps=1)
    cfg.model.trajectory.noise_labels = [3.0]
    with pytest.raises(ValueError, match=r"noise_labels must be \[low, high\] in G, got \[3.0\]"):
        train(cfg, progress=False)


@pytest.mark.parametrize("timesteps", [[500, 100], [999, 100, 100], [999, -1], []])
def test_a_student_record_must_describe_a_sampler_from_the_last_timestep(timesteps):
    from sunpy_superres.models.diffusion import DiffusionSuperResolution

    with pytest.raises(ValueError, match="timesteps must fall strictly from 999 to 0 or above"):
        DiffusionSuperResolution(
            _pixel_denoiser("v_prediction"), device="cpu", trajectory={"timesteps": timesteps}
        )
    with pytest.raises(ValueError, match="trajectory needs a list 'timesteps'"):
        DiffusionSuperResolution(_pixel_denoiser("v_prediction"), device="cpu", trajectory={"steps": 4})


def test_a_student_continues_from_one_of_its_teacher_with_another_weighting(tmp_path, data_dir, teacher):  # noqa: F811
    first = train(trajectory_config(tmp_path / "first", data_dir, teacher, steps=1), progress=False)
    cfg = trajectory_config(tmp_path / "more", data_dir, teacher, steps=1)
    cfg.model.trajectory.init_from, cfg.model.trajectory.weighting = str(first), "x0"
    from accelerate import Accelerator

    from sunpy_superres.training.tasks.trajectory import TrajectoryTask

    task = TrajectoryTask(cfg, Accelerator(cpu=True), progress=False)
    start = task.build_network().state_dict()
    for k, v in load_model(first, device="cpu").denoiser.state_dict().items():
        torch.testing.assert_close(start[k], v.float(), rtol=0, atol=0)
    final = train(cfg, progress=False)
    record = json.loads((final / "training_config.json").read_text())
    assert record["init_from_revision"] == load_model(first, device="cpu").revision
    assert record["teacher_revision"] == load_model(teacher, device="cpu").revision
    assert (
        load_model(final, device="cpu").trajectory["timesteps"] == load_model(first).trajectory["timesteps"]
    )
    cfg = trajectory_config(tmp_path / "eps", data_dir, teacher, steps=1)
    cfg.model.trajectory.weighting = "eps"
    with pytest.raises(ValueError, match=r"weighting must be one of 'snr\+1', 'x0', got 'eps'"):
        train(cfg, progress=False)
    cfg = trajectory_config(tmp_path / "negative", data_dir, teacher, steps=1)
    cfg.model.trajectory.spectral_weight = -1.0
    with pytest.raises(ValueError, match=r"\[model.trajectory\] spectral_weight must be 0 or more, got -1.0"):
        train(cfg, progress=False)
    # The spectral term through the task, on the teacher's latent grid decoded: a step that trains.
    cfg = trajectory_config(tmp_path / "spectral", data_dir, teacher, steps=1)
    cfg.model.trajectory.spectral_weight = 0.5
    spectral = train(cfg, progress=False)
    losses = [json.loads(line)["loss"] for line in (spectral.parent / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0
    # The flux term through the task: each crop's truth and own level, a step that trains.
    cfg = trajectory_config(tmp_path / "flux", data_dir, teacher, steps=1)
    cfg.model.trajectory.flux_weight = 30.0
    flux = train(cfg, progress=False)
    losses = [json.loads(line)["loss"] for line in (flux.parent / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0
    cfg = trajectory_config(tmp_path / "labels", data_dir, teacher, steps=1)
    cfg.model.trajectory.flux_weight, cfg.model.trajectory.noise_labels = 1.0, [2.0, 6.0]
    with pytest.raises(ValueError, match="each crop takes its own noise level: leave noise_labels empty"):
        train(cfg, progress=False)
    cfg = trajectory_config(tmp_path / "bad", data_dir, teacher, steps=1)
    cfg.model.trajectory.init_from = str(teacher)
    with pytest.raises(ValueError, match="is not a trajectory-distilled student"):
        train(cfg, progress=False)
    fewer = load_model(first).trajectory["timesteps"][:2]
    cfg = trajectory_config(tmp_path / "other", data_dir, teacher, steps=1, timesteps=fewer)
    cfg.model.trajectory.init_from = str(first)
    with pytest.raises(
        ValueError,
        match=rf"for timesteps \[999, .*\]; this run distils 'tiny-step2' for \[999, {fewer[1]}\]$",
    ):
        train(cfg, progress=False)
