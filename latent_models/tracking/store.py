"""The tracking store this process talks to: opened once, safely when several processes
start at once. The store is MLflow's default (sqlite:///mlflow.db in the working directory)
unless MLFLOW_TRACKING_URI says otherwise."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def ready_store() -> None:
    """Open the tracking and registry stores once per process. A new SQLite file gets its
    tables on first open; two processes doing that at once collide ("table experiments
    already exists"), so the first open of a sqlite:/// store holds a file lock beside it."""
    uri = mlflow.get_tracking_uri()
    path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
    if path is None or _opened.get(uri):
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (start concurrent runs after the store exists)
        fcntl = None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient()
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    _opened[uri] = True


_opened: dict[str, bool] = {}


def store_folder() -> Path | None:
    """The folder of a sqlite:/// tracking store (for files that belong beside it); None for any other store."""
    uri = mlflow.get_tracking_uri()
    return Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else None
