"""Two training runs started at once against one fresh SQLite store both finish, with all
their metrics, params, tags and registered versions."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TINY_SUBSET, cli_options

EPOCHS = 2
ARGS = cli_options(
    dict(
        TINY_SUBSET,
        epochs=EPOCHS,
        iterations=1,
        experiment_name="together",
        registered_model_name="shared-denoiser",
    )
)


@pytest.mark.e2e
def test_two_runs_at_once_on_one_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, LATENT_MODELS_CHECKPOINT_DIR=str(tmp_path / "checkpoints"))
    env.pop("MLFLOW_RUN_ID", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "entrypoints" / "ae.py"),
                *ARGS,
                "--seed",
                str(seed),
                "--run_name",
                f"seed{seed}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["seed1", "seed2"]
    for run in runs:
        assert run.info.status == "FINISHED"
        for name in ("train_loss", "val_loss", "val_psnr", "val_ssim"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, name)) == list(range(EPOCHS))
        assert {"test_psnr", "test_ssim", "best_epoch"} <= set(run.data.metrics)
        assert run.data.tags["dataset_digest"] and run.data.tags["latent_models.version"]
        assert run.data.tags["latent_models.git_commit"]
    assert runs[0].data.metrics["test_psnr"] != runs[1].data.metrics["test_psnr"]
    versions = client.search_model_versions("name='shared-denoiser'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
