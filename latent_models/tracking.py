"""Everything that talks to MLflow tracking and the registry, and nothing about models.

Runs started by `mlflow run` arrive with MLFLOW_RUN_ID set: we log into that run (its
experiment is whatever `mlflow run --experiment-name` chose). Started any other way, we
create the run in the configured experiment. The store is MLflow's default
(sqlite:///mlflow.db in the working directory) unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
from mlflow.entities import LoggedModelInput, LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

import latent_models
from latent_models.errors import RegistryError, ResumeError
from latent_models_seal import SEAL_TAG, mlmodel_digest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


CHECKPOINT_DIR_ENV = "LATENT_MODELS_CHECKPOINT_DIR"
CHECKPOINT_ARTIFACT = "checkpoint"  # the run's artifact folder holding last.pt
NOTE = "mlflow.note.content"  # the description the MLflow UI shows for a run, a logged model or an experiment


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C: the run was ended as KILLED; the message says how to continue it."""


class RunStopped(Exception):
    """Raised inside a run to stop it early on purpose (a pruned search trial): the run gets
    `tags` and ends with `status`, its checkpoint is deleted (nothing to resume), and the
    exception goes on to the caller."""

    def __init__(self, message: str, status: str = "FINISHED", tags: dict | None = None):
        super().__init__(message)
        self.status, self.tags = status, tags or {}


def checkpoint_path(run_id: str, checkpoint_dir: str = "") -> Path:
    """<checkpoint_dir, else $LATENT_MODELS_CHECKPOINT_DIR, else ./checkpoints>/<run id>/last.pt"""
    root = checkpoint_dir or os.environ.get(CHECKPOINT_DIR_ENV) or "checkpoints"
    return Path(root).expanduser().resolve() / run_id / "last.pt"


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


def checkpointing(run_id: str, cfg, resumed, *epoch_hooks) -> dict:
    """training.fit's checkpoint arguments for this run: the local path, the artifact upload
    after each save, the idempotent per-epoch metric logger (then each of `epoch_hooks` that
    is not None), and whether to resume."""
    path = fetch_checkpoint(run_id, cfg.checkpoint_dir) if resumed else checkpoint_path(run_id, cfg.checkpoint_dir)
    hooks = [epoch_logger(run_id, resumed=bool(resumed)), *(h for h in epoch_hooks if h)]

    def on_epoch(epoch: int, metrics: dict) -> None:
        for hook in hooks:
            hook(epoch, metrics)

    return {"checkpoint_path": path, "on_checkpoint": log_checkpoint, "on_epoch": on_epoch, "resume": bool(resumed)}


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
    """Metrics of the active run alone. Through the client, because MLflow's fluent
    `log_metrics` also links a metric to any model the run logged at the same step."""
    timestamp = get_current_time_millis()
    MlflowClient().log_batch(
        mlflow.active_run().info.run_id,
        metrics=[Metric(prefix + k, float(v), timestamp, step or 0) for k, v in metrics.items()],
    )


SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def split_dataset(
    name: str, root: str, digest: str, split: str, features: np.ndarray, targets: np.ndarray, first: int = 0
) -> "mlflow.data.Dataset":
    """A split as an MLflow dataset named `<name>-<split>` (`<name>-<split>[:N]` for its first N
    images), its digest derived from the raw files'."""
    if first and first < len(features):
        features, targets, split = features[:first], targets[:first], f"{split}[:{first}]"
    with warnings.catch_warnings():  # MLflow registers two identical local-file source types
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_numpy(
            features, targets=targets, source=root, name=f"{name}-{split}", digest=f"{digest}-{split}"[:36]
        )


def split_datasets(
    name: str, root: str, digest: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, "mlflow.data.Dataset"]:
    """Each split as an MLflow dataset (see `split_dataset`)."""
    return {
        split: split_dataset(name, root, digest, split, features, targets)
        for split, (features, targets) in splits.items()
    }


def folder_split_dataset(name: str, root: str, digest: str, split: str, shape: tuple[int, ...], size: int):
    """A split of an image folder as an MLflow dataset: its source folder, name, digest and the
    shape of its images (a MetaDataset: the pixels are not copied into the tracking store)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types.schema import Schema, TensorSpec

    with warnings.catch_warnings():  # MLflow registers two identical local-file source types
        warnings.simplefilter("ignore", UserWarning)
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        source = resolve_dataset_source(root)
    schema = Schema([TensorSpec(np.dtype(np.float32), (size, *shape), name="images")])
    return MetaDataset(source=source, name=f"{name}-{split}", digest=f"{digest}-{split}"[:36], schema=schema)


def data_datasets(data) -> dict[str, "mlflow.data.Dataset"]:
    """A `DataSplits`' splits as MLflow datasets: the arrays for MNIST-style data, the folder's
    description (source, digest, shape) for an image folder."""
    if data.source == "folder":
        return {
            split: folder_split_dataset(data.name, data.root, data.digest, split, data.image_shape, size)
            for split, size in data.sizes.items()
        }
    return split_datasets(data.name, data.root, data.digest, data.as_numpy())


def log_datasets(
    datasets: dict[str, "mlflow.data.Dataset"], name: str, digest: str, sizes: dict[str, int] | None = None
) -> None:
    """Log each split as a run input (context training/validation/testing) with its size."""
    for split, dataset in datasets.items():
        mlflow.log_input(dataset, context=SPLIT_CONTEXTS[split])
    mlflow.set_tags({"dataset": name, "dataset_digest": digest})
    sizes = sizes or {split: len(dataset.features) for split, dataset in datasets.items()}
    mlflow.log_params({f"n_{split}": n for split, n in sizes.items()})


def log_dataset_input(dataset, context: str) -> None:
    mlflow.log_input(dataset, context=context)


def log_dataset(name: str, root: str, digest: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    datasets = split_datasets(name, root, digest, splits)
    log_datasets(datasets, name, digest)
    return datasets


# --- logged models: MLflow 3's model entities -----------------------------------------------


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


def register_model(model_uri: str, name: str, registered_model_description: str = "") -> str:
    """Register a logged model (`models:/<id>`) as a new version of `name`, with the logged
    model's seal as the version's tag SEAL_TAG (the team server checks it is the logged model's)
    and its description as the version's; the registered model gets `registered_model_description`
    where it has none yet (a description someone wrote in the UI stays)."""
    client = MlflowClient()
    tags = client.get_logged_model(model_uri.removeprefix("models:/")).tags
    seal = {SEAL_TAG: tags[SEAL_TAG]} if tags.get(SEAL_TAG) else None
    version = str(mlflow.register_model(model_uri, name, tags=seal).version)
    note = tags.get(NOTE)
    if note:
        client.update_model_version(name, version, description=note)
    if registered_model_description and not client.get_registered_model(name).description:
        client.update_registered_model(name, description=registered_model_description)
    return version


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


def set_description(text: str) -> None:
    """The run's description in the MLflow UI (Markdown)."""
    mlflow.set_tag(NOTE, text)


def log_figure(figure, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def logged_files(folder: str) -> dict[str, bytes]:
    """Run-relative path -> bytes of each file the active run has logged under `folder` (e.g.
    its figures, for the report): read back from the artifact store, so exactly what was logged."""
    run_id = mlflow.active_run().info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.suppress(MlflowException):  # nothing logged there: {}
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=tmp)
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def log_report(text: str, path: str = "report.html") -> None:
    mlflow.log_text(text, path)


def tag_model_version(name: str, version: str, tags: dict[str, object]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


# --- registry aliases: candidate and champion ------------------------------------------

CANDIDATE, CHAMPION = "candidate", "champion"


@dataclasses.dataclass
class Promotion:
    """What happened to a new version: `decision` is champion, kept (the old champion stays),
    rejected (worse than doing nothing), skipped (promote=false) or denied (it would be champion,
    but the tracking server refused this user moving `champion`); `reason` says why in one line."""

    decision: str
    reason: str
    previous_champion: str | None = None

    @property
    def promoted(self) -> bool:
        return self.decision == CHAMPION

    def __str__(self) -> str:
        return f"{self.decision} ({self.reason})"


def aliases(name: str) -> dict[str, str]:
    """alias -> version of a registered model ({} when it does not exist)."""
    try:
        return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def promote_if_better(
    name: str,
    version: str,
    metric: str,
    value: float,
    higher_is_better: bool,
    comparable: dict[str, object],
    promote: bool = True,
    baseline: tuple[str, float] | None = None,
) -> Promotion:
    """Alias the new `version` `candidate`; make it `champion` when its validation `metric`
    beats the champion's, or when there is no champion.

    `baseline` is (what, value) of doing nothing on the same validation data (the noisy input
    itself; a per-pixel model of the training mean): a version that does not beat it is
    never `champion`, not even the first one.

    The comparison only counts between versions with the same `comparable` version tags
    (e.g. dataset and noise model and level): otherwise the champion stays, and the promote
    entry point can move it. The value is stored as a version tag; the decision is stored as
    the version tag `promotion` and as run tags `promotion` / `promotion_reason`.
    """
    client = MlflowClient()
    client.set_model_version_tag(name, version, metric, repr(float(value)))
    client.set_registered_model_alias(name, CANDIDATE, version)
    champion_version = aliases(name).get(CHAMPION)
    beats_baseline = baseline is None or (value > baseline[1] if higher_is_better else value < baseline[1])
    if not promote:
        decision = Promotion("skipped", "promote=false", champion_version)
    elif not beats_baseline:
        decision = Promotion(
            "rejected",
            f"{metric} {value:.4f} does not beat {baseline[0]} ({baseline[1]:.4f}): "
            f"worse than doing nothing, so never {CHAMPION}",
            champion_version,
        )
    elif champion_version is None:
        decision = Promotion(CHAMPION, f"first {CHAMPION} of {name}; {metric} {value:.4f}")
    else:
        decision = _compare(
            client.get_model_version(name, champion_version),
            metric,
            value,
            higher_is_better,
            {k: str(v) for k, v in comparable.items()},
        )
    if decision.promoted:
        try:
            client.set_registered_model_alias(name, CHAMPION, version)
        except MlflowException as exc:  # the server refused: the run and the version stay
            decision = _denied(exc, name, version, decision)
    client.set_model_version_tag(name, version, "promotion", str(decision))
    if mlflow.active_run():
        mlflow.set_tags({"promotion": decision.decision, "promotion_reason": decision.reason})
    return decision


def _denied(exc: MlflowException, name: str, version: str, decision: Promotion) -> Promotion:
    """The decision when the tracking server refuses (HTTP 403) to move `champion`: on a team
    server only release managers (MANAGE on the model) may. Anything else is raised."""
    from latent_models.team_access import current_user, refusal_status

    if refusal_status(exc) != 403:
        raise exc
    return Promotion(
        "denied",
        f"{decision.reason}, but user {current_user()!r} may not move {CHAMPION} of {name} "
        f"(HTTP 403; a release manager can: latent-models promote "
        f"--registered_model_name {name} --version {version})",
        decision.previous_champion,
    )


@dataclasses.dataclass(frozen=True)
class ChampionRule:
    """How a registered model's versions compete: a validation `metric` (higher or lower is
    better), compared only between versions with the same `comparable` config values, and
    never champion unless it beats doing nothing (`baseline`, a key of the same result,
    described as `baseline_label`)."""

    metric: str
    higher_is_better: bool
    comparable: tuple[str, ...]
    baseline: str
    baseline_label: str

    def promote(self, name: str, version: str, cfg, result: dict, promote: bool = True) -> Promotion:
        """`result`: the training pipeline's, holding the metric and the baseline."""
        return promote_if_better(
            name,
            version,
            self.metric,
            result[self.metric],
            self.higher_is_better,
            {k: result[k] if k in result else getattr(cfg, k) for k in self.comparable},
            promote,
            (self.baseline_label, result[self.baseline]),
        )


def _compare(champion, metric: str, value: float, higher_is_better: bool, comparable: dict[str, str]) -> Promotion:
    label = f"champion version {champion.version}"
    previous = str(champion.version)
    differ = [f"{k} {champion.tags.get(k, '?')} (new: {v})" for k, v in comparable.items() if champion.tags.get(k) != v]
    if differ:
        return Promotion(
            "kept",
            f"not comparable with {label}, which has {', '.join(differ)}; "
            "move the champion with the promote entry point",
            previous,
        )
    theirs = _version_metric(champion, metric, higher_is_better)
    if theirs is None:
        return Promotion("kept", f"{label} has no {metric} to compare with", previous)
    better = value > theirs if higher_is_better else value < theirs
    verb = "beats" if better else "does not beat"
    return Promotion(CHAMPION if better else "kept", f"{metric} {value:.4f} {verb} {theirs:.4f} of {label}", previous)


def _version_metric(version, metric: str, higher_is_better: bool) -> float | None:
    """The version's tag `metric`, else the best value in its run's history."""
    if metric in version.tags:
        try:
            return float(version.tags[metric])
        except ValueError:
            return None
    try:
        history = MlflowClient().get_metric_history(version.run_id, metric) if version.run_id else []
    except MlflowException:
        return None
    values = [m.value for m in history]
    return (max if higher_is_better else min)(values) if values else None


def move_alias(name: str, version: int | str | None, alias: str = CHAMPION) -> dict:
    """Point `alias` of `name` at `version` (None: the current candidate). Returns what moved."""
    client = MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(f"no registered model named {name!r}; registered: {', '.join(names) or 'none'}") from None
    current = {a: str(v) for a, v in model.aliases.items()}
    if not version:
        if CANDIDATE not in current:
            raise RegistryError(f"{name} has no {CANDIDATE} version; give the version to promote")
        version = current[CANDIDATE]
    version = str(version)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise RegistryError(
            f"{name} has no version {version}; versions: {', '.join(map(str, known)) or 'none'}"
        ) from None
    previous = current.get(alias)
    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        from latent_models.team_access import AccessDenied, describe_refusal

        refusal = describe_refusal(exc, action=f"move alias {alias!r} of registered model", resource=repr(name))
        if refusal:
            raise AccessDenied(refusal) from None
        raise RegistryError(f"cannot set alias {alias!r}: {exc.message}") from None
    reason = f"set by the promote entry point (previous {alias}: {previous or 'none'})"
    if alias == CHAMPION:
        client.set_model_version_tag(name, version, "promotion", f"{CHAMPION} ({reason})")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: record it in the launcher's run
        with mlflow.start_run():
            mlflow.set_tags({"promotion": alias, "promotion_reason": f"{name} version {version} {reason}"})
    return {"registered_model_name": name, "version": version, "alias": alias, "previous": previous}


# --- looking models up ------------------------------------------------------------------


def find_model_version(name: str, tags: dict[str, str]) -> str | None:
    """The newest version of `name` whose version tags include all of `tags`, if any."""
    ready_store()
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    matching = [v for v in versions if all(v.tags.get(k) == str(t) for k, t in tags.items())]
    return str(max(int(v.version) for v in matching)) if matching else None


def model_version_tags(name: str, version: str) -> dict[str, str]:
    return dict(MlflowClient().get_model_version(name, version).tags)


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


def log_table(rows: list[dict], path: str) -> None:
    """Rows as an MLflow table artifact (JSON; the UI's artifact view shows it as a table)."""
    import pandas as pd

    mlflow.log_table(pd.DataFrame(rows), artifact_file=path)
