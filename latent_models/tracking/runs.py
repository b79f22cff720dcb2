"""Starting and ending runs: a run of its own, a child of a parent, the run `mlflow run`
started, or an unfinished run reopened; how an interrupted or stopped run ends; which
experiment it lands in and how the UI shows it.

Runs started by `mlflow run` arrive with MLFLOW_RUN_ID set: we log into that run (its
experiment is whatever `mlflow run --experiment-name` chose). Started any other way, we
create the run in the configured experiment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import latent_models
from latent_models.tracking.active_run import log_params, set_tags
from latent_models.tracking.checkpoints import checkpoint_path
from latent_models.tracking.datasets import data_datasets, log_datasets
from latent_models.tracking.store import ready_store

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C: the run was ended as KILLED; the message says how to continue it."""


class RunStopped(Exception):
    """Raised inside a run to stop it early on purpose (a pruned search trial): the run gets
    `tags` and ends with `status`, its checkpoint is deleted (nothing to resume), and the
    exception goes on to the caller."""

    def __init__(self, message: str, status: str = "FINISHED", tags: dict | None = None):
        super().__init__(message)
        self.status, self.tags = status, tags or {}


@contextlib.contextmanager
def training_run(
    experiment_name: str,
    run_name: str = "",
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
    checkpoint_dir: str = "",
    system_metrics: bool = False,
):
    """Start (or join, under `mlflow run`) a run; children go into their parent's experiment.

    `resume_run_id` reopens that run instead (under `mlflow run`, the launcher's new run is
    tagged with the run it continued and left empty). Ctrl-C ends the run as KILLED and
    raises RunInterrupted; after a clean finish the local checkpoint (also a run artifact)
    is deleted. `system_metrics`: MLflow samples CPU, memory (and GPU) use into the run.
    """
    ready_store()
    if resume_run_id:
        launcher_run = os.environ.pop("MLFLOW_RUN_ID", None)
        if launcher_run and launcher_run != resume_run_id:
            MlflowClient().set_tag(launcher_run, "latent_models.resumed_run_id", resume_run_id)
        run = mlflow.start_run(run_id=resume_run_id, log_system_metrics=system_metrics)
    elif parent_run_id:
        parent = MlflowClient().get_run(parent_run_id)
        run = mlflow.start_run(
            experiment_id=parent.info.experiment_id,
            run_name=run_name or None,
            nested=True,
            parent_run_id=parent_run_id,
            log_system_metrics=system_metrics,
        )
    elif os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run(run_name=run_name or None, log_system_metrics=system_metrics)
    else:
        run = mlflow.start_run(
            experiment_id=_experiment_id(experiment_name), run_name=run_name or None, log_system_metrics=system_metrics
        )
    run_id = run.info.run_id
    checkpoint = checkpoint_path(run_id, checkpoint_dir)
    with run:
        if not parent_run_id:
            mark_model_training(run.info.experiment_id)
        mlflow.set_tags(provenance_tags())
        try:
            yield run
        except RunStopped as stopped:
            set_tags(stopped.tags)
            mlflow.end_run(stopped.status)
            checkpoint.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                checkpoint.parent.rmdir()
            raise
        except RunInterrupted:  # a child run was interrupted: its message stands
            mlflow.end_run("KILLED")
            raise
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            saved = (
                f"its last finished epoch is saved in {checkpoint}" if checkpoint.is_file() else "no epoch had finished"
            )
            raise RunInterrupted(
                f"interrupted: run {run_id} ended as KILLED; {saved}; continue it with resume={run_id}"
            ) from None
    if checkpoint.is_file():
        checkpoint.unlink()
        with contextlib.suppress(OSError):
            checkpoint.parent.rmdir()


@contextlib.contextmanager
def pipeline_run(cfg, data, parent_run_id: str | None, resumed, tags: dict):
    """The `ae` / `vae` run: `training_run` for a config, with the config as params and the
    data splits as inputs (a resumed run has them already), and the pipeline's tags.
    Yields the run and the splits as MLflow datasets (split -> Dataset), for linking metrics."""
    with training_run(
        cfg.experiment_name,
        cfg.run_name,
        parent_run_id,
        resumed.info.run_id if resumed else None,
        cfg.checkpoint_dir,
        cfg.system_metrics,
    ) as run:
        datasets = data_datasets(data)
        if not resumed:
            log_params(dataclasses.asdict(cfg))
            log_datasets(datasets, data.name, data.digest, data.sizes)
        set_tags({**data.tags, **tags})
        yield run, datasets


# MLflow 3's UI shows an experiment as GenAI work (traces, "Agent versions") or as model training
# (runs, models, metrics). This tag says which; the UI also asks for it when it is missing.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

# The sidebar's GenAI / Model training switch is remembered per browser, GenAI for a new one; a link
# with this query opens the Model training view (the UI's own links carry it the same way).
MODEL_TRAINING_VIEW = "workflowType=machine_learning"

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def mark_model_training(experiment_id: str) -> None:
    client = MlflowClient()
    if EXPERIMENT_KIND[0] not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)


def ui_link(run_id: str) -> str:
    """The run's page in the MLflow UI, in its Model training view: on the tracking server, or
    where `mlflow ui` serves a local store."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def _experiment_id(name: str) -> str:
    """mlflow.set_experiment, retried: when two processes create the experiment at once,
    the loser's create fails, and its retry finds the winner's."""
    for attempt in range(5):
        try:
            return mlflow.set_experiment(name).experiment_id
        except MlflowException:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def tag_run(run_id: str, tags: dict) -> None:
    """Tags of a run that need not be the active one (a search's trial, after it ended)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


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
