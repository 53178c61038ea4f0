"""Tests of sunpy_superres.metrics.image: PSNR/SSIM against analytic cases and scikit-image; LPIPS and
FID plumbing with seeded random networks built here (the pretrained weights are not available offline),
and FID against its documented steps done independently with such a network."""

import astropy.units as u
import numpy as np
import pytest
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sunpy_superres.metrics import image
from sunpy_superres.metrics.image import MissingWeightsError, fid, frechet_distance, lpips, psnr, ssim

R = 6000.0  # G, the default data range (+-3000 G)


def field(seed, shape=(64, 64), sigma=600.0):
    """A smooth random magnetogram-like field in G, within +-2000 G (sums of two stay inside +-3000 G)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    data = gaussian_filter(rng.normal(0, 1, size=shape), 2)
    return np.clip(data / data.std() * sigma, -2000, 2000)


# ------------------------------------------------------------------------------------------------
# PSNR and SSIM


def test_psnr_of_a_constant_offset_is_analytic():
    truth = field(0)
    for offset in (3.0, 30.0, 300.0):
        expected = 10 * np.log10(R**2 / offset**2)
        assert psnr((truth + offset) * u.G, truth * u.G) == pytest.approx(expected, rel=1e-12)
    # The range sets the peak (for a field inside +-1000 G, so that nothing is clipped).
    weak = field(0, sigma=150.0)
    assert np.abs(weak).max() + 30 < 1000
    assert psnr((weak + 30) * u.G, weak * u.G, data_range=2000 * u.G) == pytest.approx(
        10 * np.log10(2000.0**2 / 30.0**2), rel=1e-12
    )


def test_ssim_of_constant_images_is_analytic():
    # Flat images a and b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 R)^2.
    c1 = (0.01 * R) ** 2
    for a, b in ((100.0, 200.0), (-500.0, 500.0), (0.0, 1000.0)):
        expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
        got = ssim(np.full((32, 32), a) * u.G, np.full((32, 32), b) * u.G)
        assert got == pytest.approx(expected, rel=1e-9)


def test_psnr_and_ssim_match_scikit_image_on_raw_arrays():
    truth, pred = field(1), field(1) + field(2, sigma=200.0)
    assert psnr(pred * u.G, truth * u.G) == peak_signal_noise_ratio(truth, pred, data_range=R)
    expected = structural_similarity(
        truth, pred, data_range=R, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(pred * u.G, truth * u.G) == pytest.approx(expected, rel=1e-12)
    assert ssim(pred * u.G, truth * u.G) == pytest.approx(ssim(truth * u.G, pred * u.G), rel=1e-12)


def test_identical_maps_give_ssim_1_and_psnr_inf(hmi_cutout):
    assert psnr(hmi_cutout, hmi_cutout) == np.inf
    assert ssim(hmi_cutout, hmi_cutout) == pytest.approx(1.0, abs=1e-12)
    assert psnr(hmi_cutout.quantity, hmi_cutout) == np.inf


def test_maps_and_quantities_in_other_units_agree(hmi_cutout):
    truth = hmi_cutout.quantity
    pred = truth + field(3, shape=truth.shape, sigma=50.0) * u.G
    assert psnr(pred.to(u.mT), hmi_cutout) == pytest.approx(psnr(pred, truth), rel=1e-12)
    assert ssim(pred.to(u.T), hmi_cutout) == pytest.approx(ssim(pred, truth), rel=1e-9)
    assert 0 < ssim(pred, truth) < 1 and np.isfinite(psnr(pred, truth))


def test_values_beyond_the_range_are_clipped():
    assert psnr(np.full((16, 16), 4000.0) * u.G, np.full((16, 16), 3000.0) * u.G) == np.inf
    assert psnr(
        np.full((16, 16), 4000.0) * u.G, np.full((16, 16), 3000.0) * u.G, data_range=10000 * u.G
    ) == pytest.approx(20.0)


def test_nan_pixels_are_excluded():
    truth, pred = field(4), field(4) + field(5, sigma=100.0)
    hole = np.zeros(truth.shape, bool)
    hole[10:30, 20:50] = True
    truth_nan = np.where(hole, np.nan, truth)
    # PSNR: exactly the PSNR of the remaining pixels.
    assert psnr(pred * u.G, truth_nan * u.G) == pytest.approx(
        peak_signal_noise_ratio(truth[~hole], pred[~hole], data_range=R), rel=1e-12
    )
    # What a prediction says where the truth is missing does not count, for either metric.
    other = np.where(hole, 2500.0, pred)
    assert psnr(other * u.G, truth_nan * u.G) == psnr(pred * u.G, truth_nan * u.G)
    assert ssim(other * u.G, truth_nan * u.G) == ssim(pred * u.G, truth_nan * u.G)
    assert ssim(truth * u.G, truth_nan * u.G) == pytest.approx(1.0, abs=1e-12)
    assert ssim(pred * u.G, truth_nan * u.G) < 1
    # SSIM: the local SSIM map of the zero-filled pair, averaged over the pixels finite in both only
    # (the hole, 0 G in both, would otherwise add perfect scores) and away from the 5-pixel border.
    _, local = structural_similarity(
        np.where(hole, 0, truth),
        np.where(hole, 0, pred),
        data_range=R,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    inner = (slice(5, -5), slice(5, -5))
    expected = np.mean(local[inner][~hole[inner]])
    assert ssim(pred * u.G, truth_nan * u.G) == pytest.approx(expected, rel=1e-12)
    assert expected < np.mean(local[inner])


def test_input_validation(hmi_cutout):
    small = hmi_cutout.submap([0, 0] * u.pix, top_right=[99, 49] * u.pix)
    for metric in (psnr, ssim, lpips):
        with pytest.raises(ValueError, match=r"pred is \(512, 512\) and truth is \(50, 100\)"):
            metric(hmi_cutout, small)
    with pytest.raises(TypeError, match="Quantity"):
        psnr(np.zeros((16, 16)), np.zeros((16, 16)) * u.G)
    with pytest.raises(u.UnitsError):
        ssim(np.zeros((16, 16)) * u.m, np.zeros((16, 16)) * u.G)
    with pytest.raises(ValueError, match="finite"):
        psnr(np.full((16, 16), np.nan) * u.G, np.zeros((16, 16)) * u.G)


# ------------------------------------------------------------------------------------------------
# LPIPS


@pytest.fixture
def random_alexnet(tmp_path):
    """A seeded random AlexNet feature stack in torchvision's state-dict layout, as safetensors."""
    pytest.importorskip("torchmetrics")  # ships the LPIPS linear-layer weights
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    features = image._alexnet_features()
    # Like torchvision's file, with the classifier too: only the features must be used.
    state = {f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9216)
    path = tmp_path / "alexnet-random.safetensors"
    save_file(state, str(path))
    return path, features


def test_lpips_is_a_distance_with_offline_weights(random_alexnet, hmi_cutout):
    path, _ = random_alexnet
    truth = hmi_cutout.quantity[:128, :128]
    pred = truth + field(6, shape=(128, 128), sigma=150.0) * u.G
    other = hmi_cutout.quantity[-128:, -128:]
    assert lpips(truth, truth, weights=path) == 0.0
    d = lpips(pred, truth, weights=path)
    assert d > 0
    assert lpips(truth, pred, weights=path) == pytest.approx(d, rel=1e-6)
    # (A random network says nothing about which of two differences is perceptually larger.)
    assert lpips(other, truth, weights=path) > 0


def test_lpips_equals_torchmetrics_for_the_same_backbone(random_alexnet, monkeypatch):
    """Our AlexNet/LPIPS code against torchmetrics' LPIPS module given the same random backbone."""
    import torch
    import torchmetrics.functional.image.lpips as tm_lpips

    path, features = random_alexnet
    monkeypatch.setattr(tm_lpips, "_get_tv_model_features", lambda net, pretrained=False: features)
    reference = tm_lpips._LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    truth, pred = field(7, sigma=1500.0), field(8, sigma=1500.0)
    pred[:5] = 3500.0  # beyond +-3000 G: clipped to +1 in the network units
    x0 = torch.from_numpy(np.clip(pred, -3000, 3000) / 3000).float().expand(1, 3, -1, -1)
    x1 = torch.from_numpy(truth / 3000).float().expand(1, 3, -1, -1)
    with torch.inference_mode():
        expected = float(reference(x0, x1))
    assert lpips(pred * u.G, truth * u.G, weights=path) == pytest.approx(expected, rel=1e-5)


def test_lpips_loads_a_torch_state_dict_file_the_same_way(random_alexnet, tmp_path, hmi_cutout):
    import torch

    path, features = random_alexnet
    pth = tmp_path / "alexnet_random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, pth)
    truth = hmi_cutout.quantity[:96, :96]
    pred = hmi_cutout.quantity[-96:, -96:]
    assert lpips(pred, truth, weights=pth) == pytest.approx(lpips(pred, truth, weights=path), rel=1e-6)
    # A file under the official name is checked against the SHA-256 prefix in that name.
    fake = tmp_path / image.ALEXNET_FILENAME
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, fake)
    with pytest.raises(ValueError, match="SHA-256"):
        lpips(pred, truth, weights=fake)
    wrong = tmp_path / "not_alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="torchvision's layout"):
        lpips(pred, truth, weights=wrong)


def test_lpips_missing_weights_say_what_to_download(tmp_path, monkeypatch, hmi_cutout):
    truth = hmi_cutout.quantity[:64, :64]
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth") as info:
        lpips(truth, truth, weights=tmp_path / "nowhere.pth")
    assert image.ALEXNET_URL in str(info.value) and isinstance(info.value, FileNotFoundError)
    # Default: torch.hub's checkpoint cache under TORCH_HOME.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert image.default_alexnet_path() == expected
    with pytest.raises(MissingWeightsError, match=str(expected)):
        lpips(truth, truth)


def test_lpips_rejects_other_backbones_and_tiny_images(random_alexnet):
    path, _ = random_alexnet
    with pytest.raises(ValueError, match="'alex'"):
        lpips(np.zeros((64, 64)) * u.G, np.zeros((64, 64)) * u.G, weights=path, net="vgg")
    with pytest.raises(ValueError, match="32x32"):
        lpips(np.zeros((16, 16)) * u.G, np.zeros((16, 16)) * u.G, weights=path)


# ------------------------------------------------------------------------------------------------
# Frechet distance and FID


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    rng = np.random.default_rng(9)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    # sqrt(S1 S2) is diagonal with sqrt(v1 v2): FID = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    covmean = linalg.sqrtm(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_frechet_distance_with_singular_covariances():
    # 3 samples in 8 dimensions: rank-2 covariances, as FID on few images has.
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    assert frechet_distance(x.mean(0), sx, x.mean(0), sx) == pytest.approx(0, abs=1e-10)
    d = frechet_distance(x.mean(0), sx, y.mean(0), sy)
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


@pytest.fixture
def random_clip(tmp_path):
    """A tiny seeded CLIP (text and vision towers, as the real checkpoint) saved in transformers' layout."""
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=64,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    directory = tmp_path / "clip"
    CLIPModel(config).save_pretrained(directory)
    assert {p.name for p in directory.iterdir()} >= set(image.CLIP_FILES)
    return directory


def test_fid_plumbing_with_offline_weights(random_clip, hmi_cutout):
    data = hmi_cutout.quantity
    tiles = [data[i : i + 128, j : j + 128] for i in (0, 192, 384) for j in (0, 256)]
    noisy = [t + field(20 + i, shape=(128, 128), sigma=1500.0) * u.G for i, t in enumerate(tiles)]
    same = fid(tiles, tiles, weights=random_clip)
    assert same == pytest.approx(0, abs=1e-8)
    different = fid(noisy, tiles, weights=random_clip)
    assert different > 1e3 * max(same, 1e-12)
    assert fid(tiles, noisy, weights=random_clip) == pytest.approx(different, rel=1e-6)
    # A stack (3-D Quantity) is a set of images; maps and quantities mix.
    assert fid(u.Quantity(tiles), [hmi_cutout, *tiles[1:]], weights=random_clip) > 0


def test_fid_equals_its_documented_steps_done_independently(random_clip, hmi_cutout):
    """
    ``fid`` against the steps its docstring lists, done here with other tools: PIL's resize, the
    CLIP model's own ``get_image_features``, numpy's covariances and scipy's ``sqrtm``.
    """
    import torch
    from PIL import Image
    from transformers import CLIPModel

    data = np.array(hmi_cutout.data, dtype=float)  # G, +-1600 G
    preds = [data[i : i + 64, j : j + 64] for i in range(0, 448, 96) for j in range(0, 448, 112)]
    # Other sizes; five times the field, so that most images are clipped at +-3000 G in places; NaN corners.
    truths = [5 * data[i : i + 80, j : j + 96] for i in range(40, 420, 80) for j in range(20, 400, 100)]
    for k, t in enumerate(truths[::3]):
        t[: 8 + k, :12] = np.nan
    assert np.mean([np.nanmax(np.abs(t)) > 3000 for t in truths]) > 0.5
    model = CLIPModel.from_pretrained(random_clip).eval()
    size, dim = model.config.vision_config.image_size, model.config.projection_dim
    # More images than feature dimensions: full-rank covariances, whose square root sqrtm finds accurately.
    assert len(preds) > dim and len(truths) > dim
    # CLIP's normalisation (Radford et al. 2021; the OpenAI CLIP preprocessing).
    mean = np.array([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = np.array([0.26862954, 0.26130258, 0.27577711])[:, None, None]

    def features(images):
        rows = []
        for g in images:
            g = np.clip(np.nan_to_num(g, nan=0.0), -3000, 3000)  # NaN as 0 G, clipped at +-3000 G
            intensity = (g + 3000) / 6000  # -3000 G -> 0, +3000 G -> 1
            # Bicubic resize to the encoder's input size; PIL's filter widens when it shrinks (antialiased).
            small = Image.fromarray(intensity.astype(np.float32)).resize(
                (size, size), Image.Resampling.BICUBIC
            )
            # The kernel's overshoot at clipped edges is cut back to the [0, 1] intensity range.
            small = np.clip(np.asarray(small, dtype=float), 0, 1)
            pixels = (np.repeat(small[None], 3, axis=0) - mean) / std  # grey as RGB, normalised
            with torch.no_grad():
                out = model.get_image_features(pixel_values=torch.from_numpy(pixels[None]).float())
            out = out if torch.is_tensor(out) else out.pooler_output  # transformers 4 / 5
            rows.append(out[0].double().numpy())
        return np.array(rows)

    fp, ft = features(preds), features(truths)
    s1, s2 = np.cov(fp, rowvar=False), np.cov(ft, rowvar=False)
    diff = fp.mean(axis=0) - ft.mean(axis=0)
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    got = fid([p * u.G for p in preds], [t * u.G for t in truths], weights=random_clip)
    # Float32 networks and resizes agree to a few 1e-7 here; a changed step moves FID by 1e-4 or more.
    assert got == pytest.approx(expected, rel=1e-5)


def test_fid_missing_weights_say_what_to_download(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    images = [np.zeros((32, 32)) * u.G, np.ones((32, 32)) * u.G]
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        fid(images, images, weights=tmp_path / "empty")
    # Default: the Hugging Face cache (a repository that is certainly not cached there).
    monkeypatch.setattr(image, "CLIP_REPO_ID", "sunpy-superres-tests/not-a-cached-model")
    with pytest.raises(MissingWeightsError, match="hf download") as info:
        fid(images, images)
    assert isinstance(info.value, FileNotFoundError)


def test_fid_needs_two_images_per_set(random_clip):
    one = [np.zeros((32, 32)) * u.G]
    with pytest.raises(ValueError, match="at least 2"):
        fid(one, one * 2, weights=random_clip)
