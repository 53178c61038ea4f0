"""evaluate(): the paper's protocol on the real HMI cut-out, its table, figures and command."""

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.table import Table

from sunpy_superres import cli
from sunpy_superres.data import HMI_AR_CUTOUT
from sunpy_superres.evaluation import degrade, evaluate

from .helpers import NoisyNearest


@pytest.fixture(scope="module")
def result():
    from .conftest import read_map

    return evaluate(
        ["nearest", "bicubic", NoisyNearest(device="cpu")],
        [read_map(HMI_AR_CUTOUT)],
        samples=3,
        crop=256,
        seed=1,
    )


def test_summary_table(result):
    summary = result.summary
    assert list(summary["model"]) == ["nearest", "bicubic", "noisy-nearest", "noisy-nearest (mean of 3)"]
    assert list(summary["n"]) == [1, 1, 3, 1]
    metrics = ("psnr", "ssim", "flux_error", "flux_bias", "ar_area_error", "spectral_error", "small_scale")
    for metric in (*metrics, "noise_ratio"):
        assert f"{metric}_mean" in summary.colnames and f"{metric}_std" in summary.colnames
        assert np.all(np.isfinite(summary[f"{metric}_mean"]))
    assert "lpips_mean" not in summary.colnames  # no LPIPS weights given
    assert summary["psnr_mean"].unit == u.dB or str(summary["psnr_mean"].unit) == "dB"


def test_summary_is_the_metric_functions_on_the_outputs(result):
    """Each summary number is the metric function of the package on the output it scored."""
    from sunpy_superres.metrics import image, physics, spectra

    truth, lowres = result.examples["truth"], result.examples["lowres"]
    for name in ("nearest", "bicubic"):
        pred = result.examples[name]
        row = result.summary[list(result.summary["model"]).index(name)]
        flux = physics.percentage_difference(physics.unsigned_flux(pred), physics.unsigned_flux(truth))
        area = physics.percentage_difference(
            physics.active_region_area(pred).area, physics.active_region_area(truth).area
        )
        expected = {
            "psnr": image.psnr(pred, truth),
            "ssim": image.ssim(pred, truth),
            "flux_error": abs(flux.to_value(u.percent)),
            "flux_bias": flux.to_value(u.percent),
            "ar_area_error": abs(area.to_value(u.percent)),
            "spectral_error": spectra.spectral_error(pred, truth, lowres.scale.axis1),
            "small_scale": spectra.small_scale_power_fraction(pred, truth),
            "noise_ratio": physics.quiet_sun_noise(pred, reference=truth) / physics.quiet_sun_noise(truth),
        }
        for metric, value in expected.items():
            assert row[f"{metric}_mean"] == pytest.approx(float(value), rel=1e-12), (name, metric)
            assert row[f"{metric}_std"] == 0  # one output
    # A stochastic model's row is the mean and the (population) spread of its samples' scores.
    scores = result.records["psnr"][result.records["model"] == "noisy-nearest"]
    row = result.summary[list(result.summary["model"]).index("noisy-nearest")]
    assert row["psnr_mean"] == pytest.approx(np.mean(scores)) and row["psnr_std"] == pytest.approx(
        np.std(scores)
    )


def test_noise_ratio_and_flux_bias_of_known_outputs(result):
    """Nearest replication has no noise within a block; noisy-nearest has its own, 0.01 x 3000 G."""
    from sunpy_superres.metrics import physics

    summary = result.summary
    row = {name: summary[list(summary["model"]).index(name)] for name in summary["model"]}
    assert row["nearest"]["noise_ratio_mean"] == 0
    truth_noise = physics.quiet_sun_noise(result.examples["truth"]).to_value(u.G)
    assert row["noisy-nearest"]["noise_ratio_mean"] * truth_noise == pytest.approx(30.0, rel=0.03)
    # That noise adds unsigned flux, so its signed error is a bias, the size of its |error|.
    rec = result.records[result.records["model"] == "noisy-nearest"]
    assert np.all(rec["flux_bias"] > 0)
    np.testing.assert_array_equal(rec["flux_error"], np.abs(rec["flux_bias"]))


def test_noise_ratio_is_nan_without_quiet_sun_or_truth_noise(result):
    from sunpy_superres.evaluation import _noise_ratio

    truth = result.examples["truth"]
    strong = truth._new_instance(np.full(truth.data.shape, 800.0), truth.meta)  # no quiet block
    assert np.isnan(_noise_ratio(truth, strong))
    flat = truth._new_instance(np.zeros(truth.data.shape), truth.meta)  # quiet, but noise-free
    assert np.isnan(_noise_ratio(truth, flat))
    assert _noise_ratio(truth, truth) == 1


def test_deterministic_baselines_lack_small_scales(result):
    """The paper's point: interpolation has far less power below 2" than the truth."""
    row = result.summary[result.summary["model"] == "bicubic"][0]
    assert row["small_scale_mean"] < 0.5
    assert row["spectral_error_mean"] > 0.5


def test_samples_are_distinct_and_reproducible(result):
    rec = result.records[result.records["model"] == "noisy-nearest"]
    assert len(set(np.round(rec["psnr"], 6))) == 3
    again = evaluate([NoisyNearest(device="cpu")], [result.examples["truth"]], samples=3, crop=None, seed=1)
    np.testing.assert_allclose(
        again.records["psnr"][again.records["model"] == "noisy-nearest"], rec["psnr"], rtol=1e-6
    )


def test_mean_row_scores_the_mean_and_its_coverage(result):
    """The mean of the samples is scored as its own row, with the coverage of its spread."""
    from sunpy_superres import superresolve
    from sunpy_superres.evaluation import uncertainty_calibration
    from sunpy_superres.seeds import evaluation_seed

    row = result.records[result.records["model"] == "noisy-nearest (mean of 3)"]
    assert len(row) == 1 and row["sample"][0] == -1
    truth, lowres = result.examples["truth"], result.examples["lowres"]
    um = superresolve(
        lowres,
        model=NoisyNearest(device="cpu"),
        samples=3,
        seed=evaluation_seed(1, 0, 0),
        calibrate=False,
        progress=False,
    )
    cover = uncertainty_calibration([um], [truth])[0]
    assert row["coverage_2sd"][0] == pytest.approx(cover["coverage_2sd"])
    assert row["coverage_1sd"][0] == pytest.approx(cover["coverage_1sd"])
    samples = result.records[result.records["model"] == "noisy-nearest"]
    # Averaging independent noise: the mean is closer to the truth than any one sample.
    assert row["psnr"][0] > samples["psnr"].max()
    assert np.isnan(result.records["coverage_2sd"][result.records["model"] == "bicubic"]).all()
    assert list(result.calibration) == ["noisy-nearest"]
    assert result.calibration["noisy-nearest"]["coverage_2sd"][0] == pytest.approx(cover["coverage_2sd"])


def test_consistency_setting_reaches_the_outputs(result):
    # "auto" projects the stochastic model's outputs onto the input's block means; False does not.
    truth, lowres = result.examples["truth"], result.examples["lowres"]
    kept = result.examples["noisy-nearest"]
    raw = evaluate([NoisyNearest(device="cpu")], [truth], samples=1, crop=None, seed=1, consistency=False)
    assert result.summary.meta["consistency"] == "auto" and raw.summary.meta["consistency"] == "False"
    blocks = lambda m: np.asarray(m.data, dtype=float).reshape(64, 4, 64, 4).mean(axis=(1, 3))  # noqa: E731
    np.testing.assert_allclose(blocks(kept), lowres.data, atol=1e-3)
    assert np.abs(blocks(raw.examples["noisy-nearest"]) - lowres.data).max() > 1


def test_crop_is_ar_centred_and_degraded_by_block_mean(result):
    truth, lowres = result.examples["truth"], result.examples["lowres"]
    assert truth.data.shape == (256, 256)
    assert lowres.data.shape == (64, 64)
    np.testing.assert_allclose(lowres.data, truth.data.reshape(64, 4, 64, 4).mean(axis=(1, 3)), rtol=1e-10)
    assert np.nanmax(np.abs(truth.data)) > 1000  # the crop holds the active region's strong field


def test_degrade_rejects_odd_sizes(hmi_cutout):
    sub = hmi_cutout.submap([0, 0] * u.pix, top_right=[101, 101] * u.pix)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        degrade(sub)


def test_bad_arguments(hmi_cutout):
    with pytest.raises(ValueError, match="no models"):
        evaluate([], [hmi_cutout])
    with pytest.raises(ValueError, match="multiple of 4"):
        evaluate(["nearest"], [hmi_cutout], crop=250)
    with pytest.raises(ValueError, match="unknown model"):
        evaluate(["nope"], [hmi_cutout])
    with pytest.raises(TypeError, match="evaluate sets calibrate itself"):
        evaluate(["nearest"], [hmi_cutout], calibrate=True)


def test_model_settings_reach_the_diffusion_models_only(hmi_cutout):
    """Runtime and sampler settings are for stochastic models; the baselines run as the paper's."""
    from sunpy_superres.options import Options
    from sunpy_superres.seeds import evaluation_seed

    from .models.tiny import tiny_model

    model = tiny_model("pixel", True)
    opts = Options(precision="fp32", sampler="ddim", steps=2, samples=7, seed=5)
    out = evaluate(["nearest", model], [hmi_cutout], samples=2, crop=64, seed=3, options=opts)
    diffusion = out.examples[model.name].meta
    assert (diffusion["srsched"], diffusion["srsteps"], diffusion["srprec"]) == ("ddim", 2, "fp32")
    # The evaluation's own settings, not those of the Options given (samples=7, seed=5).
    assert (diffusion["srsample"], diffusion["srseed"], diffusion["srcalfac"]) == (
        2,
        evaluation_seed(3, 0, 0),
        1,
    )
    assert "srsched" not in out.examples["nearest"].meta


def test_write_tables_and_figures(result, tmp_path):
    written = result.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    back = Table.read(tmp_path / "summary.ecsv")
    np.testing.assert_allclose(back["psnr_mean"], result.summary["psnr_mean"])
    for png in ("boxplots.png", "fourier.png", "power_spectra.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileExistsError, match="overwrite"):
        result.write(tmp_path)


def test_concatenate_equals_one_evaluation_of_all_models(result):
    """One evaluate() call per model, concatenated, is the evaluation of all of them at once."""
    from sunpy_superres.evaluation import Evaluation

    truth = [result.examples["truth"]]
    parts = [
        evaluate(["nearest"], truth, crop=None, seed=1),
        evaluate(["bicubic"], truth, crop=None, seed=1),
        evaluate([NoisyNearest(device="cpu")], truth, samples=3, crop=None, seed=1),
    ]
    joined = Evaluation.concatenate(parts)
    assert list(joined.summary["model"]) == list(result.summary["model"])
    for name in ("psnr_mean", "flux_error_mean", "coverage_2sd_mean"):
        np.testing.assert_allclose(joined.summary[name], result.summary[name], rtol=1e-6)
    # coverage is NaN, not masked, for the deterministic rows, as in one evaluate() call
    assert np.isnan(joined.summary["coverage_2sd_mean"][0]) and not hasattr(
        joined.summary["coverage_2sd_mean"], "mask"
    )
    assert len(joined.records) == len(result.records)
    assert set(joined.examples) == set(result.examples) and set(joined.calibration) == {"noisy-nearest"}
    with pytest.raises(ValueError, match="more than one evaluation"):
        Evaluation.concatenate([parts[0], parts[0]])
    with pytest.raises(ValueError, match="different images"):
        Evaluation.concatenate([parts[0], evaluate(["bicubic"], truth, crop=None, seed=2)])
    with pytest.raises(ValueError, match="no evaluations"):
        Evaluation.concatenate([])


def test_fourier_figure_shows_the_models_asked_for(result):
    import matplotlib.pyplot as plt

    from sunpy_superres.evaluation import plot_fourier

    fig = plot_fourier(result, models=["bicubic"])
    assert [ax.get_title() for ax in fig.axes] == ["FT - truth", "FT - bicubic"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no output of \\['ldm'\\]"):
        plot_fourier(result, models=["ldm"])


def test_evaluate_command(tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.main(["evaluate", HMI_AR_CUTOUT, "-o", str(out), "--crop", "128"]) == 0
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "nearest" in printed
    table = Table.read(out / "summary.ecsv")
    assert list(table["model"]) == ["nearest", "bicubic"]
    assert cli.main(["evaluate", HMI_AR_CUTOUT, "-o", str(out), "--crop", "128"]) == 2


def test_degrade_drops_stale_encoding_keys(hmi_cutout, tmp_path):
    assert "blank" in hmi_cutout.meta  # the shipped cut-out keeps its original integer encoding
    lr = degrade(hmi_cutout)
    assert not {"blank", "bscale", "bzero", "datamean"} & set(lr.meta)
    assert lr.meta["wavelnth"] == hmi_cutout.meta["wavelnth"] and lr.date == hmi_cutout.date
    lr.save(tmp_path / "lr.fits")  # a float map with BLANK set cannot be written
    np.testing.assert_allclose(sunpy.map.Map(tmp_path / "lr.fits").data, lr.data)


def _gaussian_prediction(hmi_cutout, std_factor=1.0, seed=0):
    """An UncertaintyMap whose truth is its mean plus Gaussian noise of its (heteroscedastic) std."""
    from sunpy_superres import UncertaintyMap

    rng = np.random.default_rng(seed)
    mean = np.asarray(hmi_cutout.data, dtype=np.float64)
    std = 5.0 + 0.05 * np.abs(mean)
    truth = sunpy.map.Map(mean + rng.normal(0, std), hmi_cutout.meta)
    pred = UncertaintyMap.from_map(sunpy.map.Map(mean, hmi_cutout.meta), std=std_factor * std)
    return pred, truth


def test_uncertainty_calibration_of_a_calibrated_gaussian(hmi_cutout):
    from sunpy_superres.evaluation import uncertainty_calibration

    pred, truth = _gaussian_prediction(hmi_cutout)
    table = uncertainty_calibration([pred], [truth])
    assert list(table["bin"]) == ["all", "0-100 G", "100-500 G", ">500 G"]
    assert table["n_pixels"][0] == pred.data.size == sum(table["n_pixels"][1:])
    for row in table:
        if row["n_pixels"] < 20000:  # the >500 G bin is small, and selected on the noisy truth
            continue
        assert row["coverage_1sd"] == pytest.approx(0.6827, abs=0.02)
        assert row["coverage_2sd"] == pytest.approx(0.9545, abs=0.01)
        assert row["mean_z2"] == pytest.approx(1, abs=0.08)
        assert row["std_over_rmse"] == pytest.approx(1, abs=0.04)
        assert row["ence"] < 0.1
    # The std grows with |B|, so does the error: the map ranks pixels by their error.
    assert table["spearman"][0] > 0.2


def test_uncertainty_calibration_sees_a_spread_too_wide(hmi_cutout):
    from sunpy_superres.evaluation import uncertainty_calibration

    pred, truth = _gaussian_prediction(hmi_cutout, std_factor=2.0)
    row = uncertainty_calibration([pred], [truth])[0]
    # Within +-1 std of a spread twice too wide: within 2 true std, 0.954.
    assert row["coverage_1sd"] == pytest.approx(0.9545, abs=0.01)
    assert row["std_over_rmse"] == pytest.approx(2, rel=0.03)
    assert row["mean_z2"] == pytest.approx(0.25, rel=0.05)
    assert row["ence"] == pytest.approx(0.5, abs=0.03)  # |rmv - rmse| / rmv = |2s - s| / 2s in every bin
    with pytest.raises(ValueError, match="one truth per prediction"):
        uncertainty_calibration([pred], [])
    with pytest.raises(ValueError, match="UncertaintyMaps"):
        uncertainty_calibration([truth], [truth])


class _CalibratedNoisy(NoisyNearest):
    """A stochastic stand-in whose uncertainty calibration was fitted on antithetic pairs."""

    name = "calibrated-noisy"

    class uncertainty_calibration:  # noqa: N801  (duck-types the design of a conformal calibration)
        antithetic, symmetric = True, False

        @staticmethod
        def apply(out, std, samples, level):
            return std

        @staticmethod
        def describe(samples, level):
            return "identity"


def test_sample_designs_are_recorded_and_mixed_ones_warned_of(result):
    """ "auto" draws each model's samples as its calibration was fitted; the summary says how, and a
    table of models drawn differently warns, in one call or concatenated."""
    from sunpy_superres.evaluation import Evaluation

    assert result.summary.meta["sample_designs"] == {"noisy-nearest": "independent samples"}
    truth = [result.examples["truth"]]
    flipped = evaluate(
        [NoisyNearest(device="cpu")], truth, samples=2, crop=None, seed=1, antithetic=True, symmetric=True
    )
    assert flipped.summary.meta["sample_designs"] == {
        "noisy-nearest": "antithetic pairs under the input's flips"
    }
    with pytest.warns(UserWarning, match="drawn in different designs .*calibrated-noisy: antithetic pairs"):
        both = evaluate(
            [NoisyNearest(device="cpu"), _CalibratedNoisy(device="cpu")], truth, samples=2, crop=None
        )
    assert set(both.summary.meta["sample_designs"].values()) == {"independent samples", "antithetic pairs"}
    alike = evaluate(
        [NoisyNearest(device="cpu"), _CalibratedNoisy(device="cpu")],
        truth,
        samples=2,
        crop=None,
        antithetic=True,
    )
    assert set(alike.summary.meta["sample_designs"].values()) == {"antithetic pairs"}
    calibrated = evaluate([_CalibratedNoisy(device="cpu")], truth, samples=2, crop=None, seed=1)
    with pytest.warns(UserWarning, match="different designs"):
        joined = Evaluation.concatenate([flipped, calibrated])
    assert joined.summary.meta["sample_designs"] == {
        "noisy-nearest": "antithetic pairs under the input's flips",
        "calibrated-noisy": "antithetic pairs",
    }


def _spread_evaluation(values):
    """An `Evaluation` whose records hold ``values[model][image]``: one flux_bias per sample."""
    from astropy.table import Table

    from sunpy_superres.evaluation import Evaluation

    rows = [
        {"model": model, "image": i, "sample": k, "flux_bias": float(v), "flux_error": abs(float(v))}
        for model, images in values.items()
        for i, samples in enumerate(images)
        for k, v in enumerate(samples)
    ]
    return Evaluation(summary=Table(), records=Table(rows=rows), examples={})


def test_sample_spread_of_known_records():
    """Per image the mean of the samples' signed errors and their spread; rms over images; the
    deterministic model (one output per image) and the mean rows (sample -1) are left out."""
    from sunpy_superres.evaluation import sample_spread

    ev = _spread_evaluation({"s": [[3, 4, 5, 6], [-1, -1, 1, 1]], "d": [[0.5], [2.0]]})
    ev.records.add_row({"model": "s", "image": 0, "sample": -1, "flux_bias": 100.0, "flux_error": 100.0})
    table = sample_spread(ev)
    assert list(table["model"]) == ["s"] and table["images"][0] == 2 and table["samples"][0] == 4
    spreads = [np.std([3, 4, 5, 6], ddof=1), np.std([-1, -1, 1, 1], ddof=1)]
    assert table["error_rms"][0] == pytest.approx(np.sqrt((4.5**2 + 0**2) / 2))
    assert table["spread_rms"][0] == pytest.approx(np.sqrt(np.mean(np.square(spreads))))
    assert table["error_over_spread"][0] == pytest.approx(table["error_rms"][0] / table["spread_rms"][0])
    assert table["within_2sd"][0] == 0.5  # 4.5 > 2 x 1.29; 0 <= 2 x 1.15
    assert str(table["error_rms"].unit) == "%" and table.meta["metric"] == "flux_bias"


def test_sample_spread_when_truth_and_samples_are_drawn_alike():
    """Truth and 8 samples exchangeable: the mean's error is sqrt(1 + 1/8) of the spread, and the
    truth lies within 2 sd of the mean with Student's t probability (7 degrees of freedom)."""
    from scipy.stats import t

    from sunpy_superres.evaluation import sample_spread

    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4000, 9)) * rng.uniform(0.5, 2, size=(4000, 1))  # column 0: the truth
    table = sample_spread(_spread_evaluation({"m": draws[:, 1:] - draws[:, :1]}))
    expected = 2 * t.cdf(2 / np.sqrt(1 + 1 / 8), 7) - 1  # 0.899
    assert table["within_2sd"][0] == pytest.approx(expected, abs=0.015)
    assert table["error_over_spread"][0] == pytest.approx(np.sqrt(1 + 1 / 8), rel=0.05)


def test_sample_spread_refuses_what_it_cannot_measure(result):
    from sunpy_superres.evaluation import sample_spread

    with pytest.raises(ValueError, match="needs a signed error, one of 'flux_bias'; got 'flux_error'"):
        sample_spread(result, "flux_error")
    with pytest.raises(ValueError, match="no model of this evaluation has several samples"):
        sample_spread(_spread_evaluation({"d": [[0.5], [2.0]]}))
    # The module's evaluation: its stochastic model, three samples of one image.
    table = sample_spread(result)
    mine = result.records[(result.records["model"] == table["model"][0]) & (result.records["sample"] >= 0)]
    assert len(table) == 1 and table["samples"][0] == 3 == len(mine)
    assert table["error_rms"][0] == pytest.approx(abs(np.mean(mine["flux_bias"])))
    assert table["spread_rms"][0] == pytest.approx(np.std(mine["flux_bias"], ddof=1))
