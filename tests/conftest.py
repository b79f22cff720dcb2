import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"

# Tiny but real: a few hundred digits, small networks, two epochs.
TINY = dict(data_dir=str(FIXTURE_DATA), download=False, val_size=100, epochs=2, batch_size=50, width=8)


@pytest.fixture
def fixture_data() -> Path:
    return FIXTURE_DATA


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A private SQLite store and artifact folder; the test runs inside tmp_path."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # An experiment set by an earlier test names an id in that test's store, not this one.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _forget_active_experiment()
    yield uri
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # mlflow.set_experiment exports it to subprocesses
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    _forget_active_experiment()


def _forget_active_experiment():
    """mlflow.set_experiment() is process-global: an experiment id from an earlier test's
    store would leak into the next test's fresh store."""
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment() exports it too


def pytest_configure(config):
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
