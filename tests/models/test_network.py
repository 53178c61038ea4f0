"""The networks' base class: recorded settings, directories, and a load that does not import diffusers."""

import copy
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from sunpy_superres.models.network import WEIGHTS_NAME, Config, Network, register_to_config


class Tiny(Network):
    @register_to_config
    def __init__(self, channels=3, kernel=(3, 3), scale=1.0):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, channels, kernel)


def test_the_config_records_every_argument_with_its_default():
    net = Tiny(5, scale=2.0)
    assert dict(net.config) == {"channels": 5, "kernel": (3, 3), "scale": 2.0}
    assert net.config.channels == 5 and net.config["scale"] == 2.0
    with pytest.raises(AttributeError, match="this config has no 'missing'"):
        getattr(net.config, "missing")  # noqa: B009 - the attribute lookup is what is tested


def test_the_config_is_read_only_but_register_to_config_changes_it():
    net = Tiny()
    with pytest.raises(TypeError, match="read-only"):
        net.config["channels"] = 4
    with pytest.raises(TypeError, match="read-only"):
        net.config.update(channels=4)
    net.register_to_config(scale=0.5)
    assert net.config.scale == 0.5 and net.config.channels == 3


def test_a_config_survives_copy_deepcopy_and_pickle():
    config = Tiny(4).config
    for other in (copy.copy(config), copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert type(other) is Config and other == config
    assert copy.deepcopy(Tiny(4)).config == config


def test_from_config_leaves_out_private_and_unknown_keys():
    net = Tiny.from_config(
        {"_class_name": "Tiny", "_diffusers_version": "0.42.1", "channels": 2, "gone": 1}, scale=3.0
    )
    assert dict(net.config) == {"channels": 2, "kernel": (3, 3), "scale": 3.0}


def test_a_saved_network_loads_with_its_settings_and_weights_in_evaluation_mode(tmp_path):
    torch.manual_seed(0)
    net = Tiny(4, kernel=[1, 3]).train()
    net.save_pretrained(tmp_path / "net")
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == [
        "config.json",
        WEIGHTS_NAME,
    ]  # no temporary left
    saved = json.loads((tmp_path / "net" / "config.json").read_text())
    assert saved == {"_class_name": "Tiny", "channels": 4, "kernel": [1, 3], "scale": 1.0}
    loaded = Tiny.from_pretrained(tmp_path / "net")
    assert not loaded.training and loaded.config.kernel == [1, 3]
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())


def test_half_precision_weights_load_as_float32(tmp_path):
    """The shipped weights are fp16 files; the networks compute in float32 unless asked otherwise."""
    net = Tiny()
    net.save_pretrained(tmp_path)
    half = {k: v.half() for k, v in load_file(tmp_path / WEIGHTS_NAME).items()}
    save_file(half, tmp_path / WEIGHTS_NAME)
    loaded = Tiny.from_pretrained(tmp_path)
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded.conv.weight, half["conv.weight"].float())


def test_weights_are_safetensors_only(tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        Tiny().save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(ValueError, match="safetensors only"):
        Tiny.from_pretrained(tmp_path, use_safetensors=False)
    assert not list(tmp_path.iterdir())


def test_weights_that_do_not_fit_are_refused(tmp_path):
    Tiny(4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "channels": 5}))
    with pytest.raises(RuntimeError, match="size mismatch for conv.weight"):
        Tiny.from_pretrained(tmp_path)


def test_device_and_dtype_follow_the_parameters():
    net = Tiny().to(torch.float64)
    assert (net.device, net.dtype) == (torch.device("cpu"), torch.float64)


def test_the_default_loads_and_samples_without_diffusers():
    """Cold start (issue 18): diffusers' import brings torch._dynamo (about 1 s) and its DPM-Solver
    scipy.stats (0.5 s); loading the default needs neither, and its first sample no diffusers
    (sunpy.map brings scipy.stats itself)."""
    code = (
        "import sys; from sunpy_superres.models import load_model; model = load_model('default', device='cpu');"
        "bad = [m for m in ('diffusers', 'torch._dynamo', 'scipy.stats') if m in sys.modules];"
        "assert not bad, bad;"
        "import numpy as np; x = np.zeros((1, 16, 16), np.float32); model.predict(x, seeds=[0]);"
        "model.configure_sampler(sampler='dpm-solver++', steps=2).predict(x, seeds=[0]);"
        "bad = [m for m in ('diffusers', 'torch._dynamo') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
