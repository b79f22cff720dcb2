"""The model registry: versions registered with their seal and description, their tags,
and the `candidate` / `champion` aliases: which version serves, by the `ChampionRule` or
moved by hand."""

from __future__ import annotations

import dataclasses
import os

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from latent_models.errors import RegistryError
from latent_models.tracking.active_run import NOTE
from latent_models.tracking.store import ready_store
from latent_models_seal import SEAL_TAG


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


# What a store says when two writers insert the same alias at once (SQLite, PostgreSQL, MySQL).
_ALIAS_RACE = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")


def set_alias(client: MlflowClient, name: str, alias: str, version: str, tries: int = 3) -> None:
    """Point `alias` of `name` at `version`. MLflow's SQL store looks the alias up and inserts
    it when absent, so two runs registering at once can both insert: the loser's retry finds
    the row and updates it (the last writer wins, as with any alias move)."""
    for attempt in range(tries):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException as exc:
            if attempt == tries - 1 or not any(m in str(exc.message) for m in _ALIAS_RACE):
                raise


def tag_model_version(name: str, version: str, tags: dict[str, object]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


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
    set_alias(client, name, CANDIDATE, version)
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
            set_alias(client, name, CHAMPION, version)
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
        set_alias(client, name, alias, version)
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
