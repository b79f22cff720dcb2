"""nproc_per_node=2: the entry point relaunches itself under torchrun, two CPU processes
train with DDP (gloo, loopback) on the fixture, and rank 0 alone logs and registers. The
metrics match one process training on the same global batch."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from tests.conftest import REPO, TINY_SUBSET, cli_options

DDP_RUN = dict(TINY_SUBSET, iterations=1, seed=5, registered_model_name="ddp-denoiser")


@pytest.mark.e2e
def test_two_process_ddp_matches_one_process(tracking, tmp_path):
    args = cli_options({**DDP_RUN, "experiment_name": "ddp", "nproc_per_node": 2})
    env = dict(os.environ, LATENT_MODELS_CHECKPOINT_DIR=str(tmp_path / "checkpoints"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "entrypoints" / "ae.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])  # rank 0 only
    assert run.info.status == "FINISHED" and run.data.params["nproc_per_node"] == "2"
    (version,) = client.search_model_versions("name='ddp-denoiser'")
    assert version.run_id == run.info.run_id

    single = run_ae(AEConfig(**{**DDP_RUN, "experiment_name": "single", "register": False}))
    for name in ("train_loss", "val_loss", "val_psnr"):
        got = [m.value for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
        want = [m.value for m in sorted(client.get_metric_history(single["run_id"], name), key=lambda m: m.step)]
        assert len(got) == 2 and got == pytest.approx(want, rel=2e-3), name
        assert got[1] != pytest.approx(got[0], rel=2e-3), f"{name}: the tolerance would hide an epoch of training"
    assert run.data.metrics["test_psnr"] == pytest.approx(single["test_psnr"], rel=2e-3)
