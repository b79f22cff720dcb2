"""What the `sweep` and the `search` share: training params for child runs read from text and
typed like the config's fields, the pipeline per model, and data splits loaded once per
distinct data setting."""

from __future__ import annotations

import dataclasses
import functools
import shlex
import typing

from latent_models.data import DataSplits, load_data
from latent_models.errors import ConfigError
from latent_models.kinds import trained_by
from latent_models.options import RESUME_KEEPS, DataOptions

# Set by the sweep or search itself, or meaningless per child.
NOT_SWEEPABLE = (set(RESUME_KEEPS) | {"register", "registered_model_name", "promote"}) - {"download"}
DATA_FIELDS = [f.name for f in dataclasses.fields(DataOptions)]


def settable(config_cls) -> list[str]:
    """The params a sweep or search may set for its children, sorted."""
    return sorted(set(typing.get_type_hints(config_cls)) - NOT_SWEEPABLE)


def parse_assignments(
    text: str, what: str, config_cls, setter: str = "a sweep can set for its children"
) -> dict[str, list]:
    """`a=1,2 b=x` -> {"a": [1, 2], "b": ["x"]}, values typed like the config's fields."""
    hints = typing.get_type_hints(config_cls)
    allowed = settable(config_cls)
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
            raise ConfigError(f"{what}: {name!r} is not a param {setter}; choose from {', '.join(allowed)}")
        if name in parsed:
            raise ConfigError(f"{what}: {name} is given twice")
        parsed[name] = [typed(v, hints[name], name, what) for v in values.split(",") if v != ""]
        if not parsed[name]:
            raise ConfigError(f"{what}: {name} has no values")
    return parsed


def typed(value: str, kind, name: str, what: str):
    """`value` as the config field's type (bool, int, float or str), else a ConfigError."""
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


def splits_for(child, loaded: dict) -> DataSplits:
    """The child's data splits, loaded on first use of its data setting (and seed) and kept in `loaded`."""
    key = tuple(getattr(child, f) for f in DATA_FIELDS) + (child.seed,)
    if key not in loaded:
        loaded[key] = load_data(child)
    return loaded[key]


def recipe(model: str):
    """The training recipe of a sweep's children or a search's trials (`model`: the entry point
    that trains their kind; see training.pipeline)."""
    return trained_by(model).recipe()


def trainer(model: str):
    """The training run of `model`'s children: run_pipeline with their kind's recipe."""
    from latent_models.training.pipeline import run_pipeline

    return functools.partial(run_pipeline, recipe(model))


def champion_rule(model: str):
    """How the model's registered versions compete (see tracking.ChampionRule)."""
    return recipe(model).champion


def validation_metrics(model: str) -> dict[str, bool]:
    """The validation metrics that may rank children and trials (of the epoch each selected), and
    whether higher is better. Test metrics are reported beside them, never chosen on."""
    return trained_by(model).validation_metrics


def reported_test_metric(model: str) -> str:
    """Reported for every child and trial beside the ranking metric."""
    return trained_by(model).test_metric


def check_validation_metric(model: str, metric: str) -> None:
    if metric not in validation_metrics(model):
        raise ConfigError(
            f"metric {metric!r} is not a validation metric of {model} runs; choose from "
            f"{', '.join(validation_metrics(model))} (test metrics are reported, never chosen on)"
        )
