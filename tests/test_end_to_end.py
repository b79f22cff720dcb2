"""`mlflow run . -e ae|vae --env-manager local` on the fixture, into a private SQLite store."""

import base64
import html
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from latent_models.evaluation.report import METRIC_MEANINGS
from tests.conftest import FIXTURE_DATA, REPO

EPOCHS = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_PARAMS = [
    "val_size=100",
    f"epochs={EPOCHS}",
    "batch_size=50",
    "width=8",
    "limit_test=100",
    "download=false",
    f"data_dir={FIXTURE_DATA}",
]


def _env(tracking_uri):
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # `mlflow run --experiment-name` refuses both
    return env


def _mlflow_run(entry, experiment, params, tracking_uri, cwd):
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        entry,
        "--env-manager",
        "local",
        "--experiment-name",
        experiment,
    ]
    for p in params:
        cmd += ["-P", p]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(tracking_uri), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def _check_run(client, run, per_epoch, figures, final):
    assert run.info.status == "FINISHED"
    for name in per_epoch:
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == list(range(EPOCHS)), name
    for name in final:
        assert name in run.data.metrics, name
    local = Path(client.download_artifacts(run.info.run_id, "figures"))
    for fig in figures:
        data = (local / fig).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, fig
    # The report: every figure the run logged, embedded byte for byte; a meaning for every metric.
    report = Path(client.download_artifacts(run.info.run_id, "report.html")).read_text(encoding="utf-8")
    for png in sorted(local.iterdir()):
        assert f"base64,{base64.b64encode(png.read_bytes()).decode()}" in report, png.name
    assert html.escape(run.info.run_name) in report
    ours = {k for k in run.data.metrics if not k.startswith("system/")}  # MLflow's system metrics: its own
    assert ours <= set(METRIC_MEANINGS), ours - set(METRIC_MEANINGS)
    assert run.data.params["epochs"] == str(EPOCHS)
    assert run.data.tags["dataset_digest"]
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"mnist-train", "mnist-val", "mnist-test"}


def _predict_in_fresh_process(tracking_uri, model_uri, script, cwd):
    code = textwrap.dedent(f"""
        import json, numpy as np, mlflow
        model = mlflow.pyfunc.load_model({model_uri!r})
        {script}
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(tracking_uri), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_mlflow_run_ae(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, run = _mlflow_run(
        "ae", "e2e-ae", TINY_PARAMS + ["arch=unet", "registered_model_name=e2e-denoiser"], uri, tmp_path
    )
    _check_run(
        client,
        run,
        per_epoch=["train_loss", "val_loss", "val_psnr", "val_ssim"],
        figures=[
            "loss_curves.png",
            "denoising_val.png",
            "denoising_test.png",
            "psnr_vs_noise_level.png",
            "iterative_reconstruction.png",
        ],
        final=["test_psnr", "test_ssim", "test_mse", "test_psnr_noisy"],
    )
    (version,) = client.search_model_versions("name='e2e-denoiser'")
    assert version.run_id == run.info.run_id
    assert version.tags["noise"] == "uniform" and float(version.tags["test_psnr"]) == pytest.approx(
        run.data.metrics["test_psnr"], abs=1e-3
    )
    out = _predict_in_fresh_process(
        uri,
        f"models:/e2e-denoiser/{version.version}",
        """
        x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
        y = model.predict(x)
        print(json.dumps({"shape": list(y.shape), "min": float(y.min()), "max": float(y.max()),
                          "dtype": str(y.dtype)}))
    """,
        tmp_path,
    )
    assert out["shape"] == [3, 28, 28] and out["dtype"] == "float32"
    assert 0.0 <= out["min"] <= out["max"] <= 1.0


@pytest.mark.e2e
def test_mlflow_run_vae(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, run = _mlflow_run(
        "vae", "e2e-vae", TINY_PARAMS + ["registered_model_name=e2e-vae", "iw_samples=10"], uri, tmp_path
    )
    _check_run(
        client,
        run,
        per_epoch=["train_loss", "val_neg_elbo", "val_recon", "val_kl", "val_active_units"],
        figures=["loss_curves.png", "reconstructions.png", "samples.png", "interpolation.png", "latent_map.png"],
        final=["test_neg_elbo", "test_iw_nll"],
    )
    assert run.data.metrics["test_iw_nll"] <= run.data.metrics["test_neg_elbo"] + 1.0
    (version,) = client.search_model_versions("name='e2e-vae'")
    out = _predict_in_fresh_process(
        uri,
        f"models:/e2e-vae/{version.version}",
        """
        x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
        recon = model.predict(x)
        a = model.predict(x[:1], params={"mode": "sample", "n": 5, "seed": 3})
        b = model.predict(x[:1], params={"mode": "sample", "n": 5, "seed": 3})
        print(json.dumps({"recon": list(recon.shape), "samples": list(a.shape), "same": bool((a == b).all()),
                          "min": float(a.min()), "max": float(a.max())}))
    """,
        tmp_path,
    )
    assert out["recon"] == [2, 28, 28] and out["samples"] == [5, 28, 28] and out["same"]
    assert 0.0 <= out["min"] <= out["max"] <= 1.0
