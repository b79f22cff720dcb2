"""The `search` entry point: Optuna picks each trial's training params (TPE learns where to
look; random is the baseline), a median pruner stops trials whose per-epoch validation metric
falls behind, and every trial is an ordinary `ae` / `vae` run nested under one parent run.

The study lives in an Optuna storage (SQLite beside the tracking store, or a server such as
the team's PostgreSQL), so a killed search continues where it stopped and several processes or
hosts can work on one study. MLflow stays the record: runs, the trials table, the figures, the
registered model. Selection uses validation metrics only; test metrics are reported beside.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import typing
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from latent_models import tracking
from latent_models.config import SearchConfig
from latent_models.errors import ConfigError
from latent_models.evaluation import report
from latent_models.options import as_params
from latent_models.tuning.child_runs import (
    champion_rule,
    check_validation_metric,
    parse_assignments,
    recipe,
    reported_test_metric,
    settable,
    splits_for,
    trainer,
    typed,
    validation_metrics,
)
from latent_models.tuning.study import COUNTED, counted_trials, open_storage, open_study, shown_url, storage_url

KINDS = ("loguniform", "uniform", "int", "choice")
SETTER = "a search can set for its trials"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched param: a float range (uniform or log-uniform), an int range, or choices."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high)
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")

    def extremes(self) -> tuple:
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def __str__(self) -> str:
        args = self.choices if self.kind == "choice" else (self.low, self.high)
        return f"{self.name}={self.kind}({','.join(str(a).lower() if isinstance(a, bool) else str(a) for a in args)})"


# --- the space: `name=kind(args)` items, or a YAML file of them ------------------------

_ITEM = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*([A-Za-z_]\w*)\s*\(([^()]*)\)\s*;?")
_FORMS = "name=loguniform(low,high), uniform(low,high), int(low,high) or choice(a,b,...)"


def parse_space(text: str, config_cls) -> list[Dimension]:
    """The searched params, typed and checked against `config_cls`'s fields."""
    items = _space_file(text) if text.strip().endswith((".yaml", ".yml")) else _space_string(text)
    if not items:
        raise ConfigError(f"space is empty: give at least one {_FORMS}, e.g. lr=loguniform(1e-4,1e-2)")
    dims: dict[str, Dimension] = {}
    for name, kind, args in items:
        if name in dims:
            raise ConfigError(f"space: {name} is given twice")
        dims[name] = _dimension(name, kind, args, config_cls)
    return list(dims.values())


def _space_string(text: str) -> list[tuple[str, str, list[str]]]:
    items, pos = [], 0
    while text[pos:].strip():
        match = _ITEM.match(text, pos)
        if not match:
            raise ConfigError(f"space: cannot read {text[pos:].strip()!r}; write {_FORMS}, separated by spaces")
        name, kind, args = match.groups()
        items.append((name, kind, [a.strip() for a in args.split(",") if a.strip()]))
        pos = match.end()
    return items


def _space_file(path: str) -> list[tuple[str, str, list[str]]]:
    """YAML: `name: loguniform(1e-4, 1e-2)`, `name: [a, b]` (choices) or
    `name: {type: int, low: 8, high: 32}` / `{type: choice, choices: [a, b]}`."""
    try:
        loaded = yaml.safe_load(Path(path.strip()).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"space: cannot read the YAML file {path.strip()!r}: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return []
    if not isinstance(loaded, dict):
        raise ConfigError(f"space: {path.strip()} must map param names to distributions")
    items = []
    for name, spec in loaded.items():
        if isinstance(spec, str):
            parsed = _space_string(f"{name}={spec}")
            items.extend(parsed)
        elif isinstance(spec, list):
            items.append((str(name), "choice", [_text(v) for v in spec]))
        elif isinstance(spec, dict) and "type" in spec:
            args = spec.get("choices", []) if spec["type"] == "choice" else [spec.get("low"), spec.get("high")]
            items.append((str(name), str(spec["type"]), [_text(v) for v in args if v is not None]))
        else:
            raise ConfigError(
                f"space: {name}: write a distribution like {_FORMS}, a list of choices, "
                "or {type: ..., low: ..., high: ...}"
            )
    return items


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _dimension(name: str, kind: str, args: list[str], config_cls) -> Dimension:
    allowed = settable(config_cls)
    if name not in allowed:
        raise ConfigError(f"space: {name!r} is not a param {SETTER}; choose from {', '.join(allowed)}")
    if kind not in KINDS:
        raise ConfigError(f"space: {name}: unknown distribution {kind!r}; use {', '.join(KINDS)}")
    field_type = typing.get_type_hints(config_cls)[name]
    if kind == "choice":
        if not args:
            raise ConfigError(f"space: {name}=choice() has no choices")
        choices = tuple(typed(a, field_type, name, "space") for a in args)
        if len(set(choices)) != len(choices):
            raise ConfigError(f"space: {name} repeats a choice")
        return Dimension(name, kind, choices=choices)
    wanted = int if kind == "int" else float
    if field_type is not wanted:
        forms = {int: "int(low,high)", float: "uniform or loguniform"}.get(field_type, "choice(...)")
        raise ConfigError(f"space: {name} is a {field_type.__name__} param; use {forms}")
    if len(args) != 2:
        raise ConfigError(f"space: {name}={kind}(...) takes two numbers, low and high; got {len(args)}")
    low, high = (typed(a, wanted, name, "space") for a in args)
    if not low < high:
        raise ConfigError(f"space: {name}: low ({low}) must be < high ({high})")
    if kind == "loguniform" and not low > 0:
        raise ConfigError(f"space: {name}: loguniform needs low > 0, got {low}")
    return Dimension(name, kind, low, high)


# --- the plan: everything checked before anything starts -----------------------------


@dataclasses.dataclass
class Plan:
    dims: list[Dimension]
    fixed: dict
    config_cls: type
    metric: str
    direction: str

    def signature(self) -> str:
        """What a study's trials must share to be compared: a rerun must match it."""
        return json.dumps(
            {"space": [str(d) for d in self.dims], "params": self.fixed, "metric": self.metric}, sort_keys=True
        )


def plan_search(cfg: SearchConfig) -> Plan:
    config_cls = cfg.child_config_class()
    metric = cfg.default_metric()
    check_validation_metric(cfg.model, metric)
    dims = parse_space(cfg.space, config_cls)
    given = parse_assignments(cfg.params, "params", config_cls, setter=SETTER)
    fixed = {}
    for name, values in given.items():
        if len(values) != 1:
            raise ConfigError(f"params: {name} has {len(values)} values; search it in space")
        if name in {d.name for d in dims}:
            raise ConfigError(f"{name} is both searched (space) and fixed (params)")
        fixed[name] = values[0]
    plan = Plan(dims, fixed, config_cls, metric, "maximize" if validation_metrics(cfg.model)[metric] else "minimize")
    for dim in dims:  # each end of each range, each choice: a config the pipeline accepts?
        for value in dim.extremes():
            try:
                trial_config(cfg, plan, {dim.name: value}, "check")  # validates itself
            except ConfigError as exc:
                raise ConfigError(f"space: {dim.name}={value}: {exc}") from None
    return plan


def trial_config(cfg: SearchConfig, plan: Plan, sampled: dict, number):
    """A trial's config: fixed params, sampled params; never registered by itself."""
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sampled.items())
    return plan.config_cls(
        **plan.fixed,
        **sampled,
        data_dir=cfg.data_dir,
        register=False,
        promote=False,
        device=cfg.device,
        precision=cfg.precision,
        compile=cfg.compile,
        run_name=f"trial {number}: {shown}",
    )


# --- the trials -------------------------------------------------------------------------


class SurplusTrial(Exception):
    """Another process filled the study while this trial was being created: it does not run."""


def best_trial(trials, maximize: bool):
    """The complete trial with the best validation value (its `value`); None if there is none.
    Test metrics (user attrs) play no part."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    return (max if maximize else min)(complete, key=lambda t: t.value) if complete else None


def run_search(cfg: SearchConfig) -> dict:
    plan = plan_search(cfg)
    url = storage_url(cfg)
    study = open_study(cfg, plan, open_storage(url))
    train = trainer(cfg.model)
    loaded: dict[tuple, object] = {}  # data loaded once per distinct data setting
    # missing data is found now, before any run starts
    splits_for(trial_config(cfg, plan, {d.name: d.extremes()[0] for d in plan.dims}, "check"), loaded)
    tracking.ready_store()

    with tracking.training_run(cfg.experiment_name, cfg.run_name) as parent:
        parent_id = parent.info.run_id
        tracking.log_params({**as_params(cfg), "storage": shown_url(url), "study": study.study_name})
        tracking.set_tags(
            {
                "model_type": "search",
                "search_model": cfg.model,
                "optuna_study": study.study_name,
                "searched": ",".join(d.name for d in plan.dims),
            }
        )
        tracking.log_dict(
            {
                "space": [str(d) for d in plan.dims],
                "params": plan.fixed,
                "metric": plan.metric,
                "direction": plan.direction,
            },
            "search/space.json",
        )

        def objective(trial: optuna.Trial) -> float:
            if (
                len([t for t in study.get_trials(deepcopy=False, states=COUNTED) if t.number < trial.number])
                >= cfg.n_trials
            ):
                raise SurplusTrial(f"trial {trial.number}: the study has its {cfg.n_trials} trials")
            sampled = {d.name: d.suggest(trial) for d in plan.dims}
            run_ids: list[str] = []

            def report_epoch(epoch: int, metrics: dict) -> None:
                if not run_ids:
                    run_ids.append(tracking.active_run_id())
                    trial.set_user_attr("run_id", run_ids[0])
                    tracking.set_tags(
                        {
                            "optuna_study": study.study_name,
                            "optuna_trial": trial.number,
                            "optuna_state": "running",
                            "search_run_id": parent_id,
                        }
                    )
                value = metrics[plan.metric]
                trial.report(value, epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch + 1)
                    reason = (
                        f"pruned after epoch {epoch + 1} of {child.epochs}: {plan.metric} {value:.4g} is behind "
                        "the median of earlier trials at that epoch"
                    )
                    raise tracking.RunStopped(
                        reason,
                        "FINISHED",
                        {"optuna_state": "pruned", "pruned_at_epoch": epoch + 1, tracking.NOTE: reason},
                    )

            try:
                child = trial_config(cfg, plan, sampled, trial.number)  # validates itself
                result = train(child, parent_run_id=parent_id, data=splits_for(child, loaded), epoch_hook=report_epoch)
            except tracking.RunStopped as stopped:
                raise optuna.TrialPruned(str(stopped)) from None
            except BaseException as exc:  # diverged, bad combination, interrupted: a failed trial
                trial.set_user_attr("error", str(exc) or type(exc).__name__)
                if run_ids:
                    tracking.tag_run(run_ids[0], {"optuna_state": "failed"})
                raise
            trial.set_user_attr("model_uri", result["model_uri"])
            for key, value in result.items():
                if key.startswith("val_") or key == reported_test_metric(cfg.model):
                    trial.set_user_attr(key, float(value))
            tracking.tag_run(result["run_id"], {"optuna_state": "complete"})
            return result[plan.metric]

        started, attempts = time.monotonic(), 0
        try:
            while attempts < cfg.n_trials:  # failed trials do not count, but do not loop forever either
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                if counted_trials(study) >= cfg.n_trials:
                    break
                if cfg.timeout and time.monotonic() - started >= cfg.timeout:
                    print(f"search: timeout of {cfg.timeout:g} s reached; no new trial", flush=True)
                    break
                attempts += 1
                study.optimize(
                    objective, n_trials=1, catch=(FloatingPointError, ConfigError, SurplusTrial), gc_after_trial=False
                )
        except KeyboardInterrupt:
            raise tracking.RunInterrupted(
                f"interrupted: search run {parent_id} ended as KILLED; the trial in progress is marked failed; "
                f"rerun the same search (study {study.study_name!r}) to continue it"
            ) from None
        return _summarise(cfg, plan, study, parent_id, attempts)


def _summarise(cfg: SearchConfig, plan: Plan, study: optuna.Study, parent_id: str, attempts: int) -> dict:
    trials = study.get_trials(deepcopy=False)
    test_metric = reported_test_metric(cfg.model)
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            **{d.name: t.params.get(d.name) for d in plan.dims},
            plan.metric: t.value if t.state == TrialState.COMPLETE else None,
            test_metric: t.user_attrs.get(test_metric),
            "run_id": t.user_attrs.get("run_id"),
            "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
        }
        for t in trials
    ]
    tracking.log_table(rows, "search/trials.json")
    states = [t.state for t in trials]
    tracking.log_metrics(
        {
            "trials_complete": states.count(TrialState.COMPLETE),
            "trials_pruned": states.count(TrialState.PRUNED),
            "trials_failed": states.count(TrialState.FAIL),
            "trials_this_process": attempts,
        }
    )
    _log_study_figures(study)
    best = best_trial(trials, plan.direction == "maximize")
    summary = {"run_id": parent_id, "rows": rows, "metric": plan.metric, "best": None, "study": study.study_name}
    if best is None:
        return summary
    best_params = " ".join(f"{k}={v}" for k, v in best.params.items())
    tracking.log_metrics({f"best_{plan.metric}": best.value})
    tracking.set_tags(
        {"best_trial": best.number, "best_run_id": best.user_attrs.get("run_id"), "best_params": best_params}
    )
    summary["best"] = {
        "number": best.number,
        "params": best.params,
        plan.metric: best.value,
        "run_id": best.user_attrs.get("run_id"),
        test_metric: best.user_attrs.get(test_metric),
    }
    if cfg.register:
        summary.update(register_best(cfg, plan, best))
    return summary


def _log_study_figures(study: optuna.Study) -> None:
    """Optimisation history, and parameter importances where they can be computed (they need
    two complete trials with different params)."""
    from optuna.visualization import matplotlib as plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # "too few trials: importances equal"
        tracking.log_figure(plots.plot_optimization_history(study).figure, "figures/optimization_history.png")
        try:
            axes = plots.plot_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            tracking.set_tags({"param_importances": f"not computed: {exc}"})
        else:
            tracking.log_figure(axes.figure, "figures/param_importances.png")


def register_best(cfg: SearchConfig, plan: Plan, best) -> dict:
    """Register the best trial's model as `candidate`; it becomes `champion` by the usual rule
    (validation metric, comparable tags). Registered once, whichever process gets there first."""
    child = trial_config(cfg, plan, best.params, best.number)
    name, run_id = child.registered_model_name, best.user_attrs["run_id"]
    version = tracking.find_model_version(name, {"run_id": run_id})
    if version is None:
        version = tracking.register_model(
            best.user_attrs["model_uri"], name, report.registered_model_description(recipe(cfg.model).kind.name, name)
        )
        tracking.tag_model_version(
            name,
            version,
            {
                **{k: getattr(child, k) for k in champion_rule(cfg.model).comparable},
                "run_id": run_id,
                reported_test_metric(cfg.model): best.user_attrs.get(reported_test_metric(cfg.model)),
                "search_trial": best.number,
            },
        )
    promotion = champion_rule(cfg.model).promote(name, version, child, best.user_attrs)
    return {"registered_version": version, "promotion": str(promotion)}
