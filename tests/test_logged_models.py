"""MLflow 3's model view tells the truth: each logged model is named for what it is, and the
metrics linked to it (and so to its registered version) are exactly those of its weights:
the selected epoch's validation metrics on the validation dataset and the test metrics on
the test dataset. Checkpoints can be models too; runs log system metrics and describe
themselves."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.kinds.vae.config import VAEConfig
from latent_models.kinds.vae.recipe import run_vae
from tests.conftest import TINY_SUBSET

SMALL = dict(TINY_SUBSET, epochs=3)
AE = dict(SMALL, iterations=1, system_metrics=False)
VAE = dict(SMALL, latent_dim=4, iw_samples=4, iw_images=20, prior_components=2, system_metrics=False)


def _version_metrics(name: str, version: str) -> list:
    """The metrics a registered version shows: its logged model's (the version's source)."""
    source = MlflowClient().get_model_version(name, version).source
    assert source.startswith("models:/m-"), source
    return mlflow.get_logged_model(source[len("models:/") :]).metrics


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_the_logged_model_carries_exactly_its_own_metrics(tracking, kind):
    if kind == "ae":
        result = run_ae(AEConfig(**AE, registered_model_name="truth-denoiser"))
        name, registered, val_keys = "denoiser", "truth-denoiser", {"val_loss", "val_psnr", "val_ssim"}
        test_keys = {"test_psnr", "test_ssim", "test_mse"}
    else:
        result = run_vae(VAEConfig(**VAE, registered_model_name="truth-vae"))
        name, registered = "vae", "truth-vae"
        val_keys = {"val_neg_elbo", "val_recon", "val_kl", "val_active_units", "val_neg_elbo_bits_per_dim"}
        test_keys = {"test_neg_elbo", "test_recon", "test_kl", "test_active_units", "test_iw_nll", "test_iw_nll_stderr"}
        test_keys |= {"test_neg_elbo_bits_per_dim", "test_iw_nll_bits_per_dim"}
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    best = int(run.data.metrics["best_epoch"])
    assert best > 0, "precondition: the selected epoch is not the first, so epoch-0 values can be told apart"
    history = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)} for k in val_keys}
    assert all(sorted(h) == [0, 1, 2] for h in history.values())  # no second point at the selected step

    model = mlflow.get_logged_model(result["model_id"])
    assert model.name == name and model.source_run_id == run.info.run_id and model.params["seed"] == "0"
    assert run.outputs.model_outputs[0].model_id == model.model_id and run.outputs.model_outputs[0].step == best
    for metrics in (model.metrics, _version_metrics(registered, result["registered_version"])):
        assert {m.key for m in metrics} == val_keys | test_keys  # no epoch extras, no noisy-input baselines
        for m in metrics:
            if m.key in val_keys:
                assert (m.value, m.step, m.dataset_name) == (history[m.key][best], best, "mnist-val"), m
                if history[m.key][0] != history[m.key][best]:
                    assert m.value != history[m.key][0], m
            else:
                assert (m.value, m.dataset_name) == (run.data.metrics[m.key], "mnist-test"), m
                assert m.value == pytest.approx(result[m.key])
    if kind == "ae":  # the baselines describe the data: the run has them, the model does not
        assert "test_psnr_noisy" in run.data.metrics and "val_psnr_noisy" in run.data.metrics
    # The report's first paragraph is the run's description in the UI.
    assert run.data.tags["mlflow.note.content"].startswith("This run trained")


def test_checkpoints_as_models_one_per_epoch_with_its_validation_metrics(tracking):
    result = run_ae(AEConfig(**AE, log_checkpoints=True, register=True, registered_model_name="ckpt-denoiser"))
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    models = {
        m.name: m for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    }
    assert set(models) == {"denoiser", "denoiser-epoch-0", "denoiser-epoch-1", "denoiser-epoch-2"}
    steps = {o.model_id: o.step for o in run.outputs.model_outputs}
    psnr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_psnr")}
    for epoch in range(3):
        checkpoint = models[f"denoiser-epoch-{epoch}"]
        assert steps[checkpoint.model_id] == epoch
        assert {(m.key, m.value, m.dataset_name) for m in checkpoint.metrics if m.key == "val_psnr"} == {
            ("val_psnr", psnr[epoch], "mnist-val")
        }
        assert {m.key for m in checkpoint.metrics} == {"val_loss", "val_psnr", "val_ssim"}
    # The registered one is the final model, the selected epoch's weights; any checkpoint can be registered.
    assert client.get_model_version("ckpt-denoiser", "1").source == f"models:/{models['denoiser'].model_id}"
    best = int(run.data.metrics["best_epoch"])
    chosen = mlflow.pyfunc.load_model(f"models:/{models['denoiser'].model_id}")
    same = mlflow.pyfunc.load_model(f"models:/{models[f'denoiser-epoch-{best}'].model_id}")
    import numpy as np

    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    assert np.array_equal(chosen.predict(x), same.predict(x))
    version = mlflow.register_model(f"models:/{models['denoiser-epoch-0'].model_id}", "ckpt-denoiser")
    assert version.version == "2" or version.version == 2


def test_system_metrics_are_logged_unless_turned_off(tracking, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    on = run_ae(AEConfig(**{**AE, "system_metrics": True, "epochs": 2}, register=False))
    off = run_ae(AEConfig(**{**AE, "epochs": 2}, register=False))
    client = MlflowClient()
    on_keys = set(client.get_run(on["run_id"]).data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= on_keys
    assert not any(k.startswith("system/") for k in client.get_run(off["run_id"]).data.metrics)
