"""The pipelines called directly (as the entry points do), on the fixture."""

import pytest
from mlflow.tracking import MlflowClient

from latent_models.config import MainConfig
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.training.main import run_main
from tests.conftest import TINY, TINY_DATA


def test_main_trains_both_as_children_of_one_parent(tracking):
    cfg = MainConfig(**TINY_DATA, limit_test=100, ae_epochs=1, vae_epochs=1, experiment_name="main-test")
    result = run_main(cfg)
    client = MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("main-test").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'",
    )
    assert sorted(r.info.run_name for r in children) == ["ae", "vae"]
    assert {r.data.tags["model_type"] for r in children} == {"denoiser", "vae"}
    parent = client.get_run(result["run_id"])
    assert parent.data.metrics["ae_test_psnr"] == pytest.approx(result["runs"]["ae"]["test_psnr"])
    assert {v.name for v in client.search_model_versions()} == {"latent-denoiser", "latent-vae"}


def test_same_seed_gives_same_metrics_and_register_false_skips_registry(tracking):
    common = dict(TINY, limit_test=100, register=False, seed=3)
    a, b = run_ae(AEConfig(**common)), run_ae(AEConfig(**common))
    c = run_ae(AEConfig(**{**common, "seed": 4}))
    assert a["test_psnr"] == b["test_psnr"] and a["test_ssim"] == b["test_ssim"]
    assert a["test_psnr"] != c["test_psnr"]
    assert a["registered_version"] is None
    assert MlflowClient().search_registered_models() == []
