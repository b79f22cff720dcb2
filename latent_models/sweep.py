"""The `sweep` entry point: every combination of a grid of training params, each an
ordinary `ae` or `vae` run nested under one parent run, so the MLflow UI's compare view and
parallel-coordinates plot work on the children directly. The parent logs a summary table
and the chosen metric against each swept param."""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import typing

from latent_models import figures, tracking
from latent_models.config import DataOptions, RESUME_KEEPS, ConfigError, SweepConfig, as_params
from latent_models.data import load_splits

# The metrics a child reports at the end, and which way is better.
FINAL_METRICS = {
    "ae": ("test_psnr", "test_ssim", "test_mse", "test_psnr_noisy", "test_ssim_noisy", "test_mse_noisy",
           "best_epoch", "train_seconds", "train_images_per_second"),
    "vae": ("test_neg_elbo", "test_recon", "test_kl", "test_active_units", "test_iw_nll", "best_epoch",
            "train_seconds", "train_images_per_second"),
}
HIGHER_IS_BETTER = {"test_psnr", "test_ssim", "test_psnr_noisy", "test_ssim_noisy", "test_active_units",
                    "train_images_per_second"}
# Set by the sweep itself, or meaningless per child.
NOT_SWEEPABLE = (set(RESUME_KEEPS) | {"register", "registered_model_name", "promote"}) - {"download"}
DATA_FIELDS = [f.name for f in dataclasses.fields(DataOptions)]


def parse_assignments(text: str, what: str, config_cls) -> dict[str, list]:
    """`a=1,2 b=x` -> {"a": [1, 2], "b": ["x"]}, values typed like the config's fields."""
    hints = typing.get_type_hints(config_cls)
    allowed = sorted(set(hints) - NOT_SWEEPABLE)
    parsed: dict[str, list] = {}
    try:
        items = shlex.split(text.replace(";", " "))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc} in {text!r}") from None
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ConfigError(f"{what}: {item!r} is not name=value[,value...]")
        if name not in allowed:
            raise ConfigError(f"{what}: {name!r} is not a param a sweep can set for its children; "
                              f"choose from {', '.join(allowed)}")
        if name in parsed:
            raise ConfigError(f"{what}: {name} is given twice")
        parsed[name] = [_typed(v, hints[name], name, what) for v in values.split(",") if v != ""]
        if not parsed[name]:
            raise ConfigError(f"{what}: {name} has no values")
    return parsed


def _typed(value: str, kind, name: str, what: str):
    try:
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        number = float(value) if kind in (int, float) else None
        if kind is int:
            if not number.is_integer():
                raise ValueError
            return int(number)
        return number if kind is float else value
    except ValueError:
        raise ConfigError(f"{what}: {name}={value!r} is not a valid {kind.__name__}") from None


def child_configs(cfg: SweepConfig) -> list:
    """Every child's config, validated before any run starts (a typo fails in a second, not
    after hours)."""
    config_cls = cfg.child_config_class()
    metric = cfg.default_metric()
    if metric not in FINAL_METRICS[cfg.model]:
        raise ConfigError(f"metric {metric!r} is not a final metric of {cfg.model} runs; "
                          f"choose from {', '.join(FINAL_METRICS[cfg.model])}")
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
        child = config_cls(**base, **swept, data_dir=cfg.data_dir, register=cfg.register, promote=cfg.register,
                           device=cfg.device, precision=cfg.precision, compile=cfg.compile,
                           run_name=" ".join(f"{k}={v}" for k, v in swept.items()))
        try:
            child.validate()
        except ConfigError as exc:
            raise ConfigError(f"child {child.run_name}: {exc}") from None
        children.append((swept, child))
    return children


def run_sweep(cfg: SweepConfig) -> dict:
    cfg.validate()
    children = child_configs(cfg)
    swept_names = list(children[0][0])
    metric = cfg.default_metric()
    train = _trainer(cfg.model)
    loaded: dict[tuple, object] = {}  # data loaded once per distinct data setting
    with tracking.training_run(cfg.experiment_name, cfg.run_name) as parent:
        tracking.log_params({**as_params(cfg), "children": len(children)})
        tracking.set_tags({"model_type": "sweep", "sweep_model": cfg.model, "swept": ",".join(swept_names)})
        rows = []
        for i, (swept, child) in enumerate(children, 1):
            print(f"sweep child {i}/{len(children)}: {child.run_name}", flush=True)
            key = tuple(getattr(child, f) for f in DATA_FIELDS) + (child.seed,)
            if key not in loaded:
                loaded[key] = load_splits(child.dataset, child.data_dir, child.val_size, child.seed,
                                          child.download, child.limit_train, child.limit_test)
            row = {**swept, "run_id": None, "status": "FINISHED", metric: None}
            try:
                result = train(child, parent_run_id=parent.info.run_id, data=loaded[key])
            except FloatingPointError as exc:  # diverged: keep sweeping, say so in the table
                row.update(status="FAILED", error=str(exc))
            else:
                row.update(run_id=result["run_id"], **{metric: result[metric]})
            rows.append(row)
        _summarise(rows, swept_names, metric)
        finished = [r for r in rows if r[metric] is not None]
        best = (max if metric in HIGHER_IS_BETTER else min)(finished, key=lambda r: r[metric]) if finished else None
        if best:
            tracking.log_metrics({f"best_{metric}": best[metric]})
            tracking.set_tags({"best_run_id": best["run_id"],
                               "best_params": " ".join(f"{k}={best[k]}" for k in swept_names)})
        return {"run_id": parent.info.run_id, "rows": rows, "best": best, "metric": metric}


def _summarise(rows: list[dict], swept_names: list[str], metric: str) -> None:
    tracking.log_table(rows, "sweep/summary.json")
    for name in swept_names:
        others = [o for o in swept_names if o != name]
        tracking.log_figure(figures.metric_versus_param(rows, name, metric, others),
                            f"figures/{metric}_vs_{name}.png")


def _trainer(model: str):
    if model == "ae":
        from latent_models.train_ae import run_ae

        return run_ae
    from latent_models.train_vae import run_vae

    return run_vae
