"""The `sweep` entry point: every combination of a grid of training params, each an
ordinary `ae` or `vae` run nested under one parent run, so the MLflow UI's compare view and
parallel-coordinates plot work on the children directly. The parent logs a summary table
and the chosen metric against each swept param."""

from __future__ import annotations

import itertools

from latent_models import tracking
from latent_models.config import SweepConfig
from latent_models.errors import ConfigError
from latent_models.evaluation import figures
from latent_models.options import as_params
from latent_models.tuning.child_runs import (
    check_validation_metric,
    parse_assignments,
    reported_test_metric,
    splits_for,
    trainer,
    validation_metrics,
)


def child_configs(cfg: SweepConfig) -> list:
    """Every child's config, validated before any run starts (a typo fails in a second, not
    after hours)."""
    config_cls = cfg.child_config_class()
    check_validation_metric(cfg.model, cfg.default_metric())
    grid = parse_assignments(cfg.grid, "grid", config_cls)
    if not grid:
        raise ConfigError("grid is empty: give at least one name=v1,v2 (e.g. noise_level=0.1,0.3,0.5)")
    fixed = parse_assignments(cfg.params, "params", config_cls)
    for name, values in fixed.items():
        if len(values) != 1:
            raise ConfigError(f"params: {name} has {len(values)} values; put swept params in grid")
        if name in grid:
            raise ConfigError(f"{name} is both swept (grid) and fixed (params)")
    base = {name: values[0] for name, values in fixed.items()}
    children = []
    for combination in itertools.product(*grid.values()):
        swept = dict(zip(grid, combination))
        run_name = " ".join(f"{k}={v}" for k, v in swept.items())
        try:  # a config validates itself when made
            child = config_cls(
                **base,
                **swept,
                data_dir=cfg.data_dir,
                register=cfg.register,
                promote=cfg.register,
                device=cfg.device,
                precision=cfg.precision,
                compile=cfg.compile,
                run_name=run_name,
            )
        except ConfigError as exc:
            raise ConfigError(f"child {run_name}: {exc}") from None
        children.append((swept, child))
    return children


def best_row(rows: list[dict], model: str, metric: str) -> dict | None:
    """The finished row with the best validation `metric`, or None."""
    finished = [r for r in rows if r.get(metric) is not None]
    if not finished:
        return None
    return (max if validation_metrics(model)[metric] else min)(finished, key=lambda r: r[metric])


def run_sweep(cfg: SweepConfig) -> dict:
    children = child_configs(cfg)
    swept_names = list(children[0][0])
    metric = cfg.default_metric()
    train = trainer(cfg.model)
    loaded: dict[tuple, object] = {}  # data loaded once per distinct data setting
    with tracking.training_run(cfg.experiment_name, cfg.run_name) as parent:
        tracking.log_params({**as_params(cfg), "children": len(children)})
        tracking.set_tags({"model_type": "sweep", "sweep_model": cfg.model, "swept": ",".join(swept_names)})
        rows = []
        for i, (swept, child) in enumerate(children, 1):
            print(f"sweep child {i}/{len(children)}: {child.run_name}", flush=True)
            test_metric = reported_test_metric(cfg.model)
            row = {**swept, "run_id": None, "status": "FINISHED", metric: None, test_metric: None}
            try:
                result = train(child, parent_run_id=parent.info.run_id, data=splits_for(child, loaded))
            except FloatingPointError as exc:  # diverged: keep sweeping, say so in the table
                row.update(status="FAILED", error=str(exc))
            else:
                row.update(run_id=result["run_id"], **{metric: result[metric], test_metric: result[test_metric]})
            rows.append(row)
        _summarise(rows, swept_names, metric)
        best = best_row(rows, cfg.model, metric)
        if best:
            tracking.log_metrics(
                {
                    f"best_{metric}": best[metric],
                    f"best_run_{reported_test_metric(cfg.model)}": best[reported_test_metric(cfg.model)],
                }
            )
            tracking.set_tags(
                {
                    "best_run_id": best["run_id"],
                    "selected_on": metric,
                    "best_params": " ".join(f"{k}={best[k]}" for k in swept_names),
                }
            )
        return {"run_id": parent.info.run_id, "rows": rows, "best": best, "metric": metric}


def _summarise(rows: list[dict], swept_names: list[str], metric: str) -> None:
    tracking.log_table(rows, "sweep/summary.json")
    for name in swept_names:
        others = [o for o in swept_names if o != name]
        tracking.log_figure(figures.metric_versus_param(rows, name, metric, others), f"figures/{metric}_vs_{name}.png")
