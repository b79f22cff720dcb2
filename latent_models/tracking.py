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
import subprocess
import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
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


# --- registry aliases: candidate and champion ------------------------------------------

CANDIDATE, CHAMPION = "candidate", "champion"


class RegistryError(ValueError):
    """A registry request a user can fix: unknown model, version or alias."""


@dataclasses.dataclass
class Promotion:
    """What happened to a new version: `decision` is champion, kept (the old champion stays)
    or skipped (promote=false); `reason` says why in one line."""

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


def promote_if_better(name: str, version: str, metric: str, value: float, higher_is_better: bool,
                      comparable: dict[str, object], promote: bool = True) -> Promotion:
    """Alias the new `version` `candidate`; make it `champion` when its validation `metric`
    beats the champion's, or when there is no champion.

    The comparison only counts between versions with the same `comparable` version tags
    (e.g. dataset and noise model and level): otherwise the champion stays, and the promote
    entry point can move it. The value is stored as a version tag; the decision is stored as
    the version tag `promotion` and as run tags `promotion` / `promotion_reason`.
    """
    client = MlflowClient()
    client.set_model_version_tag(name, version, metric, repr(float(value)))
    client.set_registered_model_alias(name, CANDIDATE, version)
    champion_version = aliases(name).get(CHAMPION)
    if not promote:
        decision = Promotion("skipped", "promote=false", champion_version)
    elif champion_version is None:
        decision = Promotion(CHAMPION, f"first {CHAMPION} of {name}; {metric} {value:.4f}")
    else:
        decision = _compare(client.get_model_version(name, champion_version), metric, value, higher_is_better,
                            {k: str(v) for k, v in comparable.items()})
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", str(decision))
    if mlflow.active_run():
        mlflow.set_tags({"promotion": decision.decision, "promotion_reason": decision.reason})
    return decision


def _compare(champion, metric: str, value: float, higher_is_better: bool, comparable: dict[str, str]) -> Promotion:
    label = f"champion version {champion.version}"
    previous = str(champion.version)
    differ = [f"{k} {champion.tags.get(k, '?')} (new: {v})" for k, v in comparable.items() if champion.tags.get(k) != v]
    if differ:
        return Promotion("kept", f"not comparable with {label}, which has {', '.join(differ)}; "
                                 "move the champion with the promote entry point", previous)
    theirs = _version_metric(champion, metric, higher_is_better)
    if theirs is None:
        return Promotion("kept", f"{label} has no {metric} to compare with", previous)
    better = value > theirs if higher_is_better else value < theirs
    verb = "beats" if better else "does not beat"
    return Promotion(CHAMPION if better else "kept", f"{metric} {value:.4f} {verb} {theirs:.4f} of {label}",
                     previous)


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
        raise RegistryError(f"{name} has no version {version}; versions: {', '.join(map(str, known)) or 'none'}") from None
    previous = current.get(alias)
    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        raise RegistryError(f"cannot set alias {alias!r}: {exc.message}") from None
    reason = f"set by the promote entry point (previous {alias}: {previous or 'none'})"
    if alias == CHAMPION:
        client.set_model_version_tag(name, version, "promotion", f"{CHAMPION} ({reason})")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: record it in the launcher's run
        with mlflow.start_run():
            mlflow.set_tags({"promotion": alias, "promotion_reason": f"{name} version {version} {reason}"})
    return {"registered_model_name": name, "version": version, "alias": alias, "previous": previous}
