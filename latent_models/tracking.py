"""Everything that talks to MLflow tracking and the registry, and nothing about models.

Runs started by `mlflow run` arrive with MLFLOW_RUN_ID set: we log into that run (its
experiment is whatever `mlflow run --experiment-name` chose). Started any other way, we
create the run in the configured experiment. The store is MLflow's default
(sqlite:///mlflow.db in the working directory) unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

import latent_models

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def training_run(experiment_name: str, run_name: str = "", parent_run_id: str | None = None):
    """Start (or join, under `mlflow run`) a run; children go into their parent's experiment."""
    if parent_run_id:
        parent = MlflowClient().get_run(parent_run_id)
        run = mlflow.start_run(
            experiment_id=parent.info.experiment_id,
            run_name=run_name or None,
            nested=True,
            parent_run_id=parent_run_id,
        )
    elif os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run(run_name=run_name or None)
    else:
        experiment = mlflow.set_experiment(experiment_name)
        run = mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run_name or None)
    with run:
        mlflow.set_tags(provenance_tags())
        yield run


def provenance_tags() -> dict[str, str]:
    tags = {"latent_models.version": latent_models.__version__}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        tags["latent_models.git_commit"] = commit
    return tags


def log_params(params: dict) -> None:
    """Log the config. Under `mlflow run` the launcher has logged the -P values already, in
    its own spelling (`''` for an empty string, `2.0` for 2), and MLflow forbids changing a
    param, so keys it has logged are kept as they are."""
    run = mlflow.active_run()
    logged = MlflowClient().get_run(run.info.run_id).data.params if run else {}
    spelled = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    mlflow.log_params({k: v for k, v in spelled.items() if k not in logged})


def set_tags(tags: dict) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
    mlflow.log_metrics({prefix + k: float(v) for k, v in metrics.items()}, step=step)


def log_dataset(name: str, root: str, digest: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Log each split as a run input (context training/validation/testing) with its size."""
    contexts = {"train": "training", "val": "validation", "test": "testing"}
    for split, (features, targets) in splits.items():
        with warnings.catch_warnings():  # MLflow registers two identical local-file source types
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                features, targets=targets, source=root, name=f"{name}-{split}", digest=f"{digest}-{split}"[:36]
            )
        mlflow.log_input(dataset, context=contexts[split])
    mlflow.set_tags({"dataset": name, "dataset_digest": digest})
    mlflow.log_params({f"n_{split}": len(t) for split, (_, t) in splits.items()})


def log_figure(figure, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def tag_model_version(name: str, version: str, tags: dict[str, object]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def registered_version(model_info) -> str | None:
    """The registry version created by log_model(registered_model_name=...), if any."""
    return None if model_info.registered_model_version is None else str(model_info.registered_model_version)
