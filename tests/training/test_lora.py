"""LoRA fine-tuning on MDI/HMI pairs (paper section 7): adapter, merge, frozen base, loop, CLI, resume."""

import shutil

import astropy.units as u
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sunpy_superres import superresolve
from sunpy_superres.data import HMI_AR_CUTOUT
from sunpy_superres.models import load_model
from sunpy_superres.models.diffusion import DiffusionSuperResolution
from sunpy_superres.models.hub import ChecksumError
from sunpy_superres.training import TrainConfig, train
from sunpy_superres.training.cli import main
from sunpy_superres.training.config import DataConfig, FinetuneConfig, ModelConfig
from sunpy_superres.training.lora import add_lora, load_adapter, lora_parameter_counts, verify_adapter

from ..models.tiny import tiny_model
from .resume_checks import checkpoint_step, copy_run, differing_tensors, logged_steps, perturb_checkpoint
from .toml_files import toml_text

ADAPTER_FILES = {"adapter.json", "adapter_config.json", "adapter_model.safetensors", "mid_block.safetensors"}
PROJECTIONS = (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight")


@pytest.fixture(scope="module")
def hmi_dir(tmp_path_factory):
    """The shipped HMI cut-out under its JSOC-style name (the loop reads dates from names)."""
    d = tmp_path_factory.mktemp("hmi")
    shutil.copy(HMI_AR_CUTOUT, d / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits")
    return d


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tiny_model("latent").save_pretrained(tmp_path_factory.mktemp("base") / "ldm-res")


def finetune_config(out, hmi_dir, base_dir, steps=3, every=2):
    return TrainConfig(
        name="tiny-ft",
        output_dir=str(out),
        batch_size=2,
        max_steps=steps,
        checkpoint_every=every,
        learning_rate=1e-3,
        data=DataConfig(data_dir=str(hmi_dir), crop_size=32, validation_fraction=0),
        model=ModelConfig(tile_size=32, halo=4),
        finetune=FinetuneConfig(base_model=str(base_dir), lora_rank=4, pair_crop_size=0),
    )


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, hmi_dir, base_dir):
    out = tmp_path_factory.mktemp("ft")
    return train(finetune_config(out, hmi_dir, base_dir), progress=False), out


def test_merged_model_equals_adapter_model(finetuned, base_dir):
    model_dir, out = finetuned
    merged = load_adapter(base_dir, out / "adapter", device="cpu")
    unmerged = load_adapter(base_dir, out / "adapter", merge=False, device="cpu")
    base = load_model(str(base_dir), device="cpu")
    assert isinstance(merged, DiffusionSuperResolution) and "lora" not in repr(type(merged.denoiser)).lower()
    assert merged.revision == "untrained+tiny-ft-step3" and merged.name == "ldm-res"
    x = np.random.default_rng(0).normal(0, 0.1, (2, 12, 12)).astype(np.float32)
    y_merged, y_adapter = merged.predict(x, seeds=[1, 2]), unmerged.predict(x, seeds=[1, 2])
    np.testing.assert_allclose(y_merged, y_adapter, rtol=0, atol=1e-5)
    assert np.abs(y_merged - base.predict(x, seeds=[1, 2])).max() > 1e-4  # the fine-tune did something
    # The loop's exported model is that merged model, a normal model directory.
    np.testing.assert_allclose(
        load_model(str(model_dir), device="cpu").predict(x, seeds=[1, 2]), y_merged, rtol=0, atol=1e-6
    )
    # ... and saving the unmerged model writes the merged one.
    saved = unmerged.save_pretrained(out / "resaved")
    np.testing.assert_allclose(
        load_model(str(saved), device="cpu").predict(x, seeds=[1, 2]), y_merged, rtol=0, atol=1e-5
    )


def test_only_lora_and_mid_block_change(finetuned, base_dir):
    _, out = finetuned
    ckpt = load_file(out / "checkpoints" / "step-00000003" / "model" / "trainable.safetensors")
    assert ckpt and all(
        ".lora_A." in k or ".lora_B." in k or ".mid_block.modules_to_save." in k for k in ckpt
    )
    before = load_file(base_dir / "denoiser" / "diffusion_pytorch_model.safetensors")
    after = load_file(out / "model" / "denoiser" / "diffusion_pytorch_model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    in_mid = {k for k in changed if k.startswith("unet.mid_block.")}
    lora = changed - in_mid
    # LoRA changes only the weight matrices of attention projections, the mid block changes in full.
    assert lora and all(k.endswith(PROJECTIONS) for k in lora)
    assert any(".resnets." in k for k in in_mid) and any(".attentions." in k for k in in_mid)
    frozen = [k for k in before if k not in changed]
    assert any("down_blocks.0.resnets" in k for k in frozen)
    assert not any(k.startswith("unet.mid_block.") and k.endswith("conv1.weight") for k in frozen)


def test_trainable_parameter_counts():
    denoiser = tiny_model("latent").denoiser
    model = add_lora(denoiser, rank=4)
    counts = lora_parameter_counts(model)
    full = sum(p.numel() for p in denoiser.parameters())
    mid = sum(p.numel() for p in denoiser.unet.mid_block.parameters())
    assert counts["base"] == full and counts["mid_block"] == mid
    assert counts["trainable"] == counts["lora"] + counts["mid_block"] < full
    # rank 4 on the 16-channel projections (q, k, v, out) of the 3 attention blocks outside the mid block
    assert counts["lora"] == 3 * 4 * (4 * 16 + 16 * 4)
    # wrapping copies: the caller's denoiser stays a plain, fully trainable base
    assert all(p.requires_grad for p in denoiser.parameters())
    x, c, t = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():  # LoRA B starts at zero: the wrapped model is the base
        torch.testing.assert_close(model(x, c, t), denoiser(x, c, t), rtol=0, atol=0)


def test_a_residual_to_a_regression_keeps_its_regression_through_lora(tmp_path, hmi_dir):
    # The regression is frozen and not adapted: the merged, unmerged and exported models all carry it.
    base_dir = tiny_model("latent", residual_base="regression").save_pretrained(tmp_path / "base" / "ldm-res")
    out = tmp_path / "ft"
    model_dir = train(finetune_config(out, hmi_dir, base_dir, steps=2, every=2), progress=False)
    merged = load_adapter(base_dir, out / "adapter", device="cpu")
    unmerged = load_adapter(base_dir, out / "adapter", merge=False, device="cpu")
    exported = load_model(str(model_dir), device="cpu")
    for model in (merged, unmerged, exported):
        assert model.regression is not None and model.regression_revision == "tiny-progressive"
    x = np.random.default_rng(0).normal(0, 0.1, (1, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(merged.predict(x, seeds=[1]), unmerged.predict(x, seeds=[1]), atol=1e-5)
    np.testing.assert_allclose(exported.predict(x, seeds=[1]), merged.predict(x, seeds=[1]), atol=1e-5)


def test_adapter_directory_is_safetensors_only(finetuned, base_dir, tmp_path):
    _, out = finetuned
    adapter = out / "adapter"
    assert {p.name for p in adapter.iterdir()} == ADAPTER_FILES
    manifest = verify_adapter(adapter)
    assert set(manifest["files"]) == ADAPTER_FILES - {"adapter.json"}
    assert manifest["base"]["name"] == "ldm-res" and manifest["base"]["revision"] == "untrained"
    assert manifest["lora"]["rank"] == 4 and manifest["lora"]["modules_to_save"] == ["unet.mid_block"]
    assert manifest["training"]["config"]["finetune"]["base_model"] == str(base_dir)
    # The adapter alone: no frozen base weights in it.
    peft_keys = load_file(adapter / "adapter_model.safetensors")
    assert not any("down_blocks.0.resnets" in k for k in peft_keys)
    # Tampering and pickles are refused.
    bad = tmp_path / "adapter"
    shutil.copytree(adapter, bad)
    (bad / "adapter_model.bin").write_bytes(b"\x80\x04not a real pickle")
    with pytest.raises(ValueError, match="pickle"):
        load_adapter(base_dir, bad)
    (bad / "adapter_model.bin").unlink()
    with open(bad / "mid_block.safetensors", "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x01")
    with pytest.raises(ChecksumError):
        load_adapter(base_dir, bad)


def test_adapter_refuses_another_base(finetuned, tmp_path):
    _, out = finetuned
    other = tiny_model("latent", seed=1).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="was trained on base model"):
        load_adapter(other, out / "adapter")
    loose = load_adapter(other, out / "adapter", strict_base=False, device="cpu")
    assert isinstance(loose, DiffusionSuperResolution)
    pixel = tiny_model("pixel").save_pretrained(tmp_path / "pixel")
    with pytest.raises(ValueError, match="another architecture"):
        load_adapter(pixel, out / "adapter", strict_base=False)


def test_finetuned_model_serves_superresolve(finetuned, mdi_cutout, base_dir):
    model_dir, out = finetuned
    lr = mdi_cutout.submap([0, 0] * u.pix, top_right=[23, 23] * u.pix)
    hr = superresolve(lr, model=str(model_dir), seed=0, steps=2, progress=False)
    assert hr.data.shape == (96, 96) and np.isfinite(hr.data).all()
    assert hr.meta["srmodrev"] == "untrained+tiny-ft-step3"
    # The same through superresolve(adapter=...): base directory plus adapter, merged on the fly.
    base_and_adapter = superresolve(
        lr, model=str(base_dir), adapter=out / "adapter", seed=0, steps=2, progress=False
    )
    np.testing.assert_allclose(base_and_adapter.data, hr.data, atol=1e-3)


def test_an_adapter_on_a_model_served_by_its_student_adapts_the_teacher(
    finetuned, mdi_cutout, base_dir, tmp_path
):
    # The default samples with its distilled student (default_sampler); an adapter fine-tuned the
    # network the directory stores, so it is applied to that network, which then samples with its own.
    _, out = finetuned
    base = load_model(base_dir, device="cpu")
    student = tiny_model(
        "latent",
        seed=1,
        revision="tiny-student",
        steps=2,
        trajectory={"timesteps": [999, 500], "teacher": base.revision},
    )
    base.student_dirs = {"distilled": student.save_pretrained(tmp_path / "student")}
    base.default_sampler = "distilled"
    served_dir = base.save_pretrained(tmp_path / "served")
    served = load_model(served_dir, device="cpu")
    assert served.revision == "tiny-student"
    adapted = load_adapter(served, out / "adapter", device="cpu")
    assert (adapted.revision, adapted.sampler) == ("untrained+tiny-ft-step3", base.sampler)
    lr = mdi_cutout.submap([0, 0] * u.pix, top_right=[23, 23] * u.pix)
    kwargs = dict(adapter=out / "adapter", seed=0, steps=2, progress=False)
    through_student = superresolve(lr, model=str(served_dir), **kwargs)
    direct = superresolve(lr, model=str(base_dir), **kwargs)
    assert through_student.meta["srmodrev"] == "untrained+tiny-ft-step3"
    np.testing.assert_array_equal(through_student.data, direct.data)


def test_finetune_resume_is_exact(tmp_path, hmi_dir, base_dir):
    def config(name):
        return finetune_config(tmp_path / name, hmi_dir, base_dir, steps=4)

    straight = train(config("a"), progress=False)
    assert train(config("b"), progress=False, stop_at_step=3) is None  # "killed" in step 3
    assert logged_steps(tmp_path / "b") == [1, 2, 3] and checkpoint_step(tmp_path / "b") == 2
    copy_run(tmp_path / "b", tmp_path / "c")
    perturb_checkpoint(tmp_path / "c", "model/trainable.safetensors")
    resumed = train(config("b"), progress=False)
    # Resumed from step 2, not started again (which per-step seeding would make end in the same weights).
    assert logged_steps(tmp_path / "b") == [1, 2, 3] + [3, 4]
    files = ["adapter/adapter_model.safetensors", "adapter/mid_block.safetensors"]
    for rel in files:
        assert differing_tensors(straight.parent / rel, resumed.parent / rel) == []
    # A changed checkpoint changes the result: its trainable tensors are what the run continues from
    # (one tensor changed; training spreads the change to the LoRA matrices and the mid block).
    perturbed = train(config("c"), progress=False)
    assert logged_steps(tmp_path / "c") == [1, 2, 3] + [3, 4]
    assert all(differing_tensors(straight.parent / rel, perturbed.parent / rel) for rel in files)


def test_cli_finetune(tmp_path, hmi_dir, base_dir, capsys):
    cfg = finetune_config(tmp_path / "run", hmi_dir, "", steps=2)
    toml = tmp_path / "ft.toml"
    toml.write_text(toml_text(cfg.to_dict()))
    with pytest.raises(SystemExit):  # no base model: `finetune` refuses to train from scratch
        main(["finetune", str(toml), "--no-progress"])
    assert "base_model" in capsys.readouterr().err
    args = ["finetune", str(toml), "--base-model", str(base_dir), "--no-progress", "--max-steps", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "model written to" in printed and "adapter written to" in printed
    assert (tmp_path / "run" / "model" / "superres.json").is_file()
    assert verify_adapter(tmp_path / "run" / "adapter")["revision"] == "tiny-ft-step1"
