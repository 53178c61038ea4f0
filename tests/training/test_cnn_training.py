"""The loop trains the deterministic CNN baselines (pixel MSE), fine-tunes them on pairs, resumes exactly."""

import json
import shutil

import astropy.units as u
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sunpy_superres import superresolve
from sunpy_superres.data import HMI_AR_CUTOUT
from sunpy_superres.models import load_model
from sunpy_superres.models.enhance import EnhanceSuperResolution
from sunpy_superres.models.progressive import ProgressiveSuperResolution
from sunpy_superres.training import TrainConfig, load_config, train
from sunpy_superres.training.config import DataConfig, FinetuneConfig, ModelConfig
from sunpy_superres.training.loop import PairCrops

from .resume_checks import checkpoint_step, copy_run, differing_tensors, logged_steps, perturb_checkpoint

CLASSES = {"enhance": EnhanceSuperResolution, "progressive": ProgressiveSuperResolution}


@pytest.fixture(scope="module")
def hmi_dir(tmp_path_factory):
    """The shipped HMI cut-out under its JSOC-style name (the loop reads dates from names)."""
    d = tmp_path_factory.mktemp("hmi")
    shutil.copy(HMI_AR_CUTOUT, d / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits")
    return d


def cnn_config(out, data_dir, kind, steps=3, every=2, base=""):
    return TrainConfig(
        name=f"tiny-{kind}",
        output_dir=str(out),
        batch_size=2,
        max_steps=steps,
        checkpoint_every=every,
        data=DataConfig(data_dir=str(data_dir), crop_size=32, validation_fraction=0),
        model=ModelConfig(
            kind=kind,
            enhance=dict(channels=8, num_residual_blocks=1, upsample_channels=8),
            progressive=dict(channels=8, growth_rate=4, layers_per_block=1, blocks_per_level=[1, 1]),
            tile_size=32,
        ),
        finetune=FinetuneConfig(base_model=str(base), pair_crop_size=0),
    )


@pytest.mark.parametrize("kind", ["enhance", "progressive"])
def test_cnn_trains_and_serves_superresolve(tmp_path, hmi_dir, mdi_cutout, kind):
    final = train(cnn_config(tmp_path, hmi_dir, kind), progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    model = load_model(str(final), device="cpu")
    assert type(model) is CLASSES[kind] and model.name == kind and model.revision == f"tiny-{kind}-step3"
    assert json.loads((final / "training_config.json").read_text())["config"]["model"]["kind"] == kind
    lr = mdi_cutout.submap([0, 0] * u.pix, top_right=[23, 23] * u.pix)
    out = superresolve(lr, model=str(final), progress=False)
    assert out.data.shape == (96, 96) and np.isfinite(out.data).all() and out.meta["srmodel"] == kind
    centre = out.pixel_to_world(47.5 * u.pix, 47.5 * u.pix)
    assert centre.separation(lr.pixel_to_world(11.5 * u.pix, 11.5 * u.pix)) < 1 * u.mas


def test_cnn_resume_is_exact(tmp_path, hmi_dir):
    # Enhance has batch-norm running statistics (buffers, not parameters): they must resume too.
    def config(name):
        return cnn_config(tmp_path / name, hmi_dir, "enhance", steps=4)

    straight = train(config("a"), progress=False)
    assert train(config("b"), progress=False, stop_at_step=3) is None  # step 2's checkpoint survives
    assert logged_steps(tmp_path / "b") == [1, 2, 3] and checkpoint_step(tmp_path / "b") == 2
    copy_run(tmp_path / "b", tmp_path / "c")
    changed = perturb_checkpoint(tmp_path / "c", "model/diffusion_pytorch_model.safetensors")
    resumed = train(config("b"), progress=False)
    # Resumed from step 2, not started again (which per-step seeding would make end in the same weights).
    assert logged_steps(tmp_path / "b") == [1, 2, 3] + [3, 4]
    network = "network/diffusion_pytorch_model.safetensors"
    a = load_file(straight / network)
    assert any("running_mean" in k for k in a)
    assert differing_tensors(straight / network, resumed / network) == []
    # A changed checkpoint changes the result: its weights are what the run continues from.
    perturbed = train(config("c"), progress=False)
    assert logged_steps(tmp_path / "c") == [1, 2, 3] + [3, 4]
    differ = differing_tensors(straight / network, perturbed / network)
    assert changed in differ and len(differ) > 1


def test_cnn_finetunes_all_weights_on_pairs(tmp_path, hmi_dir):
    base = train(cnn_config(tmp_path / "base", hmi_dir, "progressive", steps=1), progress=False)
    tuned = train(cnn_config(tmp_path / "ft", hmi_dir, "progressive", steps=2, base=base), progress=False)
    a = load_file(base / "network" / "diffusion_pytorch_model.safetensors")
    b = load_file(tuned / "network" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(not torch.equal(a[k], b[k]) for k in a if k.endswith("head.weight"))
    assert isinstance(load_model(str(tuned), device="cpu"), ProgressiveSuperResolution)
    with pytest.raises(ValueError, match="is a 'progressive' model"):
        train(cnn_config(tmp_path / "wrong", hmi_dir, "enhance", base=base), progress=False)


def test_a_progressive_run_starts_from_its_init_from_model(tmp_path, hmi_dir):
    base = train(cnn_config(tmp_path / "base", hmi_dir, "progressive", steps=1), progress=False)
    enhance = train(cnn_config(tmp_path / "enhance", hmi_dir, "enhance", steps=1), progress=False)

    def run(name, learning_rate, init_from=base):
        cfg = cnn_config(tmp_path / name, hmi_dir, "progressive", steps=1)
        table = cfg.model.progressive
        # Another architecture in the table: init_from's network replaces it.
        table.init_from, table.projected_loss, table.channels = str(init_from), True, 4
        cfg.learning_rate = learning_rate
        return load_file(train(cfg, progress=False) / "network" / "diffusion_pytorch_model.safetensors")

    a = load_file(base / "network" / "diffusion_pytorch_model.safetensors")
    kept, moved = run("rate0", 0.0), run("rate1e-3", 1e-3)
    assert a.keys() == kept.keys() == moved.keys()
    assert all(torch.equal(a[k], kept[k]) for k in a)  # a rate of 0 keeps the base's weights
    assert any(not torch.equal(a[k], moved[k]) for k in a)  # and it trains from them
    with pytest.raises(ValueError, match="is not a progressive model"):
        run("wrong", 1e-3, init_from=enhance)


def test_pair_crops_are_aligned_and_valid():
    rng = np.random.default_rng(0)
    lr = rng.normal(size=(16, 16)).astype(np.float32)
    hr = np.kron(lr, np.ones((4, 4), np.float32))
    valid = np.ones(hr.shape, bool)
    valid[:, :20] = False  # the first 5 LR columns are off-disk
    crops = PairCrops([(lr, hr, valid)], crop_size=32, seed=3)
    for i in range(20):
        a, b = crops.sample(i)
        assert a.shape == (8, 8) and b.shape == (32, 32)
        # the same crop and the same augmentation of input and target
        np.testing.assert_array_equal(np.kron(a, np.ones((4, 4), np.float32)), b)
        np.testing.assert_array_equal(crops.sample(i)[0], a)  # a pure function of (seed, index)
    with pytest.raises(ValueError, match="no pair"):
        PairCrops([(lr, hr, np.zeros_like(valid))], crop_size=32)


def test_configs_and_backwards_compatible_checkpoints():
    ft = load_config("finetune-cpu")
    assert ft.finetune.enabled and ft.model.kind == "diffusion" and ft.finetune.pairs == "synthetic"
    assert ft.finetune.lora_target_modules == ["to_q", "to_k", "to_v", "to_out.0"]
    assert ft.finetune.train_mid_block
    assert load_config("enhance-cpu").model.kind == "enhance"
    assert load_config("progressive-cpu").model.kind == "progressive"
    # A config saved before [finetune] and the CNN tables existed reads back as the same run (resume).
    old = load_config("cpu").to_dict()
    del old["finetune"], old["model"]["enhance"], old["model"]["progressive"]
    assert TrainConfig.from_dict(old) == load_config("cpu")
    # So does one saved with the flat CNN keys of before the per-kind tables.
    flat = load_config("progressive-cpu").to_dict()
    table, _ = flat["model"].pop("progressive"), flat["model"].pop("enhance")
    flat["model"].update({"cnn_channels": table["channels"], "cnn_skip": table["skip"]})
    flat["model"].update({f"progressive_{k}": table[k] for k in ("growth_rate", "level_weights")})
    assert TrainConfig.from_dict(flat) == load_config("progressive-cpu")
    with pytest.raises(ValueError, match="kind must be one of"):
        TrainConfig.from_dict({"model": {"kind": "gan"}})
    with pytest.raises(ValueError, match="pairs must be one of"):
        TrainConfig.from_dict({"finetune": {"pairs": "jsoc"}})
