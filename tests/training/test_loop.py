"""The training loop: every variant trains on real HMI crops and serves superresolve; exact resume.

The data are the shipped HMI cut-outs, so these tests run without the full-disk files of ../shared."""

import copy
import dataclasses
import json
import shutil
import tomllib
import warnings

import astropy.units as u
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sunpy_superres import __version__, superresolve
from sunpy_superres.data import HMI_AR_CUTOUT, HMI_HELDOUT_CUTOUT
from sunpy_superres.training import TrainConfig, load_config, shipped_configs, train
from sunpy_superres.training.cli import main
from sunpy_superres.training.config import DataConfig, ModelConfig

from .resume_checks import checkpoint_step, copy_run, differing_tensors, logged_steps, perturb_checkpoint
from .toml_files import toml_text


def tiny_config(out, data_dir, space="latent", residual=True, steps=3, every=2, autoencoder=""):
    return TrainConfig(
        name="tiny",
        output_dir=str(out),
        batch_size=2,
        max_steps=steps,
        checkpoint_every=every,
        scale_batches=2,
        autoencoder_steps=2,
        data=DataConfig(data_dir=str(data_dir), crop_size=32, validation_dates=["2016-07-07"]),
        model=ModelConfig(
            diffusion=dict(
                space=space,
                residual=residual,
                block_out_channels=[8, 16],
                attention_levels=[False, True],
                attention_head_dim=8,
                norm_num_groups=4,
                layers_per_block=1,
                autoencoder_dir=autoencoder,
            ),
            autoencoder=dict(
                factor=4, latent_channels=2, base_channels=8, max_channels=16, norm_num_groups=4
            ),
            tile_size=32,
            halo=4,
        ),
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The shipped HMI cut-outs under JSOC-style names (the loop reads dates from names): 2011-12-17 to
    train on, and the held-out 2016-07-07 as the validation side of the date split."""
    d = tmp_path_factory.mktemp("hmi")
    shutil.copy(HMI_AR_CUTOUT, d / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits")
    shutil.copy(HMI_HELDOUT_CUTOUT, d / "hmi.M_720s.20160707_010000_TAI.magnetogram.fits")
    return d


@pytest.fixture(scope="module")
def trained_autoencoder(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ae")
    cfg = tiny_config(out, data_dir)
    cfg.model.kind = "autoencoder"
    return train(cfg, progress=False)


@pytest.mark.parametrize(
    ("space", "residual", "name"),
    [
        ("latent", True, "ldm-res"),
        ("latent", False, "ldm"),
        ("pixel", True, "ddpm-res"),
        ("pixel", False, "ddpm"),
    ],
)
def test_every_variant_trains_and_superresolves(
    tmp_path, data_dir, trained_autoencoder, hmi_cutout, space, residual, name
):
    ae = str(trained_autoencoder) if space == "latent" else ""
    final = train(tiny_config(tmp_path, data_dir, space, residual, autoencoder=ae), progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    manifest = json.loads((final / "superres.json").read_text())
    assert manifest["name"] == name and manifest["package_version"] == __version__
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )
    out = superresolve(lr, model=str(final), seed=0, steps=2, progress=False)
    assert out.data.shape == (96, 96) and np.isfinite(out.data).all()
    assert out.meta["srmodel"] == name
    centre = out.pixel_to_world(47.5 * u.pix, 47.5 * u.pix)
    assert centre.separation(lr.pixel_to_world(11.5 * u.pix, 11.5 * u.pix)) < 1 * u.mas
    assert u.allclose(out.scale.axis2, lr.scale.axis2 / 4)


def test_kill_and_resume_gives_identical_weights(tmp_path, data_dir, trained_autoencoder):
    ae = str(trained_autoencoder)

    def config(name):
        return tiny_config(tmp_path / name, data_dir, steps=5, autoencoder=ae)

    straight = train(config("a"), progress=False)
    # "Killed" during step 3: the checkpoint of step 2 survives, step 3's work is lost.
    assert train(config("b"), progress=False, stop_at_step=3) is None
    assert logged_steps(tmp_path / "b") == [1, 2, 3] and checkpoint_step(tmp_path / "b") == 2
    state = json.loads((tmp_path / "b" / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["step"] == 2 and state["package_version"] == __version__
    assert TrainConfig.from_dict(state["config"]) == config("b")
    # A copy of the killed run whose checkpoint has one weight tensor changed.
    copy_run(tmp_path / "b", tmp_path / "c")
    changed = perturb_checkpoint(tmp_path / "c", "model/diffusion_pytorch_model.safetensors")
    resumed = train(config("b"), progress=False)
    # Per-step seeding makes a run that starts again at step 0 end with the same weights as one that
    # resumes: the log shows which it was. Resumed: steps 3 to 5 again after the killed 1 to 3, not 1 to 5.
    assert logged_steps(tmp_path / "b") == [1, 2, 3] + [3, 4, 5]
    denoiser = "denoiser/diffusion_pytorch_model.safetensors"
    assert differing_tensors(straight / denoiser, resumed / denoiser) == []
    raw = "checkpoints/step-00000005/model/diffusion_pytorch_model.safetensors"
    assert differing_tensors(tmp_path / "a" / raw, tmp_path / "b" / raw) == []
    # The checkpoint's weights are what the run continues from: changed, they change the result.
    perturbed = train(config("c"), progress=False)
    assert logged_steps(tmp_path / "c") == [1, 2, 3] + [3, 4, 5]
    assert changed in differing_tensors(tmp_path / "a" / raw, tmp_path / "c" / raw)
    assert len(differing_tensors(straight / denoiser, perturbed / denoiser)) > 1  # spread by training


def test_checkpoint_of_another_config_is_refused(tmp_path, data_dir):
    train(tiny_config(tmp_path, data_dir, space="pixel", steps=2), progress=False)
    cfg = tiny_config(tmp_path, data_dir, space="pixel", steps=2)
    cfg.learning_rate = 1e-3
    with pytest.raises(ValueError, match="different config"):
        train(cfg, progress=False)


def test_a_finished_constant_rate_run_continues_when_made_longer(tmp_path, data_dir):
    """Raising max_steps continues a run at a constant learning rate, to the weights of one that had
    the longer length from the start; where the schedule depends on the length, it is refused."""
    straight = train(tiny_config(tmp_path / "a", data_dir, space="pixel", steps=3), progress=False)
    train(tiny_config(tmp_path / "b", data_dir, space="pixel", steps=2), progress=False)
    longer = train(tiny_config(tmp_path / "b", data_dir, space="pixel", steps=3), progress=False)
    assert logged_steps(tmp_path / "b") == [1, 2, 3]
    denoiser = "denoiser/diffusion_pytorch_model.safetensors"
    assert differing_tensors(straight / denoiser, longer / denoiser) == []
    cosine = tiny_config(tmp_path / "c", data_dir, space="pixel", steps=2)
    cosine.lr_schedule = "cosine"
    train(cosine, progress=False)
    cosine.max_steps = 3
    with pytest.raises(ValueError, match="different config"):
        train(cosine, progress=False)


def test_a_finetune_default_that_changed_does_not_block_resuming_a_pretraining(tmp_path, data_dir):
    """A release changed a [finetune] default; a pre-training checkpoint never reads that table."""
    from sunpy_superres.training.loop import _resumable

    train(tiny_config(tmp_path, data_dir, space="pixel", steps=2), progress=False)
    cfg = tiny_config(tmp_path, data_dir, space="pixel", steps=2)
    cfg.finetune.lora_rank += 4  # as if the checkpoint were written before the default changed
    assert train(cfg, progress=False).is_dir()  # resumed at step 2 of 2: exported, no "different config"
    # A fine-tune's own table still counts.
    a, b = copy.deepcopy(cfg), copy.deepcopy(cfg)
    a.finetune.base_model = b.finetune.base_model = "ldm-res"
    b.finetune.lora_rank += 1
    assert _resumable(a) != _resumable(b)


def test_shipped_configs():
    assert shipped_configs() == [
        "cpu",
        "ddpm-cpu",
        "ddpm-res-cpu",
        "enhance-cpu",
        "enhance-gpu",
        "finetune-cpu",
        "gpu-ldm-res",
        "ldm-res-corrdiff-cpu",
        "ldm-res-decoder-cpu",
        "ldm-res-distilled-cpu",
        "ldm-res-distilled-flux-cpu",
        "ldm-res-distilled-sample-cpu",
        "ldm-res-distilled-spectral-cpu",
        "ldm-res-distilled-x0-cpu",
        "ldm-res-ft256-anneal-cpu",
        "ldm-res-ft256-cpu",
        "ldm-res-lcm-cpu",
        "ldm-res-s2d-cpu",
        "ldm-res-s2d-long-cpu",
        "ldm-res-s2d-noise-cpu",
        "ldm-s2d-cpu",
        "paper-gpu",
        "progressive-cpu",
        "progressive-gpu",
        "progressive-regression-cont-cpu",
        "progressive-regression-cpu",
    ]
    s2d = load_config("ldm-res-s2d-cpu")
    assert (s2d.model.diffusion.latent_space, s2d.model.autoencoder.factor, s2d.data.validation_dates) == (
        "space-to-depth",
        4,
        ["2016-07-07"],
    )
    # The 2025 SHARP patches are the calibration set: never trained on.
    assert "2025" not in s2d.data.patch_pattern and "2012" in s2d.data.patch_pattern
    noise = load_config("ldm-res-s2d-noise-cpu")
    assert noise.model.diffusion.noise_conditioning and noise.data.noise_augment_gauss > 0
    assert noise.data.validation_dates == ["2016-07-07"] and "2025" not in noise.data.patch_pattern
    # The default's regression trains on from the embedded progressive, never on the held-out frame or
    # the calibration patches.
    reg = load_config("progressive-regression-cpu")
    assert (reg.model.progressive.init_from, reg.model.progressive.projected_loss) == ("progressive", True)
    assert reg.data.validation_dates == ["2016-07-07"] and "2025" not in reg.data.patch_pattern
    # Its continuation (the shipped student's regression) starts from that run's export, on the same data.
    cont = load_config("progressive-regression-cont-cpu")
    assert (
        cont.model.progressive.init_from == reg.output_dir + "/model"
        and cont.model.progressive.projected_loss
    )
    assert cont.to_dict()["data"] == reg.to_dict()["data"] and cont.output_dir != reg.output_dir
    # The few-step student of the default learns from the default's data.
    lcm = load_config("ldm-res-lcm-cpu")
    assert (lcm.model.kind, lcm.model.consistency.teacher) == ("consistency", "ldm-res")
    assert lcm.to_dict()["data"] == noise.to_dict()["data"]
    distilled = load_config("ldm-res-distilled-cpu")
    run_keys = (
        "name",
        "output_dir",
        "max_steps",
        "checkpoint_every",
        "keep_checkpoints",
        "time_limit_minutes",
    )
    assert (distilled.model.kind, distilled.model.trajectory.teacher) == ("trajectory", "ldm-res")
    assert distilled.to_dict()["data"] == noise.to_dict()["data"]
    # Its continuation with every step weighted alike changes only the weighting, the start and the run.
    x0, first = load_config("ldm-res-distilled-x0-cpu").to_dict(), distilled.to_dict()
    assert (x0["model"]["trajectory"].pop("weighting"), first["model"]["trajectory"].pop("weighting")) == (
        "x0",
        "snr+1",
    )
    # It starts from the first config's export.
    assert x0["model"]["trajectory"].pop("init_from") == f"{first['output_dir']}/model"
    first["model"]["trajectory"].pop("init_from")
    assert {k: v for k, v in x0.items() if k not in run_keys} == {
        k: v for k, v in first.items() if k not in run_keys
    }
    # The next continuation adds the student's own sample to the loss, at a lower learning rate, from
    # the previous config's export; nothing else changes.
    sample = load_config("ldm-res-distilled-sample-cpu").to_dict()
    x0 = load_config("ldm-res-distilled-x0-cpu").to_dict()
    assert sample["model"]["trajectory"].pop("sample_weight") == 1.0
    assert x0["model"]["trajectory"].pop("sample_weight") == 0.0
    assert sample["model"]["trajectory"].pop("init_from") == f"{x0['output_dir']}/model"
    x0["model"]["trajectory"].pop("init_from")
    assert (sample.pop("learning_rate"), x0.pop("learning_rate")) == (2e-5, 5e-5)
    assert {k: v for k, v in sample.items() if k not in run_keys} == {
        k: v for k, v in x0.items() if k not in run_keys
    }
    # The next adds the spectra of the two samples to the loss, from the shipped student.
    spectral = load_config("ldm-res-distilled-spectral-cpu").to_dict()
    sample = load_config("ldm-res-distilled-sample-cpu").to_dict()
    assert (
        spectral["model"]["trajectory"].pop("spectral_weight"),
        sample["model"]["trajectory"].pop("spectral_weight"),
    ) == (1.0, 0.0)
    assert spectral["model"]["trajectory"].pop("init_from") == "sunpy_superres/data/models/ldm-res/distilled"
    sample["model"]["trajectory"].pop("init_from")
    assert {k: v for k, v in spectral.items() if k not in run_keys} == {
        k: v for k, v in sample.items() if k not in run_keys
    }
    # The next holds the student's sample to the truth's cancelling flux, from the shipped student.
    flux = load_config("ldm-res-distilled-flux-cpu").to_dict()
    spectral = load_config("ldm-res-distilled-spectral-cpu").to_dict()
    assert (
        flux["model"]["trajectory"].pop("flux_weight"),
        spectral["model"]["trajectory"].pop("flux_weight"),
    ) == (
        3.0,
        0.0,
    )
    assert flux["model"]["trajectory"].pop("init_from") == "sunpy_superres/data/models/ldm-res/distilled"
    spectral["model"]["trajectory"].pop("init_from")
    assert {k: v for k, v in flux.items() if k not in run_keys} == {
        k: v for k, v in spectral.items() if k not in run_keys
    }
    # The default trained longer is its second run continued, nothing else changed.
    long, parent = load_config("ldm-res-s2d-long-cpu").to_dict(), noise.to_dict()
    assert long["model"]["diffusion"].pop("init_from") == "ldm-res"
    parent["model"]["diffusion"].pop("init_from")
    assert {k: v for k, v in long.items() if k not in run_keys} == {
        k: v for k, v in parent.items() if k not in run_keys
    }
    # The default fine-tuned for its posterior mean: 256x256 crops, half the disk crops uniform over the
    # disk; the held-out frame and the 2025 calibration patches stay out.
    ft = load_config("ldm-res-ft256-cpu")
    assert (ft.model.diffusion.init_from, ft.data.crop_size, ft.data.strong_field_fraction) == (
        "ldm-res",
        256,
        0.5,
    )
    assert ft.data.validation_dates == ["2016-07-07"] and "2025" not in ft.data.patch_pattern
    assert ft.to_dict()["model"]["diffusion"] == {
        **noise.to_dict()["model"]["diffusion"],
        "init_from": "ldm-res",
    }
    # Its annealing continues the same run; only the learning rate's course differs.
    anneal, ft_d = load_config("ldm-res-ft256-anneal-cpu").to_dict(), ft.to_dict()
    assert (anneal["lr_schedule"], anneal["learning_rate"]) == ("cosine", ft.learning_rate)
    schedule_keys = run_keys + ("lr_schedule", "warmup_steps")
    assert {k: v for k, v in anneal.items() if k not in schedule_keys} == {
        k: v for k, v in ft_d.items() if k not in schedule_keys
    }
    # The residual taken to progressive: the annealing's recipe at a higher rate, from the default.
    corr = load_config("ldm-res-corrdiff-cpu").to_dict()
    d = corr["model"]["diffusion"]
    assert (d.pop("residual_base"), d.pop("regression")) == ("regression", "progressive")
    d = anneal["model"]["diffusion"]
    assert (d.pop("residual_base"), d.pop("regression")) == ("lr", "")
    assert (corr["lr_schedule"], corr["learning_rate"]) == ("cosine", 1e-4)
    assert {k: v for k, v in corr.items() if k not in (*run_keys, "learning_rate", "keep_checkpoints")} == {
        k: v for k, v in anneal.items() if k not in (*run_keys, "learning_rate", "keep_checkpoints")
    }
    # The paper's comparison models share the default's recipe; only what the comparison is about
    # differs (space, residual, and the U-Net levels a pixel-space model needs at 0.5" and 1").
    recipe = noise.to_dict()
    for name, space, residual in [
        ("ldm-s2d-cpu", "latent", False),
        ("ddpm-res-cpu", "pixel", True),
        ("ddpm-cpu", "pixel", False),
    ]:
        cfg = load_config(name)
        d = cfg.model.diffusion
        assert (d.space, d.residual, d.noise_conditioning) == (space, residual, True)
        other = cfg.to_dict()
        assert other["data"] == recipe["data"]
        same = {k for k in recipe if not isinstance(recipe[k], dict)} - {
            "name",
            "output_dir",
            "learning_rate",
            "max_steps",
            "time_limit_minutes",
        }
        assert {k: other[k] for k in same} == {k: recipe[k] for k in same}
        assert other["learning_rate"] == s2d.learning_rate
        differs = {
            f"{table}.{k}"
            for table in ("diffusion", "autoencoder")
            for k in recipe["model"][table]
            if other["model"][table][k] != recipe["model"][table][k]
        }
        assert {k: other["model"][k] for k in ("kind", "tile_size", "halo")} == {
            k: recipe["model"][k] for k in ("kind", "tile_size", "halo")
        }
        allowed = {"diffusion.residual", "diffusion.init_from"} | (
            {
                "diffusion.space",
                "diffusion.block_out_channels",
                "diffusion.attention_levels",
                "diffusion.latent_space",
                "autoencoder.factor",
            }
            if space == "pixel"
            else set()
        )
        assert differs <= allowed, differs
    decoder = load_config("ldm-res-decoder-cpu")
    assert decoder.model.kind == "decoder" and decoder.model.decoder.base == "ldm-res"
    paper = load_config("paper-gpu")
    assert (paper.data.crop_size, paper.model.diffusion.block_out_channels[0], paper.epochs) == (
        1024,
        128,
        30,
    )
    assert (paper.batch_size, paper.learning_rate, paper.model.diffusion.prediction_type) == (
        4,
        3e-4,
        "epsilon",
    )
    assert any(paper.model.diffusion.attention_levels) and not paper.model.diffusion.attention_levels[0]
    assert load_config("cpu").model.diffusion.space == "latent"
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"model": {"chanels": 3}})  # codespell:ignore chanels
    with pytest.raises(
        FileNotFoundError, match="shipped: cpu, ddpm-cpu, ddpm-res-cpu, enhance-cpu, enhance-gpu"
    ):
        load_config("nonexistent")


# The [model] table of configs/ldm-res-s2d-noise-cpu.toml as it was before the per-kind tables.
FLAT_MODEL = """
[model]
kind = "diffusion"
init_from = "runs/cpu-ldm-res-s2d/export-step-10600"
noise_conditioning = true
space = "latent"
residual = true
latent_space = "space-to-depth"
ae_factor = 4
prediction_type = "v_prediction"
beta_schedule = "squaredcos_cap_v2"
block_out_channels = [48, 96, 128, 128]
layers_per_block = 1
attention_levels = [false, false, false, false]
norm_num_groups = 16
target_scale = 0.0
cond_scale = 0.0
tile_size = 256
halo = 8
"""


def test_flat_model_keys_of_earlier_configs_still_load(tmp_path):
    shipped = load_config("ldm-res-s2d-noise-cpu")
    text = toml_text({k: v for k, v in shipped.to_dict().items() if k != "model"}) + FLAT_MODEL
    (tmp_path / "old.toml").write_text(text)
    # A config file is told where its keys went ...
    with pytest.warns(FutureWarning, match=r"ae_factor -> \[model.autoencoder\] factor"):
        assert load_config(tmp_path / "old.toml") == shipped
    # ... a checkpoint's record, which nobody edits, is read silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainConfig.from_dict(tomllib.loads(text)) == shipped
    with pytest.raises(ValueError, match="same setting"):
        TrainConfig.from_dict({"model": {"ae_factor": 4, "autoencoder": {"factor": 4}}})
    # The old "autoencoder" key was the trained autoencoder's directory.
    old = TrainConfig.from_dict({"model": {"autoencoder": "runs/ae/model", "latent_channels": 8}})
    assert (
        old.model.diffusion.autoencoder_dir == "runs/ae/model" and old.model.autoencoder.latent_channels == 8
    )
    # Scripts written for the flat layout still run, told where the keys went.
    with pytest.warns(FutureWarning, match=r"ae_factor -> \[model.autoencoder\] factor"):
        model = ModelConfig(kind="enhance", ae_factor=4, cnn_channels=8)
    assert (model.autoencoder.factor, model.enhance.channels, model.progressive.channels) == (4, 8, 8)
    with pytest.warns(FutureWarning, match=r"enhance_batch_norm -> \[model.enhance\] batch_norm"):
        model.enhance_batch_norm = False
    with pytest.warns(FutureWarning, match=r"cnn_channels -> \[model.enhance\] channels"):
        assert model.cnn_channels == 8 and not model.enhance.batch_norm
    with pytest.raises(AttributeError, match="no attribute 'chanels'"):
        model.chanels  # noqa: B018  # codespell:ignore chanels


def test_model_config_takes_its_tables_as_objects_and_is_replaceable():
    enhance = type(ModelConfig().enhance)(channels=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ModelConfig(kind="enhance", enhance=enhance)
        assert model.enhance.channels == 32
        assert dataclasses.replace(model, tile_size=128).enhance.channels == 32
    # A string set as "autoencoder" is the old key, the trained autoencoder's directory: it goes there.
    with pytest.warns(FutureWarning, match=r"autoencoder -> \[model.diffusion\] autoencoder_dir"):
        model.autoencoder = "runs/ae/model"
    assert model.diffusion.autoencoder_dir == "runs/ae/model" and model.autoencoder.factor > 0


def test_cli(tmp_path, data_dir, capsys):
    cfg = tiny_config(tmp_path / "run", data_dir, space="pixel", steps=2)
    toml = tmp_path / "tiny.toml"
    toml.write_text(toml_text(cfg.to_dict()))
    assert main([str(toml), "--no-progress", "--max-steps", "1"]) == 0
    assert "model written to" in capsys.readouterr().out
    assert (tmp_path / "run" / "model" / "superres.json").is_file()


def test_time_limit_exports_and_resumes(tmp_path, data_dir):
    cfg = tiny_config(tmp_path, data_dir, space="pixel", steps=4, every=10)
    cfg.time_limit_minutes = 1e-9  # reached after the first step
    with pytest.warns(UserWarning, match="time limit of .* reached after step 1 of 4"):
        final = train(cfg, progress=False)
    assert json.loads((final / "training_config.json").read_text())["step"] == 1
    assert (tmp_path / "checkpoints" / "step-00000001" / "state.json").is_file()
    # A time limit is not part of what a checkpoint must match: lifted, the run goes on to step 4.
    cfg.time_limit_minutes = 0.0
    final = train(cfg, progress=False)
    assert json.loads((final / "training_config.json").read_text())["step"] == 4
    log = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_learning_rate_schedule_is_diffusers_and_resumes_exactly(tmp_path, data_dir):
    """Cosine decay after a linear warm-up, a function of the step alone: a killed and resumed run
    keeps to it and ends with the weights of one that never stopped."""
    import math

    def config(name, schedule="cosine"):
        cfg = tiny_config(tmp_path / name, data_dir, space="pixel", steps=5, every=2)
        cfg.lr_schedule, cfg.warmup_steps, cfg.learning_rate = schedule, 2, 1e-3
        return cfg

    straight = train(config("a"), progress=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    # Warm-up from 0 over steps 0 and 1, then half a cosine over the 3 steps left (written out here,
    # not read from diffusers).
    expected = [0.0, 0.5e-3] + [0.5e-3 * (1 + math.cos(math.pi * k / 3)) for k in range(3)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-15)
    assert train(config("b"), progress=False, stop_at_step=3) is None
    resumed = train(config("b"), progress=False)
    assert logged_steps(tmp_path / "b") == [1, 2, 3] + [3, 4, 5]
    rates_b = [json.loads(line)["lr"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert rates_b == rates[:3] + rates[2:]
    denoiser = "denoiser/diffusion_pytorch_model.safetensors"
    assert differing_tensors(straight / denoiser, resumed / denoiser) == []
    # The rate is what the optimizer used: the constant default ends elsewhere.
    constant = train(config("c", "constant"), progress=False)
    assert differing_tensors(straight / denoiser, constant / denoiser) != []


def test_unknown_learning_rate_schedule_is_refused(tmp_path, data_dir):
    cfg = tiny_config(tmp_path, data_dir, space="pixel", steps=2)
    with pytest.raises(ValueError, match="lr_schedule must be one of 'constant', 'cosine', 'linear'"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_schedule": "cosin"})
    cfg.lr_schedule = "cosin"  # built directly, not read: the loop refuses it before any work
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        train(cfg, progress=False)
    assert not (tmp_path / "log.jsonl").exists()
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_schedule": "linear", "warmup_steps": -1})


def test_decoder_finetune_keeps_encoder_and_denoiser(tmp_path, data_dir, trained_autoencoder, hmi_cutout):
    base = train(
        tiny_config(tmp_path / "base", data_dir, steps=2, autoencoder=str(trained_autoencoder)),
        progress=False,
    )
    cfg = tiny_config(tmp_path / "dec", data_dir, steps=3, every=2)
    cfg.model.kind, cfg.model.decoder.base = "decoder", str(base)
    cfg.model.autoencoder.texture_weight = 0.5
    final = train(cfg, progress=False)
    manifest = json.loads((final / "superres.json").read_text())
    assert manifest["name"] == "ldm-res" and manifest["revision"] == "tiny-step3"
    assert manifest["inference"] == json.loads((base / "superres.json").read_text())["inference"]
    # Denoiser and encoder are bit for bit the base's; the decoder moved.
    old, new = (load_file(d / "autoencoder" / "diffusion_pytorch_model.safetensors") for d in (base, final))
    assert old.keys() == new.keys()
    frozen = [k for k in old if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    den_old, den_new = (
        load_file(d / "denoiser" / "diffusion_pytorch_model.safetensors") for d in (base, final)
    )
    assert all(torch.equal(den_old[k], den_new[k]) for k in den_old)
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[15, 15] * u.pix
    )
    out = superresolve(lr, model=str(final), seed=0, steps=2, progress=False)
    assert out.data.shape == (64, 64) and np.isfinite(out.data).all()
    # A second run of the same config resumes from its final checkpoint and does no more steps.
    assert train(cfg, progress=False) == final
    steps = [json.loads(line)["step"] for line in (tmp_path / "dec" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_decoder_finetune_needs_a_latent_base(tmp_path, data_dir):
    with pytest.raises(ValueError, match="set \\[model.decoder\\] base"):
        TrainConfig.from_dict({"model": {"kind": "decoder"}})
    pixel = train(tiny_config(tmp_path / "pix", data_dir, space="pixel", steps=1), progress=False)
    cfg = tiny_config(tmp_path / "dec", data_dir, steps=1)
    cfg.model.kind, cfg.model.decoder.base = "decoder", str(pixel)
    with pytest.raises(ValueError, match="not a latent diffusion model"):
        train(cfg, progress=False)


def test_init_from_continues_a_trained_denoiser(tmp_path, data_dir, trained_autoencoder):
    base = train(
        tiny_config(tmp_path / "base", data_dir, steps=2, autoencoder=str(trained_autoencoder)),
        progress=False,
    )
    cfg = tiny_config(tmp_path / "more", data_dir, steps=2)
    cfg.model.diffusion.init_from = str(base)
    cfg.learning_rate = 0.0  # no update: the EMA export must then be the base denoiser itself
    final = train(cfg, progress=False)
    record = json.loads((final / "training_config.json").read_text())
    assert record["init_from_revision"] == "tiny-step2" and record["step"] == 2
    for part in ("denoiser", "autoencoder"):
        old, new = (load_file(d / part / "diffusion_pytorch_model.safetensors") for d in (base, final))
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    cfg = tiny_config(tmp_path / "pixel", data_dir, space="pixel", steps=1)
    cfg.model.diffusion.init_from = str(base)
    with pytest.raises(ValueError, match="latent-space model with residual=True"):
        train(cfg, progress=False)


def test_a_checkpoint_exported_mid_run_names_the_weights_the_run_started_from(tmp_path, data_dir):
    # init_from may be a registry name that means other weights by the time a checkpoint is exported:
    # the checkpoint keeps the revision the run started from, and the export records it.
    from sunpy_superres.training.loop import export_checkpoint, latest_checkpoint

    def s2d(cfg):
        d = cfg.model.diffusion
        d.latent_space, d.attention_levels = "space-to-depth", [False, False]
        return cfg

    base = train(s2d(tiny_config(tmp_path / "base", data_dir, steps=2)), progress=False)
    cfg = s2d(tiny_config(tmp_path / "more", data_dir, steps=2, every=1))
    cfg.model.diffusion.init_from = str(base)
    train(cfg, progress=False)
    checkpoint = latest_checkpoint(tmp_path / "more")
    assert json.loads((checkpoint / "state.json").read_text())["provenance"] == {
        "init_from_revision": "tiny-step2"
    }
    exported = export_checkpoint(checkpoint, tmp_path / "exported")
    record = json.loads((exported / "training_config.json").read_text())
    assert record["init_from_revision"] == "tiny-step2" and record["step"] == 2


def test_space_to_depth_latent_trains_without_an_autoencoder_stage(tmp_path, data_dir, hmi_cutout):
    from sunpy_superres.models import load_model
    from sunpy_superres.models.spacetodepth import SpaceToDepth
    from sunpy_superres.training.loop import export_checkpoint, latest_checkpoint

    cfg = tiny_config(tmp_path / "run", data_dir, steps=4, every=2)
    d = cfg.model.diffusion
    d.latent_space, d.attention_levels = "space-to-depth", [False, False]
    d.prediction_type, d.beta_schedule = "v_prediction", "squaredcos_cap_v2"
    final = train(cfg, progress=False)
    assert not (tmp_path / "run" / "autoencoder").exists()
    model = load_model(final, device="cpu")
    assert isinstance(model.autoencoder, SpaceToDepth) and model.name == "ldm-res"
    den = model.denoiser.config
    assert (den.target_channels, den.cond_channels, den.beta_schedule) == (16, 16, "squaredcos_cap_v2")
    # The target scale is the residual's: HR - LR of real crops, a few tens of G.
    assert 0.002 < den.target_scale < 0.05
    # A checkpoint exported while a run goes on is what the run exports at that step.
    exported = export_checkpoint(latest_checkpoint(tmp_path / "run"), tmp_path / "exported")
    a = load_file(final / "denoiser" / "diffusion_pytorch_model.safetensors")
    b = load_file(exported / "denoiser" / "diffusion_pytorch_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert load_model(exported, device="cpu").revision == "tiny-step4"
    with pytest.raises(FileExistsError):
        export_checkpoint(latest_checkpoint(tmp_path / "run"), tmp_path / "exported")
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )
    out = superresolve(lr, model=str(final), seed=0, steps=2, progress=False)
    assert out.data.shape == (96, 96) and np.isfinite(out.data).all()


def test_a_residual_to_a_regression_trains_new_or_from_a_model_to_the_input(tmp_path, data_dir, hmi_cutout):
    from sunpy_superres.models import load_model
    from sunpy_superres.models.progressive import ProgressiveNet, ProgressiveSuperResolution

    torch.manual_seed(0)
    net = ProgressiveNet(channels=8, growth_rate=4, layers_per_block=2, blocks_per_level=(1, 1))
    ProgressiveSuperResolution(net, revision="tiny-prog", tile_size=32, device="cpu").save_pretrained(
        tmp_path / "prog"
    )

    def s2d(cfg):
        d = cfg.model.diffusion
        d.latent_space, d.attention_levels = "space-to-depth", [False, False]
        return cfg

    base = train(s2d(tiny_config(tmp_path / "base", data_dir, steps=2)), progress=False)
    cfg = s2d(tiny_config(tmp_path / "more", data_dir, steps=2))
    d = cfg.model.diffusion
    d.init_from, d.residual_base, d.regression = str(base), "regression", str(tmp_path / "prog")
    cfg.learning_rate = 0.0  # no update: the export is the base denoiser with the new residual
    final = train(cfg, progress=False)
    record = json.loads((final / "training_config.json").read_text())
    assert (record["init_from_revision"], record["regression_revision"]) == ("tiny-step2", "tiny-prog")
    old, new = (load_model(p, device="cpu") for p in (base, final))
    assert new.denoiser.config.residual_base == "regression" and new.regression_revision == "tiny-prog"
    # The target scale is measured anew: the residual to the projected regression is the smaller.
    assert 0 < new.denoiser.config.target_scale < old.denoiser.config.target_scale
    assert new.denoiser.config.cond_scale == old.denoiser.config.cond_scale
    a, b = (load_file(p / "denoiser" / "diffusion_pytorch_model.safetensors") for p in (base, final))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(new.regression.state_dict()[k], v, rtol=0, atol=0)
    lr = hmi_cutout.superpixel((4, 4) * u.pix, func=np.mean).submap(
        [0, 0] * u.pix, top_right=[23, 23] * u.pix
    )
    out = superresolve(lr, model=str(final), seed=0, steps=2, progress=False)
    assert out.data.shape == (96, 96) and np.isfinite(out.data).all() and out.meta["srregrev"] == "tiny-prog"
    # A new denoiser on the regression's residual; its checkpoint exports with the regression.
    from sunpy_superres.training.loop import export_checkpoint, latest_checkpoint

    cfg = s2d(tiny_config(tmp_path / "new", data_dir, steps=2, every=1))
    cfg.model.diffusion.residual_base, cfg.model.diffusion.regression = "regression", str(tmp_path / "prog")
    train(cfg, progress=False)
    exported = load_model(
        export_checkpoint(latest_checkpoint(tmp_path / "new"), tmp_path / "exp"), device="cpu"
    )
    assert exported.denoiser.config.residual_base == "regression" and exported.regression is not None


def test_regression_and_residual_base_go_together():
    with pytest.raises(ValueError, match='set residual_base = "regression" as well'):
        TrainConfig.from_dict({"model": {"diffusion": {"regression": "progressive"}}})
    with pytest.raises(ValueError, match='set regression to one, e.g. "progressive"'):
        TrainConfig.from_dict({"model": {"diffusion": {"residual_base": "regression"}}})


def test_unknown_latent_space_refused():
    with pytest.raises(ValueError, match="latent_space must be one of"):
        TrainConfig.from_dict({"model": {"latent_space": "wavelet"}})
