import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"

# Tiny but real: a few hundred digits, small networks, two epochs.
TINY = dict(data_dir=str(FIXTURE_DATA), download=False, val_size=100, epochs=2, batch_size=50, width=8)

# The same settings as each entry point's params (`mlflow run -P`, `latent-models --option`): one
# epoch, the fixture's first 100 test images, no system-metrics thread; what the end-to-end tests
# and the docs' commands run with (tests/docs_commands.py puts them in place of what the docs say).
_DATA = dict(data_dir=str(FIXTURE_DATA), download="false", val_size=100, limit_test=100, system_metrics="false")
_TRAIN = dict(_DATA, epochs=1, batch_size=TINY["batch_size"], width=TINY["width"])
_IW = dict(iw_samples=10, iw_images=50)
TINY_RUNS: dict[str, dict] = {
    "ae": dict(_TRAIN, iterations=1),
    "vae": dict(_TRAIN, **_IW),
    "main": dict(_DATA, ae_epochs=1, vae_epochs=1),
    "evaluate": dict(
        _DATA, val_size=0, noise="uniform", images=50, tune_images=20, samples=64, classifier_epochs=1, **_IW
    ),
    "sweep": dict(data_dir=str(FIXTURE_DATA)),
    "search": dict(data_dir=str(FIXTURE_DATA), n_trials=2, timeout=0),
    "promote": {},
}

SERVER_DEADLINE_S = 120


@pytest.fixture
def fixture_data() -> Path:
    return FIXTURE_DATA


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A private SQLite store and artifact folder; the test runs inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch) as uri:
        yield uri


@contextlib.contextmanager
def tracking_at(uri: str, monkeypatch):
    """MLflow in this process (and in the processes it starts) tracks to `uri` and registers
    there, knowing no experiment or run of another store; undone on leaving."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # An experiment set by an earlier test names an id in that test's store, not this one.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _forget_active_experiment()
    try:
        yield uri
    finally:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # mlflow.set_experiment exports it to subprocesses
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        # set_registry_uri exports MLFLOW_REGISTRY_URI and set_registry_uri(None) keeps it: a
        # process started later (a CLI run, a server) would register into this store.
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        _forget_active_experiment()


def _forget_active_experiment():
    """mlflow.set_experiment() is process-global: an experiment id from an earlier test's
    store would leak into the next test's fresh store."""
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment() exports it too


# MLflow 3's server job runner: none of the servers the tests start needs server-side jobs, and it
# starts seven huey consumer processes and leaves a folder in /dev/shm behind.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, deadline_s: float = SERVER_DEADLINE_S) -> str | None:
    """None once `url` answers 200; else why not (the process exited, or `deadline_s` passed),
    with the end of its log."""
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return None
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return f"not up after {deadline_s:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.25)


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str, root: Path, port: int, app_name: str | None = None, env: dict[str, str] | None = None
):
    """`mlflow server --backend-store-uri <uri> --artifacts-destination <root>/artifacts
    --serve-artifacts` on 127.0.0.1:<port>, one worker, in its own process group (log:
    <root>/server.log). Yields its URL once /health answers; stops the group on leaving.
    `app_name` (e.g. `latent-models-auth`) is passed as `--app-name`, `env` added to its environment.

    Without MLflow 3's job runner (NO_JOB_RUNNER)."""
    root.mkdir(parents=True, exist_ok=True)
    url, log = f"http://127.0.0.1:{port}", root / "server.log"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *(["--app-name", app_name] if app_name else []),
    ]
    env = dict(os.environ, **NO_JOB_RUNNER, **(env or {}))
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    try:
        problem = wait_until_up(proc, f"{url}/health", log)
        assert problem is None, f"mlflow server {problem}"
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already when it failed to start
            os.killpg(proc.pid, signal.SIGTERM)  # the group this helper started, by its id
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def pytest_configure(config):
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def pytest_collection_modifyitems(config, items):
    """`cuda`-marked tests skip cleanly on a machine without a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
