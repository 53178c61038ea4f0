"""Weights: local directories, pinned Hub references from an offline cache, sha256 checks."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sunpy_superres.models import load_model
from sunpy_superres.models.hub import (
    ChecksumError,
    HubModel,
    WeightsNotFoundError,
    load_hub_model,
    parse_hub_reference,
    sha256_file,
)

from .tiny import tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache as huggingface_hub lays it out, holding one model at COMMIT; offline."""
    model = tiny_model("pixel", True)
    src = tmp_path / "src"
    model.save_pretrained(src)
    cache = tmp_path / "cache"
    repo = cache / "models--sunpy--tiny-sr"
    shutil.copytree(src, repo / "snapshots" / COMMIT / "v1")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, model, sha256_file(src / "superres.json")


def test_parse_reference():
    spec = parse_hub_reference(f"hf://sunpy/tiny-sr/v1@{COMMIT}#sha256={'a' * 64}")
    assert spec == HubModel("sunpy/tiny-sr", COMMIT, "a" * 64, "v1")
    assert parse_hub_reference(str(spec)) == spec
    with pytest.raises(ValueError, match="40-hex commit"):
        parse_hub_reference("hf://sunpy/tiny-sr@main")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_hub_reference("hf://just-a-name")


def test_offline_cache_loads_pinned_model(hub_cache):
    cache, model, manifest_sha = hub_cache
    spec = HubModel("sunpy/tiny-sr", COMMIT, manifest_sha, "v1")
    loaded = load_hub_model(spec, device="cpu", cache_dir=cache)
    assert loaded.revision == COMMIT
    x = np.zeros((1, 8, 8), np.float32)
    np.testing.assert_allclose(
        loaded.predict(x, seeds=[0]), model.predict(x, seeds=[0]), rtol=1e-4, atol=1e-3
    )


def test_offline_hub_reference_through_load_model(hub_cache, monkeypatch):
    import huggingface_hub.constants

    cache, _, _ = hub_cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert load_model(f"hf://sunpy/tiny-sr/v1@{COMMIT}", device="cpu").name == "ddpm-res"


def test_offline_empty_cache_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        WeightsNotFoundError,
        match=r"HF_HUB_OFFLINE=1.*'superres.json'.*'sunpy/tiny-sr'.*"
        r"--local-dir.*model='DIR'",
    ):
        load_hub_model(HubModel("sunpy/tiny-sr", COMMIT), cache_dir=tmp_path / "empty")


def test_recorded_sha256_mismatch(hub_cache):
    cache, _, _ = hub_cache
    with pytest.raises(ChecksumError, match="superres.json.*was recorded"):
        load_hub_model(HubModel("sunpy/tiny-sr", COMMIT, "0" * 64, "v1"), cache_dir=cache)


def test_corrupt_weights_file(hub_cache):
    cache, _, sha = hub_cache
    weights = (
        cache
        / "models--sunpy--tiny-sr"
        / "snapshots"
        / COMMIT
        / "v1"
        / "denoiser"
        / "diffusion_pytorch_model.safetensors"
    )
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="diffusion_pytorch_model.safetensors has sha256"):
        load_hub_model(HubModel("sunpy/tiny-sr", COMMIT, sha, "v1"), cache_dir=cache)


def test_directory_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="no superres.json"):
        load_model(tmp_path / "empty")


def test_core_import_stays_light():
    code = (
        "import sys, sunpy_superres, sunpy_superres.models;"
        "bad = [m for m in ('peft', 'accelerate', 'sunpy_superres.training') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_every_kind_loads_through_one_verification(tmp_path):
    """A diffusion model's own from_pretrained checks the checksums too (it did not before)."""
    from sunpy_superres.models.diffusion import DiffusionSuperResolution

    path = tiny_model().save_pretrained(tmp_path / "m")
    assert type(DiffusionSuperResolution.from_pretrained(path, device="cpu")) is DiffusionSuperResolution
    config = path / "denoiser" / "config.json"
    config.write_text(config.read_text().replace("{", "{ ", 1))
    with pytest.raises(ChecksumError, match="config.json has sha256"):
        DiffusionSuperResolution.from_pretrained(path, device="cpu")


def test_a_new_model_kind_is_its_own_module_and_one_registration(tmp_path):
    """A kind registers itself; the manifest module, the registry and the Hub client need no change."""
    from sunpy_superres.models import manifest
    from sunpy_superres.models.interpolation import NearestModel

    @manifest.register_kind("toy-kind")
    class Toy(NearestModel):
        kind = "toy-kind"

        @classmethod
        def from_verified(cls, path, info, *, device="auto", revision=None):
            model = cls(device=device)
            model.name, model.revision = info["name"], revision or info["revision"]
            return model

    try:
        (tmp_path / "toy").mkdir()
        (tmp_path / "toy" / "weights.txt").write_text("none\n")
        manifest.write_manifest(tmp_path / "toy", {"kind": "toy-kind", "name": "toy", "revision": "r1"})
        model = load_model(tmp_path / "toy", device="cpu")
        assert type(model) is Toy and (model.name, model.revision) == ("toy", "r1")
        assert type(Toy.from_pretrained(tmp_path / "toy", device="cpu")) is Toy
        from sunpy_superres.models.diffusion import DiffusionSuperResolution

        with pytest.raises(ValueError, match="holds a 'toy-kind' model, not 'diffusion'"):
            DiffusionSuperResolution.from_pretrained(tmp_path / "toy", device="cpu")
    finally:
        manifest._KINDS.pop("toy-kind")


def test_import_of_the_registry_reads_no_disk_and_imports_no_model():
    code = (
        "import sys, sunpy_superres.models.registry as r;"
        "assert r._embedded_models.cache_info().currsize == 0;"
        "bad = [m for m in ('torch', 'sunpy_superres.models.base', 'sunpy_superres.models.hub') if m in sys.modules];"
        "assert not bad, bad;"
        "assert 'bicubic' in r.available_models() and r._embedded_models.cache_info().currsize == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
