"""MLflow 3's logged models: a run's model (and, when asked, each epoch's weights) logged
with its seal, linked to exactly the metrics that describe those weights, and found again
from a model URI."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import mlflow
from mlflow.entities import LoggedModelInput, LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from latent_models.errors import RegistryError
from latent_models.tracking.active_run import NOTE
from latent_models.tracking.registry import register_model
from latent_models.tracking.store import ready_store
from latent_models_seal import SEAL_TAG, mlmodel_digest


@dataclasses.dataclass
class LoggedModelRef:
    """A model this run logged: its id (models:/<id>) and its registry version, if registered."""

    model_id: str
    version: str | None = None
    seal: str | None = None  # SHA-256 of its MLmodel (tag SEAL_TAG), None for an unsealed folder

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"


def log_model(name: str, save: Callable[[str, Model], None], step: int, model_type: str) -> LoggedModelRef:
    """Log a model of the active run as MLflow 3 logged model `name`, output of the run at
    `step`, with the run's params.

    `save(path, mlflow_model)` writes the model folder (a flavor's `save_model`). Unlike
    `mlflow.<flavor>.log_model`, this links none of the run's metrics to the model: MLflow
    would copy every metric the run has at `step` (training loss, learning rate, ...) without
    its dataset. The caller links exactly the ones that describe these weights (`link_metrics`).

    A sealed folder's seal (SHA-256 of its MLmodel, which holds every other file's) becomes the
    logged model's tag SEAL_TAG while it is PENDING; after READY the team server refuses changing
    its files or that tag (docs/write-once.md).
    """
    client = MlflowClient()
    run_id = mlflow.active_run().info.run_id
    params = client.get_run(run_id).data.params
    model = mlflow.initialize_logged_model(name=name, source_run_id=run_id, params=params, model_type=model_type)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "model")
            save(
                path,
                Model(
                    artifact_path=model.artifact_location,
                    model_uuid=model.model_id,
                    run_id=run_id,
                    model_id=model.model_id,
                ),
            )
            seal = mlmodel_digest(path)
            if seal:
                client.set_logged_model_tags(model.model_id, {SEAL_TAG: seal})
            client.log_model_artifacts(model.model_id, path)
    except BaseException:
        mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
    return LoggedModelRef(model.model_id, seal=seal)


def log_selected_model(
    name: str,
    save: Callable[[str, Model], None],
    model_type: str,
    step: int,
    val_metrics: dict[str, float],
    val_dataset,
    test_metrics: dict[str, float],
    test_dataset,
    registered_model_name: str | None = None,
    description: str = "",
    registered_model_description: str = "",
) -> LoggedModelRef:
    """The run's model, the weights of the epoch chosen on validation (`step`): logged, linked
    to that epoch's validation metrics and to its test metrics, each on its dataset, described
    (the MLflow UI's description, Markdown) and registered when a name is given (`register_model`)."""
    ref = log_model(name, save, step, model_type)
    link_metrics(ref.model_id, val_metrics, val_dataset, step)
    link_metrics(ref.model_id, test_metrics, test_dataset)
    if description:
        MlflowClient().set_logged_model_tags(ref.model_id, {NOTE: description})
    if registered_model_name:
        ref.version = register_model(ref.model_uri, registered_model_name, registered_model_description)
    return ref


def checkpoint_models(name: str, model_type: str, save_now: Callable[[], Callable[[str, Model], None]], val_dataset):
    """An on_epoch callback that logs each epoch's weights (`save_now()` packs the current
    ones) as logged model `<name>-epoch-<epoch>` at step = epoch, linked to that epoch's
    validation metrics. Epochs the run logged before (a resumed run) are not logged again."""
    done = logged_model_steps()

    def on_epoch(epoch: int, metrics: dict) -> None:
        if epoch in done:
            return
        ref = log_model(f"{name}-epoch-{epoch}", save_now(), epoch, model_type)
        link_metrics(ref.model_id, {k: v for k, v in metrics.items() if k.startswith("val_")}, val_dataset, epoch)
        done.add(epoch)

    return on_epoch


def link_metrics(model_id: str, metrics: dict[str, float], dataset=None, step: int = 0) -> None:
    """Log `metrics` to the active run and to logged model `model_id`, on `dataset` (an MLflow
    dataset, or None). A value the run already has at that step keeps its timestamp, so the
    run's history gains no second point."""
    client = MlflowClient()
    run_id = mlflow.active_run().info.run_id
    now = get_current_time_millis()
    batch = []
    for key, value in metrics.items():
        same = [m.timestamp for m in client.get_metric_history(run_id, key) if m.step == step and m.value == value]
        batch.append(
            Metric(
                key,
                float(value),
                same[0] if same else now,
                step,
                model_id=model_id,
                dataset_name=dataset.name if dataset is not None else None,
                dataset_digest=dataset.digest if dataset is not None else None,
            )
        )
    client.log_batch(run_id, metrics=batch)


def logged_model_steps() -> set[int]:
    """The steps at which the active run has logged a model (e.g. per-epoch checkpoints)."""
    run = MlflowClient().get_run(mlflow.active_run().info.run_id)
    return {o.step for o in (run.outputs.model_outputs if run.outputs else [])}


def logged_model_run(model_uri: str):
    """(the run that logged the model at `model_uri` (models:/name@alias, models:/name/version,
    runs:/id/name, models:/<model id>), for its params and tags; the model's MLflow 3 model
    id). A URI that names no model is a RegistryError."""
    ready_store()
    try:
        info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise RegistryError(f"cannot find a model at {model_uri!r}: {message.splitlines()[0]}") from None
    return (MlflowClient().get_run(info.run_id) if info.run_id else None), info.model_id


def log_model_input(model_id: str) -> None:
    """Declare logged model `model_id` an input of the active run (what an evaluation evaluated)."""
    MlflowClient().log_inputs(mlflow.active_run().info.run_id, models=[LoggedModelInput(model_id)])
