"""The configs of the entry points that are not one model kind's training: `main`, `evaluate`,
`sweep`, `search` and `promote`; and `ENTRY_POINTS`, every MLproject entry point's config (a kind's
training entry point's config lives in its folder, see `latent_models.kinds`).

See `options.py` for how a config is made, validated and turned into options. Free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latent_models.choices import DEVICE_CHOICES, Dataset
from latent_models.errors import ConfigError
from latent_models.kinds import KINDS, kind, trained, trained_by
from latent_models.options import (
    DataOptions,
    DeviceOptions,
    TrackingOptions,
    Validated,
    check_device,
    defaults,
    help_field,
    positive,
    shared_fields,
    validate_data,
    validate_images,
    validate_limits,
)

# What a sweep's children or a search's trials train: a kind's training entry point.
ChildModel = Literal[tuple(trained())]
_MONITORS = ", ".join(f"{k.monitor} for {entry_point}" for entry_point, k in trained().items())
Sampler = Literal["tpe", "random"]
Pruner = Literal["median", "none"]


# The kinds `main` trains, in this order, each in a child run named after its entry point.
MAIN_TRAINS = ("denoiser", "vae")


@dataclass
@defaults(experiment_name="latent-models")
class MainConfig(DeviceOptions, TrackingOptions, DataOptions, Validated):
    ae_epochs: int = help_field("epochs for the denoising autoencoder", default=5)
    vae_epochs: int = help_field("epochs for the VAE", default=12)
    seed: int = help_field("seed for both runs", default=0)

    def _check(self) -> None:
        for name in MAIN_TRAINS:  # each model's range of image sizes
            validate_data(self, kind(name).model_config)
        check_device(self.device, self.precision)
        for name in MAIN_TRAINS:
            positive(f"{kind(name).entry_point}_epochs", getattr(self, f"{kind(name).entry_point}_epochs"))

    def children(self) -> dict:
        """entry point -> the config of the child run that trains it."""
        configs = {}
        for name in MAIN_TRAINS:
            entry_point, config = kind(name).entry_point, kind(name).config
            configs[entry_point] = config(**shared_fields(self, config), epochs=getattr(self, f"{entry_point}_epochs"))
        return configs


# `evaluate`'s options for each kind it knows, declared in the kind's folder.
# Once each: kinds measured alike share their options class (the VampPrior VAE takes the VAE's).
EVALUATION_OPTIONS = tuple(dict.fromkeys(k.evaluate_options for k in KINDS.values() if k.evaluate_options))


@dataclass
class EvaluateConfig(*reversed(EVALUATION_OPTIONS), DataOptions, Validated):
    model_uri: str = help_field(
        "the model to evaluate: models:/name@alias, models:/name/version or runs:/id/model",
        default="models:/latent-denoiser@champion",
    )
    experiment_name: str = help_field(
        "MLflow experiment (when not launched by `mlflow run`)", default="latent-models-eval"
    )
    run_name: str = help_field("MLflow run name (empty: generated)", default="")
    dataset: Literal[Dataset, ""] = help_field("image dataset (empty: the one the model was trained on)", default="")
    val_size: int = help_field(
        "validation images carved from the training set (0: as the model was trained, "
        "so its validation images are not ones it trained on)",
        default=0,
    )
    seed: int = help_field(
        "seed of the validation split, the fitted prior and the classifier (-1: the model's training seed)", default=-1
    )
    system_metrics: bool = help_field(
        "log MLflow's system metrics (CPU, memory; GPU where present) into the run", default=True
    )
    device: str = help_field(
        f"where the model and the classifier run: {DEVICE_CHOICES} (the classical baselines run on the cpu)",
        default="auto",
    )

    def _check(self) -> None:
        check_device(self.device)
        if not self.model_uri:
            raise ConfigError("model_uri must not be empty (e.g. models:/latent-denoiser@champion)")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0 (0: as the model was trained), got {self.val_size}")
        validate_limits(self)
        validate_images(self)
        for options in EVALUATION_OPTIONS:
            options.check(self)


@dataclass
class SweepConfig(DeviceOptions, Validated):
    model: ChildModel = help_field("what each child run trains", default="ae")
    grid: str = help_field(
        "swept params: `name=v1,v2,...` per param, params separated by spaces (every combination runs)",
        default="noise_level=0.1,0.3,0.5 arch=conv,unet",
    )
    params: str = help_field("fixed params for every child, `name=value` separated by spaces", default="")
    metric: str = help_field(
        f"validation metric that ranks the children (empty: {_MONITORS}); test metrics are reported, never chosen on",
        default="",
    )
    experiment_name: str = help_field(
        "MLflow experiment (when not launched by `mlflow run`)", default="latent-models-sweep"
    )
    run_name: str = help_field("name of the parent run (empty: generated)", default="")
    data_dir: str = help_field("dataset root for every child (empty: $LATENT_MODELS_DATA_DIR, else ./data)", default="")
    register: bool = help_field("register every child's model", default=False)

    def _check(self) -> None:
        check_device(self.device, self.precision)

    def child_config_class(self):
        return trained_by(self.model).config

    def default_metric(self) -> str:
        return self.metric or trained_by(self.model).monitor


@dataclass
class SearchConfig(DeviceOptions, Validated):
    model: ChildModel = help_field("what each trial trains", default="ae")
    space: str = help_field(
        "searched params, separated by spaces: `name=loguniform(low,high)`, `uniform(low,high)`, "
        "`int(low,high)` or `choice(a,b,...)`; or the path of a YAML file of them",
        default="lr=loguniform(1e-3,1e-2) width=int(8,32)",
    )
    params: str = help_field("fixed params for every trial, `name=value` separated by spaces", default="")
    metric: str = help_field(f"validation metric the search optimises (empty: {_MONITORS})", default="")
    n_trials: int = help_field(
        "trials in the study in all (finished ones count, also those of earlier or other "
        "processes): only the missing ones run",
        default=20,
    )
    timeout: float = help_field("start no new trial after this many seconds (0: no limit)", default=0.0)
    sampler: Sampler = help_field("tpe learns where to look; random is the baseline", default="tpe")
    pruner: Pruner = help_field(
        "median: stop a trial whose validation metric is below the median of earlier trials at the same epoch",
        default="median",
    )
    pruner_startup_trials: int = help_field("trials that finish before the pruner stops any", default=5)
    pruner_warmup_epochs: int = help_field("epochs of each trial before it can be pruned", default=1)
    seed: int = help_field("sampler seed (-1: unseeded; give different seeds to processes sharing a study)", default=-1)
    storage: str = help_field(
        "Optuna storage URL, e.g. postgresql+psycopg://user@host/db (empty: optuna.db beside "
        "a sqlite tracking store, else ./optuna.db)",
        default="",
    )
    study_name: str = help_field(
        "Optuna study; rerunning with the same name continues it (empty: <experiment_name>-<model>)", default=""
    )
    experiment_name: str = help_field(
        "MLflow experiment (when not launched by `mlflow run`)", default="latent-models-search"
    )
    run_name: str = help_field("name of the parent run (empty: generated)", default="")
    data_dir: str = help_field("dataset root for every trial (empty: $LATENT_MODELS_DATA_DIR, else ./data)", default="")
    register: bool = help_field(
        "register the best trial's model as `candidate`; it becomes `champion` when it "
        "beats the current one on validation",
        default=False,
    )

    def _check(self) -> None:
        check_device(self.device, self.precision)
        positive("n_trials", self.n_trials)
        if self.timeout < 0:
            raise ConfigError(f"timeout must be >= 0 (0: no limit), got {self.timeout}")
        if self.pruner_startup_trials < 0 or self.pruner_warmup_epochs < 0:
            raise ConfigError("pruner_startup_trials and pruner_warmup_epochs must be >= 0")

    def child_config_class(self):
        return trained_by(self.model).config

    def default_metric(self) -> str:
        return self.metric or trained_by(self.model).monitor

    def default_study_name(self) -> str:
        return self.study_name or f"{self.experiment_name}-{self.model}"


@dataclass
class PromoteConfig(Validated):
    registered_model_name: str = help_field("registered model whose alias moves", default="latent-denoiser")
    version: int = help_field("version to promote (0: the version aliased `candidate`)", default=0)
    alias: str = help_field("alias to move", default="champion")

    def _check(self) -> None:
        if not self.registered_model_name:
            raise ConfigError("registered_model_name must not be empty")
        if self.version < 0:
            raise ConfigError(f"version must be >= 0 (0: the candidate), got {self.version}")
        if not self.alias:
            raise ConfigError("alias must not be empty")


# MLproject entry point -> the config whose fields are its params: the CLI's commands, the
# MLproject check and the docs' parameter reference all read this one mapping.
ENTRY_POINTS: dict[str, type] = {
    **{entry_point: k.config for entry_point, k in trained().items()},
    "main": MainConfig,
    "evaluate": EvaluateConfig,
    "sweep": SweepConfig,
    "search": SearchConfig,
    "promote": PromoteConfig,
}
