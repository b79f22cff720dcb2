"""A team tracking server: `mlflow server --backend-store-uri postgresql://...
--artifacts-destination <dir> --serve-artifacts` over a real, throwaway PostgreSQL cluster
on 127.0.0.1. A training run and its registration go through the server, and the
registered model serves from it.

Needs Debian's `postgresql` package (initdb, pg_ctl) and psycopg 3 (`.ci/run` and the test
extra install both); skips with the reason where they are missing or the cluster will not start.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from latent_models.config import AEConfig
from latent_models.training.denoiser import run_ae
from tests.conftest import FIXTURE_DATA, mlflow_server
from tests.test_serving_server import Server, _free_port

pytestmark = pytest.mark.e2e


def _pg_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(os.path.realpath(found)).parent if found else None


@pytest.fixture
def postgres():
    """A fresh cluster in a temporary folder, trust auth on 127.0.0.1 only; stopped and removed after."""
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[test]' installs psycopg[binary]")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="latent-models-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: use the package's postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    init = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust",
                           "-E", "UTF8"], capture_output=True, text=True)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed, cannot start PostgreSQL here: {init.stderr.strip()[-500:]}")
    start = subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                            "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"], capture_output=True, text=True)
    if start.returncode != 0:
        log = (root / "log").read_text()[-500:] if (root / "log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {log.strip()}")
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
                       check=True, capture_output=True)
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tracking_server(postgres, tmp_path):
    with mlflow_server(postgres, tmp_path, _free_port()) as url:
        yield url, tmp_path / "artifacts"


def test_train_register_and_serve_through_a_postgres_backed_server(tracking_server, tmp_path, monkeypatch):
    import mlflow

    url, artifacts = tracking_server
    work = tmp_path / "client"  # no local store: everything must go through the server
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("LATENT_MODELS_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        # Gaussian 0.3: two short epochs already beat the noisy input, so the version is champion.
        run_ae(AEConfig(data_dir=str(FIXTURE_DATA), download=False, val_size=100, limit_test=100, epochs=2,
                        batch_size=20, lr=5e-3, noise="gaussian", noise_level=0.3, width=8, iterations=1,
                        experiment_name="team", registered_model_name="team-denoiser"))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert not (work / "mlruns").exists() and not (work / "mlflow.db").exists()

    client = MlflowClient(url)
    (run,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_psnr")) == [0, 1]
    assert run.data.tags["dataset_digest"] and run.data.tags["latent_models.version"]
    (version,) = client.search_model_versions("name='team-denoiser'")
    assert client.get_model_version_by_alias("team-denoiser", "champion").version == version.version
    assert list(artifacts.rglob("MLmodel")) and list(artifacts.rglob("last.pt"))  # stored by the server

    server = Server("models:/team-denoiser@champion", url, tmp_path / "serve.log")
    try:
        server.wait_ready()
        x = np.random.default_rng(0).random((2, 28, 28)).round(3).tolist()
        answer = server.post({"inputs": x})
        assert answer.status_code == 200, answer.text[:500]
        y = np.asarray(answer.json()["predictions"])
        assert y.shape == (2, 28, 28) and 0.0 <= y.min() <= y.max() <= 1.0
    finally:
        server.stop()
