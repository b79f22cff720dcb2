"""The evaluate pipeline on tiny models trained on the fixture."""

import json
import math

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from latent_models import cli
from latent_models.config import EvaluateConfig
from latent_models.errors import ConfigError
from latent_models.evaluation.evaluate import run_evaluate
from latent_models.kinds.denoiser.baselines import BASELINES
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.kinds.denoiser.scores import EVALUATION_LEVELS
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.recipe import run_vae
from tests.conftest import FIXTURE_DATA, TINY

DATA = dict(data_dir=str(FIXTURE_DATA), download=False)  # val_size and seed: the trained model's


def _artifact_json(run_id: str, path: str) -> dict:
    return json.loads(open(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)).read())


def test_denoiser_is_compared_with_every_baseline_at_every_level(tracking):
    trained = run_ae(AEConfig(**TINY, limit_test=100, noise_level=0.6, iterations=1))
    result = run_evaluate(
        EvaluateConfig(
            **DATA, model_uri="models:/latent-denoiser@candidate", noise="uniform,mask", images=60, tune_images=40
        )
    )
    methods = {"model", "noisy_input", *(b.name for b in BASELINES)}
    rows = result["table"]
    levels = {"uniform": sorted(EVALUATION_LEVELS["uniform"] + [0.6]), "mask": EVALUATION_LEVELS["mask"]}
    assert {(r["noise"], r["level"], r["method"]) for r in rows} == {
        (noise, level, m) for noise, values in levels.items() for level in values for m in methods
    }
    assert len(rows) == sum(len(v) for v in levels.values()) * len(methods)
    assert all(
        r["setting"].startswith(("sigma=", "size=", "h=")) for r in rows if r["method"] in {b.name for b in BASELINES}
    )
    # The trained level's numbers are the headline metrics, and the margin is computed from them.
    at = {r["method"]: r["psnr"] for r in rows if (r["noise"], r["level"]) == ("uniform", 0.6)}
    assert result["psnr_model"] == at["model"] and result["psnr_noisy_input"] == at["noisy_input"]
    best = max(v for m, v in at.items() if m not in ("model", "noisy_input"))
    assert result["psnr_margin_over_best_baseline"] == pytest.approx(at["model"] - best)
    # The model's PSNR at its trained setting matches what training measured on these images.
    assert abs(result["psnr_model"] - trained["test_psnr"]) < 1.0

    run = MlflowClient().get_run(result["run_id"])
    assert run.data.tags["evaluated_model"] == "models:/latent-denoiser@candidate"
    assert run.data.tags["evaluated_run_id"] == trained["run_id"]
    assert run.data.tags["beats_all_baselines"] == str(result["psnr_margin_over_best_baseline"] > 0)
    assert run.data.tags["split"] == "val_size=100 seed=0"  # the trained run's split, not the defaults
    assert "test_psnr" not in run.data.metrics  # training's name for the full test set
    assert run.data.metrics["psnr/mask_0.5/median"] == pytest.approx(
        next(r["psnr"] for r in rows if (r["noise"], r["level"], r["method"]) == ("mask", 0.5, "median"))
    )
    # The evaluated model is the run's input, and its own metrics are linked to it on the images used.
    assert [i.model_id for i in run.inputs.model_inputs] == [trained["model_id"]]
    linked = {m.key: m for m in mlflow.get_logged_model(trained["model_id"]).metrics if m.run_id == run.info.run_id}
    assert set(linked) == {
        "psnr_model",
        "ssim_model",
        "mse_model",
        "psnr_margin_over_best_baseline",
        *(k for k in result if k.endswith("/model")),
    }
    assert all(m.dataset_name == "mnist-test[:60]" and m.value == pytest.approx(result[m.key]) for m in linked.values())
    assert "psnr_noisy_input" in run.data.metrics and "psnr_noisy_input" not in linked  # a baseline's: the run's
    table = _artifact_json(result["run_id"], "evaluation/denoiser_comparison.json")
    assert len(table["data"]) == len(rows) and "psnr" in table["columns"]
    png = mlflow.artifacts.download_artifacts(
        run_id=result["run_id"], artifact_path="figures/denoiser_vs_baselines.png"
    )
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_vae_sample_quality_and_the_classifier_is_trained_once(tracking):
    trained = run_vae(VAEConfig(**TINY, limit_test=100, iw_samples=5, prior_components=3))
    cfg = EvaluateConfig(
        **DATA,
        limit_test=100,
        model_uri="models:/latent-vae@candidate",
        iw_samples=5,
        iw_images=40,
        samples=300,
        components=3,
        classifier_epochs=1,
        ood_images=60,
    )
    first = run_evaluate(cfg)
    linked = {
        m.key: m.dataset_name
        for m in mlflow.get_logged_model(trained["model_id"]).metrics
        if m.run_id == first["run_id"]
    }
    assert (
        linked["fid_fitted"] == linked["test_neg_elbo"] == "mnist-test" and linked["test_iw_nll"] == "mnist-test[:40]"
    )
    assert "fid_train_vs_test" not in linked and "classifier_test_accuracy" not in linked
    # Out of distribution: the MNIST model's test digits against Fashion-MNIST's test clothes.
    assert linked["ood_auroc_nll"] == linked["ood_auroc_complexity"] == linked["ood_auroc_ratio"] == "mnist-test[:60]"
    for name in ("ood_auroc_nll", "ood_auroc_complexity", "ood_auroc_ratio"):
        assert 0.0 <= first[name] <= 1.0
    ood_run = MlflowClient().get_run(first["run_id"])
    assert ood_run.data.metrics["ood_auroc_nll"] == pytest.approx(first["ood_auroc_nll"])
    assert ood_run.data.tags["ood"] == "mnist test[:60] against fashion-mnist test[:60], k=5"
    assert ood_run.data.tags["ood_raw_likelihood"].startswith(("fooled", "weak", "separates"))
    png = mlflow.artifacts.download_artifacts(run_id=first["run_id"], artifact_path="figures/ood_scores.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    for name in (
        "fid_normal",
        "fid_fitted",
        "class_entropy_normal",
        "class_entropy_fitted",
        "mean_confidence_normal",
        "mean_confidence_fitted",
        "test_neg_elbo",
        "test_iw_nll",
    ):
        assert name in first
    assert first["fid_ratio_normal_to_fitted"] == pytest.approx(first["fid_normal"] / first["fid_fitted"])
    rows = {r["sampler"]: r for r in first["table"]}
    assert set(rows) == {"normal", "fitted"}
    for name, row in rows.items():
        shares = [row[f"class_{c}"] for c in range(10)]
        assert sum(shares) == pytest.approx(1.0)
        entropy = -sum(p * math.log(p) for p in shares if p > 0)
        assert first[f"class_entropy_{name}"] == pytest.approx(entropy) == row["class_entropy"]
        assert first[f"fid_{name}"] == row["fid"] > first["fid_train_vs_test"]
    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert "model's own" in run.data.tags["fitted_prior"]  # components match the served prior
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{first['run_id']}'")
    assert [c.data.tags["model_type"] for c in children] == ["classifier"]

    second = run_evaluate(EvaluateConfig(**{**vars(cfg), "components": 2}))
    assert [int(v.version) for v in client.search_model_versions("name='latent-mnist-classifier'")] == [1]
    assert not client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{second['run_id']}'")
    assert second["classifier_test_accuracy"] == first["classifier_test_accuracy"]
    assert "fitted here" in client.get_run(second["run_id"]).data.tags["fitted_prior"]
    assert first["fid_normal"] == pytest.approx(second["fid_normal"])  # same samples, same classifier
    with pytest.raises(ConfigError, match="is a ClassifierPyfunc, not a latent-models denoiser or vae"):
        run_evaluate(EvaluateConfig(**DATA, model_uri="models:/latent-mnist-classifier/1"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model_uri", "models:/no-such-model@champion"], "cannot find a model at 'models:/no-such-model@champion'"),
        (["--noise", "speckle"], "noise must be one of"),
        (["--samples", "10"], "samples must be >= 64"),
        (["--ood_images", "-1"], "ood_images must be >= 0 (0: all), got -1"),
    ],
)
def test_evaluate_mistakes_give_one_clear_error(tracking, args, message):
    result = CliRunner().invoke(cli.evaluate, ["--data_dir", str(FIXTURE_DATA), *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a ClickException, no traceback
    assert message in result.output


def test_vae_on_images_without_a_classifier_gets_no_fid_and_says_so(tracking, monkeypatch, capsys):
    """A colour VAE evaluated on a folder of the user's images (no classifier for their
    classes): the likelihoods in nats and bits/dim, the samples figure, and a tag instead of FID."""
    import numpy as np
    import torch

    from latent_models.data import DataSplits, Split
    from latent_models.evaluation import evaluate
    from latent_models.kinds.vae.config import VAEModelConfig
    from latent_models.kinds.vae.model import ConvVAE
    from latent_models.serving.logged_model import model_saver
    from latent_models.tracking import log_model

    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = ConvVAE(VAEModelConfig(image_shape=shape, latent_dim=4, width=8, likelihood="gaussian")).eval()
    g = torch.Generator().manual_seed(0)

    def split(n):
        return Split(torch.rand((n, *shape), generator=g), torch.zeros(n, dtype=torch.int64))

    photos = DataSplits(
        "my-photos", str(FIXTURE_DATA), split(120), split(20), split(30), "0123456789abcdef", source="folder"
    )
    monkeypatch.setattr(evaluate, "load_data", lambda cfg: photos)
    with mlflow.start_run():
        logged = log_model("vae", model_saver(model, photos.test.images[:2].numpy()), 0, "vae")
    result = run_evaluate(
        EvaluateConfig(**DATA, model_uri=logged.model_uri, iw_samples=3, iw_images=10, samples=64, components=2)
    )
    printed = capsys.readouterr().out
    assert "FID is not computed (no classifier for dataset my-photos)" in printed
    run = MlflowClient().get_run(result["run_id"])
    assert run.data.tags["fid"] == "not computed (no classifier for dataset my-photos)"
    assert "classifier" not in run.data.tags
    assert not any(
        k.startswith(("fid", "class_entropy", "mean_confidence", "classifier", "ood")) for k in run.data.metrics
    )
    assert run.data.tags["ood"] == "not computed (no out-of-distribution pair for dataset my-photos)"
    assert not MlflowClient().search_registered_models()  # no classifier trained or registered
    dims = np.prod(shape)
    for nats, bits in (("test_neg_elbo", "test_neg_elbo_bits_per_dim"), ("test_iw_nll", "test_iw_nll_bits_per_dim")):
        assert run.data.metrics[bits] == pytest.approx((result[nats] + dims * math.log(256)) / (dims * math.log(2)))
    linked = {m.key: m.dataset_name for m in mlflow.get_logged_model(logged.model_id).metrics}
    assert linked["test_neg_elbo_bits_per_dim"] == "my-photos-test"
    assert linked["test_iw_nll_bits_per_dim"] == "my-photos-test[:10]"
    png = mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="figures/samplers.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
