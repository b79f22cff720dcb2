"""A run's training checkpoint outside the loop: where it lives on this machine and as the
run's artifact, which run `resume` continues and whether its data still matches, and the
`Checkpointing` that ties a run's fit to them."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from latent_models.errors import ResumeError
from latent_models.tracking.active_run import log_metrics
from latent_models.tracking.store import ready_store

if TYPE_CHECKING:
    from latent_models.training.loop import Checkpointing


CHECKPOINT_DIR_ENV = "LATENT_MODELS_CHECKPOINT_DIR"
CHECKPOINT_ARTIFACT = "checkpoint"  # the run's artifact folder holding last.pt


def checkpoint_path(run_id: str, checkpoint_dir: str = "") -> Path:
    """<checkpoint_dir, else $LATENT_MODELS_CHECKPOINT_DIR, else ./checkpoints>/<run id>/last.pt"""
    root = checkpoint_dir or os.environ.get(CHECKPOINT_DIR_ENV) or "checkpoints"
    return Path(root).expanduser().resolve() / run_id / "last.pt"


def find_resumable_run(resume: str, experiment_name: str, model_type: str):
    """The run `resume` names (a run id, or `last`: the newest unfinished `model_type` run of
    the experiment, or of the launcher's experiment under `mlflow run`)."""
    ready_store()
    client = MlflowClient()
    if resume == "last":
        launcher = os.environ.get("MLFLOW_RUN_ID")
        if launcher:
            experiment_id = client.get_run(launcher).info.experiment_id
        else:
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise ResumeError(f"resume=last: no experiment named {experiment_name!r}")
            experiment_id = experiment.experiment_id
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.model_type = '{model_type}' and attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        runs = [r for r in runs if r.info.run_id != launcher]
        if not runs:
            raise ResumeError(f"resume=last: no unfinished {model_type} run in experiment {experiment_name!r}")
        return runs[0]
    try:
        run = client.get_run(resume)
    except MlflowException:
        raise ResumeError(f"resume: no run with id {resume!r} in {mlflow.get_tracking_uri()}") from None
    if run.info.status == "FINISHED":
        raise ResumeError(f"resume: run {resume} has finished; nothing to resume")
    if run.data.tags.get("model_type") != model_type:
        raise ResumeError(
            f"resume: run {resume} is a {run.data.tags.get('model_type', 'unknown')} run, not a {model_type} run"
        )
    return run


def fetch_checkpoint(run_id: str, checkpoint_dir: str = "") -> Path:
    """The run's local checkpoint; where there is none, its artifact copy is downloaded there."""
    path = checkpoint_path(run_id, checkpoint_dir)
    if not path.is_file():
        staging = path.parent.parent / f".{run_id}-download"
        with contextlib.suppress(MlflowException, OSError):  # no artifact: the run starts over
            downloaded = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{CHECKPOINT_ARTIFACT}/last.pt", dst_path=str(staging)
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, path)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def check_resumable_data(run, digest: str) -> None:
    logged = run.data.tags.get("dataset_digest")
    if logged and logged != digest:
        raise ResumeError(
            f"resume: run {run.info.run_id} trained on data with digest {logged}; these files have digest {digest}"
        )


def checkpointing(run_id: str, cfg, resumed, *epoch_hooks) -> Checkpointing:
    """How this run's fit checkpoints: to the local path (fetched from the run's artifacts when
    resuming), uploaded after each save, each epoch's metrics logged once (then each of
    `epoch_hooks` that is not None called), resuming when `resumed` is a run."""
    from latent_models.training.loop import Checkpointing

    path = fetch_checkpoint(run_id, cfg.checkpoint_dir) if resumed else checkpoint_path(run_id, cfg.checkpoint_dir)
    hooks = [epoch_logger(run_id, resumed=bool(resumed)), *(h for h in epoch_hooks if h)]

    def on_epoch(epoch: int, metrics: dict) -> None:
        for hook in hooks:
            hook(epoch, metrics)

    return Checkpointing(path=path, resume=bool(resumed), on_checkpoint=log_checkpoint, on_epoch=on_epoch)


def log_checkpoint(path: Path) -> None:
    mlflow.log_artifact(str(path), CHECKPOINT_ARTIFACT)


def epoch_logger(run_id: str, resumed: bool):
    """on_epoch callback: log an epoch's metrics at step=epoch. When resuming, steps the run
    already has for a metric are skipped, so no epoch is logged twice or left out."""
    client = MlflowClient()
    logged: dict[str, set[int]] = {}

    def on_epoch(epoch: int, metrics: dict) -> None:
        todo = metrics
        if resumed:
            for key in metrics:
                if key not in logged:
                    logged[key] = {m.step for m in client.get_metric_history(run_id, key)}
            todo = {k: v for k, v in metrics.items() if epoch not in logged[k]}
        if todo:
            log_metrics(todo, step=epoch)

    return on_epoch
