"""Consistency distillation (issue 18): the loss, the task, and the "lcm" sampler of what it exports."""

import json

import astropy.units as u
import numpy as np
import pytest
import torch
from diffusers import LCMScheduler

from sunpy_superres import superresolve
from sunpy_superres.models import load_model
from sunpy_superres.models.diffusion import (
    CONSISTENCY,
    ConditionalDenoiser,
    consistency_boundary,
    consistency_loss,
    encode_pair,
    make_scheduler,
)
from sunpy_superres.training import train

from .test_loop import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)


def test_boundary_scalings_are_diffusers_lcm_ones():
    """c_skip and c_out against diffusers' own `LCMScheduler`, and the identity at the clean end."""
    sched = LCMScheduler(timestep_scaling=CONSISTENCY["timestep_scaling"])
    t = torch.tensor([0, 1, 19, 39, 500, 999])
    skip, out = consistency_boundary(t)
    for i, ti in enumerate(t.tolist()):
        ref_skip, ref_out = sched.get_scalings_for_boundary_condition_discrete(ti)
        assert skip[i].item() == pytest.approx(ref_skip, rel=1e-6, abs=1e-12)
        assert out[i].item() == pytest.approx(ref_out, rel=1e-6, abs=1e-12)
    skip, out = consistency_boundary(torch.tensor([-1]))
    assert (skip.item(), out.item()) == (1.0, 0.0)


def _pixel_denoiser(prediction_type, seed=0):
    torch.manual_seed(seed)
    return ConditionalDenoiser(
        space="pixel",
        residual=True,
        target_channels=1,
        cond_channels=1,
        target_scale=0.01,
        cond_scale=0.1,
        prediction_type=prediction_type,
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, False),
        norm_num_groups=4,
    )


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
def test_a_perfect_denoiser_is_a_perfect_consistency_model(prediction_type):
    """An oracle that knows the clean target maps every noisy point to it: the loss is ~0, a wrong student's is not."""
    den = _pixel_denoiser(prediction_type)
    cfg = den.config
    gen = torch.Generator().manual_seed(1)
    hr = torch.randn(4, 1, 16, 16, generator=gen) * 0.01
    lr_up = hr.reshape(4, 1, 4, 4, 4, 4).mean(dim=(3, 5)).repeat_interleave(4, -2).repeat_interleave(4, -1)
    _, _, x0 = encode_pair(den, None, lr_up, hr)
    abar = make_scheduler("ddpm", cfg).alphas_cumprod

    def oracle(x_t, cond, t):
        a = abar[t].view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        if prediction_type == "sample":
            return x0
        if prediction_type == "epsilon":
            return eps
        return a.sqrt() * eps - (1 - a).sqrt() * x0  # v

    loss = consistency_loss(oracle, oracle, cfg, None, abar, lr_up, hr, torch.Generator().manual_seed(2))
    assert loss.item() < 1e-4
    # A student whose output is its input is not consistent: its estimate of the clean end moves
    # along the teacher's trajectory. (A constant one would be, but at the clean end, which only the
    # first grid point sees: consistency alone does not say *which* end.)
    wrong = consistency_loss(
        lambda x, c, t: x, oracle, cfg, None, abar, lr_up, hr, torch.Generator().manual_seed(2)
    )
    assert wrong.item() > 0.01 * x0.abs().mean().item()


def test_the_loss_trains_the_student_and_not_the_teacher():
    den = _pixel_denoiser("v_prediction")
    teacher = _pixel_denoiser("v_prediction").requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    hr = torch.randn(2, 1, 16, 16, generator=gen) * 0.01
    lr_up = hr.reshape(2, 1, 4, 4, 4, 4).mean(dim=(3, 5)).repeat_interleave(4, -2).repeat_interleave(4, -1)
    abar = make_scheduler("ddpm", den.config).alphas_cumprod
    loss = consistency_loss(den, teacher, den.config, None, abar, lr_up, hr, torch.Generator().manual_seed(3))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    # The target network is the student unless another is given (the EMA, in training).
    args = (den.config, None, abar, lr_up, hr)
    same = consistency_loss(den, teacher, *args, torch.Generator().manual_seed(3), target_net=den)
    assert same.item() == loss.item()
    ema = _pixel_denoiser("v_prediction", seed=1)
    other = consistency_loss(den, teacher, *args, torch.Generator().manual_seed(3), target_net=ema)
    assert other.item() != loss.item()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir):  # noqa: F811
    """A tiny noise-conditioned space-to-depth ldm-res, trained 2 steps: the model to distil."""
    cfg = tiny_config(tmp_path_factory.mktemp("teacher") / "run", data_dir, steps=2, every=2)
    d = cfg.model.diffusion
    d.latent_space, d.attention_levels, d.noise_conditioning = "space-to-depth", [False, False], True
    d.prediction_type, d.beta_schedule = "v_prediction", "squaredcos_cap_v2"
    return train(cfg, progress=False)


def consistency_config(out, data_dir, teacher, steps=2):  # noqa: F811
    cfg = tiny_config(out, data_dir, steps=steps, every=2)
    cfg.name, cfg.model.kind = "tiny-lcm", "consistency"
    cfg.model.consistency.teacher = str(teacher)
    return cfg


def test_distillation_exports_a_few_step_sampler(tmp_path, data_dir, teacher, hmi_cutout):  # noqa: F811
    final = train(consistency_config(tmp_path / "lcm", data_dir, teacher), progress=False)
    record = json.loads((final / "training_config.json").read_text())
    teacher_model = load_model(teacher, device="cpu")
    assert record["teacher_revision"] == teacher_model.revision == "tiny-step2"
    student = load_model(final, device="cpu")
    assert (student.sampler, student.steps, student.name) == ("lcm", 4, "ldm-res")
    assert student.consistency == {**CONSISTENCY, "teacher": "tiny-step2"}
    assert student.noise_level == teacher_model.noise_level
    # The student started as the teacher and moved.
    a, b = student.denoiser.state_dict(), teacher_model.denoiser.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )
    out = superresolve(lr, model=student, seed=0, progress=False)
    assert out.data.shape == (96, 96) and np.isfinite(out.data).all()
    assert (out.meta["srsched"], out.meta["srsteps"], out.meta["srmodrev"]) == ("lcm", 4, "tiny-lcm-step2")
    one = superresolve(lr, model=student, seed=0, steps=1, progress=False)
    assert one.meta["srsteps"] == 1 and not np.allclose(one.data, out.data)
    again = superresolve(lr, model=student, seed=0, progress=False)
    np.testing.assert_array_equal(again.data, out.data)
    # A checkpoint exports while a run goes on (model selection), as the run exports it at that step.
    from sunpy_superres.training.loop import export_checkpoint, latest_checkpoint

    exported = load_model(
        export_checkpoint(latest_checkpoint(tmp_path / "lcm"), tmp_path / "x"), device="cpu"
    )
    assert exported.consistency == student.consistency and exported.revision == "tiny-lcm-step2"
    record = json.loads((tmp_path / "x" / "training_config.json").read_text())
    assert record["teacher_revision"] == "tiny-step2"
    a, b = exported.denoiser.state_dict(), student.denoiser.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lcm_sampler_only_for_a_student_and_a_student_only_with_it(teacher):
    model = load_model(teacher, device="cpu")
    with pytest.raises(
        ValueError, match=r"^the lcm sampler needs a consistency-distilled denoiser, and ldm-res"
    ):
        model.configure_sampler(sampler="lcm")
    student = model.configure_sampler(steps=2)
    student.consistency = dict(CONSISTENCY)
    with pytest.raises(ValueError, match=r"is a consistency-distilled denoiser: its sampler is 'lcm'$"):
        student.configure_sampler(sampler="dpm-solver++")
    student.sampler = "lcm"
    with pytest.raises(ValueError, match=r"^the lcm sampler takes 1 to 8 steps .* got 9$"):
        student.configure_sampler(steps=9)
    with pytest.raises(ValueError, match="the lcm sampler starts at the last timestep"):
        student.configure_sampler(start_timestep=500).predict(np.zeros((1, 8, 8), np.float32), seeds=[0])


def test_distillation_refuses_what_it_cannot_distil(tmp_path, data_dir, teacher):  # noqa: F811
    cfg = consistency_config(tmp_path / "none", data_dir, "")
    cfg.model.consistency.teacher = ""
    with pytest.raises(ValueError, match=r"set \[model.consistency\] teacher"):
        train(cfg, progress=False)
    student = train(consistency_config(tmp_path / "s", data_dir, teacher, steps=1), progress=False)
    with pytest.raises(ValueError, match="is not a diffusion model to distil"):
        train(consistency_config(tmp_path / "again", data_dir, student, steps=1), progress=False)
    with pytest.raises(ValueError, match="is not a diffusion model to distil"):
        train(consistency_config(tmp_path / "cnn", data_dir, "bicubic", steps=1), progress=False)


def test_a_teacher_runs_its_shipped_student_as_its_lcm_sampler(tmp_path, data_dir, teacher, hmi_cutout):  # noqa: F811
    from sunpy_superres.models.manifest import ChecksumError

    student_dir = train(consistency_config(tmp_path / "lcm", data_dir, teacher), progress=False)
    model = load_model(teacher, device="cpu")
    model.student_dirs = {"lcm": student_dir}
    shipped = model.save_pretrained(tmp_path / "shipped")  # what tools/attach_student.py makes
    manifest = json.loads((shipped / "superres.json").read_text())
    assert manifest["students"] == {"lcm": "lcm"} and "lcm/superres.json" in manifest["files"]
    loaded = load_model(shipped, device="cpu")
    assert loaded.sampler == "dpm-solver++" and loaded.revision == "tiny-step2"
    fast = loaded.configure_sampler(sampler="lcm", steps=2)
    assert (fast.sampler, fast.steps, fast.revision) == ("lcm", 2, "tiny-lcm-step2")
    assert fast.consistency["teacher"] == loaded.revision
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )
    out = superresolve(lr, model=str(shipped), sampler="lcm", seed=0, progress=False)
    assert (out.meta["srsched"], out.meta["srsteps"], out.meta["srmodrev"]) == ("lcm", 4, "tiny-lcm-step2")
    direct = superresolve(lr, model=str(student_dir), seed=0, progress=False)
    np.testing.assert_array_equal(out.data, direct.data)
    # The teacher's checksums cover the student's files, its manifest included.
    nested = shipped / "lcm" / "superres.json"
    nested.write_text(nested.read_text().replace("tiny-lcm-step2", "tampered"))
    with pytest.raises(ChecksumError, match="lcm/superres.json"):
        load_model(shipped, device="cpu")
