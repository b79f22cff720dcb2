import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"

# The fixture's digits, never downloaded, 100 of its training images held out for validation.
TINY_DATA = dict(data_dir=str(FIXTURE_DATA), download=False, val_size=100)
# Tiny but real: a few hundred digits, small networks, two epochs.
TINY = dict(TINY_DATA, epochs=2, batch_size=50, width=8)
# TINY on fewer digits: the first 300 training and 100 test images.
TINY_SUBSET = dict(TINY, limit_train=300, limit_test=100)

# The same settings as each entry point's params (`mlflow run -P`, `latent-models --option`): one
# epoch, the fixture's first 100 test images, no system-metrics thread; what the end-to-end tests
# and the docs' commands run with (tests/docs_commands.py puts them in place of what the docs say).
_DATA = dict(data_dir=str(FIXTURE_DATA), download="false", val_size=100, limit_test=100, system_metrics="false")
_TRAIN = dict(_DATA, epochs=1, batch_size=TINY["batch_size"], width=TINY["width"])
_IW = dict(iw_samples=10, iw_images=50)
TINY_RUNS: dict[str, dict] = {
    "ae": dict(_TRAIN, iterations=1),
    "vae": dict(_TRAIN, **_IW),
    "vamp": dict(_TRAIN, pseudo_inputs=10, **_IW),
    "main": dict(_DATA, ae_epochs=1, vae_epochs=1),
    "evaluate": dict(
        _DATA, val_size=0, noise="uniform", images=50, tune_images=20, samples=64, classifier_epochs=1, **_IW
    ),
    "sweep": dict(data_dir=str(FIXTURE_DATA)),
    "search": dict(data_dir=str(FIXTURE_DATA), n_trials=2, timeout=0),
    "promote": {},
}


def cli_options(settings: dict) -> list[str]:
    """`--key value` for each setting, as `latent-models` and the entry points take them
    (booleans `true` / `false`)."""
    return [x for k, v in settings.items() for x in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))]


def params_text(settings: dict, leave_out: tuple[str, ...] = ("data_dir",)) -> str:
    """`key=value ...` for each setting but those in `leave_out` (by default data_dir, the sweep's
    or search's own option), as a sweep's or a search's `params` takes them."""
    return " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items() if k not in leave_out
    )


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
