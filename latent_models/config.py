"""One typed configuration object per entry point.

Field names are the MLproject parameter names, the click option names and the logged
run params, all at once; `cli.py` builds the click options from these fields (a `Literal`
field becomes a `click.Choice` of its values) and a test checks them against `MLproject`.

A config is valid from the moment it exists: `__post_init__` runs `validate()` once, which
turns the first bad value into one clear sentence (ConfigError, or DeviceError for the
device). Nothing downstream validates again; a config derived from another (`ae_config()`,
a sweep's child, `dataclasses.replace`, `with_logged_params`) is a new object and validates
itself, once. Each rule is written once: a choice is its `Literal` type; a rule that also
holds outside the configs lives where its concept does (`noise.check_noise`,
`models.prior.check_components`, `evaluation.baselines.baselines_named`, `device.check`) and
the configs call it.

This module imports no torch: `cli.py` builds every command's options (and `--help`) from it.
The value sets come from torch-free modules (`choices`, the model configs); the rules above
live in modules that need torch, so a config imports them when it validates, not when it loads.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Literal

from latent_models.choices import (
    DEVICE_CHOICES,
    NOISE_MODELS,
    Channels,
    Dataset,
    ImagePolicy,
    Noise,
    Precision,
    Schedule,
)
from latent_models.errors import ConfigError  # defined apart: noise.py and models/prior.py raise it too
from latent_models.models.config import MNIST_SHAPE, check_image_size
from latent_models.models.denoiser_config import Arch, DenoiserConfig
from latent_models.models.vae_config import Likelihood, VAEModelConfig

ChildModel = Literal["ae", "vae"]  # what a sweep's children or a search's trials train
Sampler = Literal["tpe", "random"]
Pruner = Literal["median", "none"]


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class DataOptions:
    dataset: Dataset = _help("image dataset; folder: your own images under data_dir", default="mnist")
    data_dir: str = _help(
        "dataset root in torchvision's layout (dataset=folder: the folder of images, flat or with "
        "train/ val/ test/ sub-folders); empty: $LATENT_MODELS_DATA_DIR, else ./data",
        default="",
    )
    download: bool = _help("download the dataset if its files are missing", default=True)
    val_size: int = _help(
        "validation images carved (seeded) from the training set (MNIST-style datasets)", default=5000
    )
    limit_train: int = _help("use only the first N training images (0: all)", default=0)
    limit_test: int = _help("use only the first N test images (0: all)", default=0)
    image_size: int = _help(
        "height and width the models see, a multiple of 4 (0: the dataset's own, 28 for MNIST; a folder: 64)",
        default=0,
    )
    channels: Channels = _help(
        "folder: 1 (grey; colour converted) or 3 (RGB; grey replicated); auto: 3 if any image is colour", default="auto"
    )
    image_policy: ImagePolicy = _help(
        "folder: how images become image_size squares: resize (whole image), center_crop (shorter side "
        "scaled, centre kept), patches (random crops each epoch; fixed crops for val and test)",
        default="resize",
    )
    patches_per_image: int = _help(
        "folder, patches: crops per image per epoch (and fixed crops per val/test image)", default=16
    )
    val_fraction: float = _help(
        "folder without a val/ sub-folder: share of training images (by image) for validation", default=0.1
    )
    test_fraction: float = _help("folder without a test/ sub-folder: share of images (by image) for test", default=0.1)
    memory_budget_mb: float = _help(
        "folder: MiB the training images may take in memory, else they stream from disk (0: half the free memory)",
        default=0,
    )


@dataclass
class TrainOptions:
    epochs: int = _help("training epochs", default=5)
    batch_size: int = _help("minibatch size", default=128)
    lr: float = _help("peak learning rate (AdamW)", default=3e-3)
    weight_decay: float = _help("AdamW weight decay", default=1e-4)
    adam_beta2: float = _help("AdamW's second-moment decay (beta2); lower adapts faster in short runs", default=0.999)
    max_grad_norm: float = _help(
        "clip the gradients' global norm to this before each step (0: off); guards a long, high-lr run "
        "against a loss spike",
        default=0.0,
    )
    schedule: Schedule = _help("learning-rate schedule", default="onecycle")
    seed: int = _help("seed for weights, batches, noise and the validation split", default=0)


def defaults(**values):
    """This entry point's own defaults for fields a base class defines: each field's type and
    help text are written once, where it is defined; the field keeps its place in the order."""

    def apply(cls):
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in values.items():
            inherited = next(
                b.__dataclass_fields__[name] for b in cls.__mro__[1:] if name in getattr(b, "__dataclass_fields__", {})
            )
            annotations[name] = inherited.type
            setattr(cls, name, field(default=value, metadata=inherited.metadata))
        cls.__annotations__ = annotations
        return cls

    return apply


@dataclass
class TrackingOptions:
    experiment_name: str = _help("MLflow experiment (when not launched by `mlflow run`)", default="")
    run_name: str = _help("MLflow run name (empty: generated)", default="")
    register: bool = _help("register the model in the MLflow Model Registry", default=True)
    promote: bool = _help("make the new version `champion` when it beats the current one on validation", default=True)
    system_metrics: bool = _help(
        "log MLflow's system metrics (CPU, memory; GPU where present) into the run", default=True
    )


@dataclass
class RunOptions:
    resume: str = _help(
        "continue an interrupted run from its last finished epoch: a run id, or `last` "
        "(the newest unfinished run of this kind in the experiment)",
        default="",
    )
    checkpoint_dir: str = _help(
        "local checkpoint folder (one subfolder per run id); empty: $LATENT_MODELS_CHECKPOINT_DIR, else ./checkpoints",
        default="",
    )
    nproc_per_node: int = _help("training processes on this machine; > 1 relaunches with torchrun (DDP)", default=1)
    log_checkpoints: bool = _help(
        "also log each epoch's weights as a logged model (step = epoch, with that "
        "epoch's validation metrics), to compare and register checkpoints",
        default=False,
    )


@dataclass
class DeviceOptions:
    device: str = _help(
        f"where to train and evaluate: {DEVICE_CHOICES}; auto: CUDA, else MPS, else CPU", default="auto"
    )
    precision: Precision = _help(
        "auto: bf16 on a GPU that has it, else fp32; bf16: autocast; fp16: autocast + "
        "gradient scaling, GPU only; losses and metrics stay fp32",
        default="auto",
    )
    compile: bool = _help("torch.compile the training step", default=False)


class _Validated:
    """Base of the entry points' configs: validated once, when made."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every rule of this entry point's params, or an error naming the first broken one.
        Runs in __post_init__; call it again only after changing a field by hand."""
        for name, allowed in choices(type(self)).items():
            _choice(name, getattr(self, name), allowed)
        self._check()

    def _check(self) -> None:
        """The rules beyond the choices, per entry point."""


# Kept from the command line when resuming; every other field comes from the resumed run.
# device, precision and compile say how to run, not what to train: a run resumes on any device.
RESUME_KEEPS = (
    "resume",
    "checkpoint_dir",
    "nproc_per_node",
    "data_dir",
    "download",
    "experiment_name",
    "run_name",
    "device",
    "precision",
    "compile",
)


@dataclass
class ModelOptions:
    """What both models have; each entry point sets its own defaults (see `defaults`)."""

    registered_model_name: str = _help("registered model name", default="")
    latent_dim: int = _help("latent dimensions (the denoiser: the conv architecture's bottleneck)", default=16)
    width: int = _help("channels in the first layer", default=16)


@dataclass
@defaults(experiment_name="latent-models-ae", registered_model_name="latent-denoiser", latent_dim=32, width=16)
class AEConfig(ModelOptions, DeviceOptions, RunOptions, TrackingOptions, TrainOptions, DataOptions, _Validated):
    arch: Arch = _help("unet: skip connections, the best denoiser; conv: a true bottleneck", default="unet")
    noise: Noise = _help("corruption model", default="uniform")
    noise_level: float = _help(
        "gaussian: sigma; uniform: amplitude; salt_pepper: p; mask: masked fraction", default=0.5
    )
    iterations: int = _help("passes of the iterative-reconstruction figure", default=5)
    residual: bool = _help(
        "unet: output = input + a learned correction, trained with MSE (DnCNN's residual learning; for photographs)",
        default=False,
    )

    def _check(self) -> None:
        from latent_models.noise import check_noise  # torch: imported to validate, not to build the CLI

        _validate_common(self, DenoiserConfig)
        check_noise(self.noise, self.noise_level)
        self.model_config(MNIST_SHAPE)  # the model's own rules (e.g. residual needs unet), before any run
        _positive("iterations", self.iterations)

    def model_config(self, image_shape: tuple[int, int, int]) -> DenoiserConfig:
        return DenoiserConfig(
            image_shape=image_shape,
            arch=self.arch,
            width=self.width,
            latent_dim=self.latent_dim,
            residual=self.residual,
        )


@dataclass
@defaults(
    epochs=12,
    lr=5e-3,
    adam_beta2=0.95,
    experiment_name="latent-models-vae",
    registered_model_name="latent-vae",
    latent_dim=16,
    width=32,
)
class VAEConfig(ModelOptions, DeviceOptions, RunOptions, TrackingOptions, TrainOptions, DataOptions, _Validated):
    likelihood: Likelihood = _help(
        "bernoulli: intensities as pixel probabilities; gaussian: one learned scale", default="bernoulli"
    )
    beta: float = _help("weight of the KL term after warm-up", default=1.0)
    kl_warmup_epochs: float = _help("epochs over which the KL weight rises linearly from 0", default=1.0)
    binarize: bool = _help("dynamically binarize images (sample pixels ~ Bernoulli(intensity))", default=False)
    iw_samples: int = _help("importance samples k for test_iw_nll", default=100)
    iw_images: int = _help(
        "first N test images for test_iw_nll (0: all; k=100 on all 10,000 takes minutes)", default=1000
    )
    prior_components: int = _help(
        "Gaussian-mixture components fitted to the training latent means and served as sampler=fitted (0: none)",
        default=10,
    )

    def _check(self) -> None:
        from latent_models.models.prior import check_components  # torch: imported to validate

        _validate_common(self, VAEModelConfig)
        if self.prior_components:  # 0: no fitted prior
            check_components(self.prior_components, name="prior_components")
        if self.binarize and self.likelihood != "bernoulli":
            raise ConfigError("binarize=true needs likelihood=bernoulli")
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if not self.kl_warmup_epochs >= 0:
            raise ConfigError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        _validate_iw(self)

    def model_config(self, image_shape: tuple[int, int, int]) -> VAEModelConfig:
        return VAEModelConfig(
            image_shape=image_shape, latent_dim=self.latent_dim, width=self.width, likelihood=self.likelihood
        )


@dataclass
@defaults(experiment_name="latent-models")
class MainConfig(DeviceOptions, TrackingOptions, DataOptions, _Validated):
    ae_epochs: int = _help("epochs for the denoising autoencoder", default=5)
    vae_epochs: int = _help("epochs for the VAE", default=12)
    seed: int = _help("seed for both runs", default=0)

    def _check(self) -> None:
        _validate_data(self, VAEModelConfig)  # the VAE takes the smaller range of sizes
        _check_device(self.device, self.precision)
        _positive("ae_epochs", self.ae_epochs)
        _positive("vae_epochs", self.vae_epochs)

    def ae_config(self) -> AEConfig:
        return AEConfig(**_shared(self, AEConfig), epochs=self.ae_epochs)

    def vae_config(self) -> VAEConfig:
        return VAEConfig(**_shared(self, VAEConfig), epochs=self.vae_epochs)


@dataclass
class EvaluateConfig(DataOptions, _Validated):
    model_uri: str = _help(
        "the model to evaluate: models:/name@alias, models:/name/version or runs:/id/model",
        default="models:/latent-denoiser@champion",
    )
    experiment_name: str = _help("MLflow experiment (when not launched by `mlflow run`)", default="latent-models-eval")
    run_name: str = _help("MLflow run name (empty: generated)", default="")
    dataset: Literal[Dataset, ""] = _help("image dataset (empty: the one the model was trained on)", default="")
    val_size: int = _help(
        "validation images carved from the training set (0: as the model was trained, "
        "so its validation images are not ones it trained on)",
        default=0,
    )
    seed: int = _help(
        "seed of the validation split, the fitted prior and the classifier (-1: the model's training seed)", default=-1
    )
    noise: str = _help(
        f"denoiser: noise models to evaluate, comma-separated ({', '.join(NOISE_MODELS)}), or all", default="all"
    )
    images: int = _help("denoiser: first N test images per noise level (0: all)", default=2000)
    tune_images: int = _help("denoiser: validation images that tune each classical baseline", default=500)
    baselines: str = _help(
        "denoiser: classical baselines, comma-separated (gaussian_blur, median, nl_means, bm3d), default "
        "(all but bm3d, the slowest and an opt-in extra: pip install -e '.[bm3d]') or all",
        default="default",
    )
    iw_samples: int = _help("VAE: importance samples k for test_iw_nll", default=100)
    iw_images: int = _help("VAE: first N test images for test_iw_nll (0: all)", default=1000)
    samples: int = _help("VAE: samples per sampler for FID and class entropy", default=10000)
    components: int = _help("VAE: Gaussian-mixture components of the fitted prior", default=10)
    classifier_name: str = _help(
        "registered classifier for FID (empty: latent-<dataset>-classifier); trained and registered on first use",
        default="",
    )
    classifier_epochs: int = _help("epochs when the classifier has to be trained", default=3)
    system_metrics: bool = _help(
        "log MLflow's system metrics (CPU, memory; GPU where present) into the run", default=True
    )
    device: str = _help(
        f"where the model and the classifier run: {DEVICE_CHOICES} (the classical baselines run on the cpu)",
        default="auto",
    )

    def _check(self) -> None:
        from latent_models.evaluation.baselines import baselines_named  # torch: imported to validate
        from latent_models.models.prior import check_components

        _check_device(self.device)
        if not self.model_uri:
            raise ConfigError("model_uri must not be empty (e.g. models:/latent-denoiser@champion)")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0 (0: as the model was trained), got {self.val_size}")
        _validate_limits(self)
        _validate_images(self)
        try:
            baselines_named(self.baselines)
        except ValueError as exc:
            raise ConfigError(f"baselines: {exc}") from None
        for name in ("tune_images", "classifier_epochs"):
            _positive(name, getattr(self, name))
        check_components(self.components)
        if self.samples < 64:
            raise ConfigError(f"samples must be >= 64 (FID needs many; the figure shows 64), got {self.samples}")
        if self.images < 0:
            raise ConfigError(f"images must be >= 0, got {self.images}")
        _validate_iw(self)
        for noise in self.noise_models():
            _choice("noise", noise, NOISE_MODELS)

    def noise_models(self) -> list[str]:
        return list(NOISE_MODELS) if self.noise == "all" else [n.strip() for n in self.noise.split(",") if n.strip()]


@dataclass
class SweepConfig(DeviceOptions, _Validated):
    model: ChildModel = _help("what each child run trains", default="ae")
    grid: str = _help(
        "swept params: `name=v1,v2,...` per param, params separated by spaces (every combination runs)",
        default="noise_level=0.1,0.3,0.5 arch=conv,unet",
    )
    params: str = _help("fixed params for every child, `name=value` separated by spaces", default="")
    metric: str = _help(
        "validation metric that ranks the children (empty: val_psnr for ae, val_neg_elbo for vae); "
        "test metrics are reported, never chosen on",
        default="",
    )
    experiment_name: str = _help("MLflow experiment (when not launched by `mlflow run`)", default="latent-models-sweep")
    run_name: str = _help("name of the parent run (empty: generated)", default="")
    data_dir: str = _help("dataset root for every child (empty: $LATENT_MODELS_DATA_DIR, else ./data)", default="")
    register: bool = _help("register every child's model", default=False)

    def _check(self) -> None:
        _check_device(self.device, self.precision)

    def child_config_class(self):
        return AEConfig if self.model == "ae" else VAEConfig

    def default_metric(self) -> str:
        return self.metric or ("val_psnr" if self.model == "ae" else "val_neg_elbo")


@dataclass
class SearchConfig(DeviceOptions, _Validated):
    model: ChildModel = _help("what each trial trains", default="ae")
    space: str = _help(
        "searched params, separated by spaces: `name=loguniform(low,high)`, `uniform(low,high)`, "
        "`int(low,high)` or `choice(a,b,...)`; or the path of a YAML file of them",
        default="lr=loguniform(1e-3,1e-2) width=int(8,32)",
    )
    params: str = _help("fixed params for every trial, `name=value` separated by spaces", default="")
    metric: str = _help(
        "validation metric the search optimises (empty: val_psnr for ae, val_neg_elbo for vae)", default=""
    )
    n_trials: int = _help(
        "trials in the study in all (finished ones count, also those of earlier or other "
        "processes): only the missing ones run",
        default=20,
    )
    timeout: float = _help("start no new trial after this many seconds (0: no limit)", default=0.0)
    sampler: Sampler = _help("tpe learns where to look; random is the baseline", default="tpe")
    pruner: Pruner = _help(
        "median: stop a trial whose validation metric is below the median of earlier trials at the same epoch",
        default="median",
    )
    pruner_startup_trials: int = _help("trials that finish before the pruner stops any", default=5)
    pruner_warmup_epochs: int = _help("epochs of each trial before it can be pruned", default=1)
    seed: int = _help("sampler seed (-1: unseeded; give different seeds to processes sharing a study)", default=-1)
    storage: str = _help(
        "Optuna storage URL, e.g. postgresql+psycopg://user@host/db (empty: optuna.db beside "
        "a sqlite tracking store, else ./optuna.db)",
        default="",
    )
    study_name: str = _help(
        "Optuna study; rerunning with the same name continues it (empty: <experiment_name>-<model>)", default=""
    )
    experiment_name: str = _help(
        "MLflow experiment (when not launched by `mlflow run`)", default="latent-models-search"
    )
    run_name: str = _help("name of the parent run (empty: generated)", default="")
    data_dir: str = _help("dataset root for every trial (empty: $LATENT_MODELS_DATA_DIR, else ./data)", default="")
    register: bool = _help(
        "register the best trial's model as `candidate`; it becomes `champion` when it "
        "beats the current one on validation",
        default=False,
    )

    def _check(self) -> None:
        _check_device(self.device, self.precision)
        _positive("n_trials", self.n_trials)
        if self.timeout < 0:
            raise ConfigError(f"timeout must be >= 0 (0: no limit), got {self.timeout}")
        if self.pruner_startup_trials < 0 or self.pruner_warmup_epochs < 0:
            raise ConfigError("pruner_startup_trials and pruner_warmup_epochs must be >= 0")

    def child_config_class(self):
        return AEConfig if self.model == "ae" else VAEConfig

    def default_metric(self) -> str:
        return self.metric or ("val_psnr" if self.model == "ae" else "val_neg_elbo")

    def default_study_name(self) -> str:
        return self.study_name or f"{self.experiment_name}-{self.model}"


@dataclass
class PromoteConfig(_Validated):
    registered_model_name: str = _help("registered model whose alias moves", default="latent-denoiser")
    version: int = _help("version to promote (0: the version aliased `candidate`)", default=0)
    alias: str = _help("alias to move", default="champion")

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
    "ae": AEConfig,
    "vae": VAEConfig,
    "main": MainConfig,
    "evaluate": EvaluateConfig,
    "sweep": SweepConfig,
    "search": SearchConfig,
    "promote": PromoteConfig,
}


def _shared(cfg, target) -> dict:
    keep = (
        {f.name for f in dataclasses.fields(DataOptions)}
        | {f.name for f in dataclasses.fields(DeviceOptions)}
        | {"seed", "register", "promote", "experiment_name", "system_metrics"}
    )
    names = {f.name for f in dataclasses.fields(target)}
    return {k: getattr(cfg, k) for k in keep & names}


@functools.cache
def choices(config_cls) -> dict[str, tuple]:
    """{field: its allowed values} for the choice (`Literal`-typed) fields of `config_cls`."""
    hints = typing.get_type_hints(config_cls)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(config_cls)
        if typing.get_origin(hints[f.name]) is Literal
    }


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(name: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def _validate_limits(cfg: DataOptions) -> None:
    if cfg.limit_train < 0 or cfg.limit_test < 0:
        raise ConfigError("limit_train and limit_test must be >= 0")


def _validate_data(cfg: DataOptions, model=None) -> None:
    """The data params' rules; `model` (a ModelConfig class) adds the image sizes it takes."""
    _positive("val_size", cfg.val_size)
    _validate_limits(cfg)
    _validate_images(cfg, model)


def _validate_images(cfg: DataOptions, model=None) -> None:
    if cfg.dataset not in ("folder", ""):
        if cfg.image_size not in (0, MNIST_SHAPE[1]) or cfg.channels == "3":
            raise ConfigError(
                f"{cfg.dataset} images are 1x28x28: leave image_size at 0 (or 28) and channels at auto or 1, "
                "or use dataset=folder"
            )
    elif model is not None and cfg.image_size:
        check_image_size(model, cfg.image_size)
    elif cfg.image_size and (cfg.image_size % 4 or cfg.image_size < 8):
        raise ConfigError(f"image_size must be a multiple of 4 and at least 8, got {cfg.image_size}")
    _positive("patches_per_image", cfg.patches_per_image)
    for name in ("val_fraction", "test_fraction"):
        if not 0 < getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(cfg, name)}")
    if cfg.image_size < 0 or cfg.memory_budget_mb < 0:
        raise ConfigError("image_size and memory_budget_mb must be >= 0")


def _validate_iw(cfg) -> None:
    """The importance-weighted NLL's params, trained (VAEConfig) or evaluated (EvaluateConfig)."""
    _positive("iw_samples", cfg.iw_samples)
    if cfg.iw_images < 0:
        raise ConfigError(f"iw_images must be >= 0, got {cfg.iw_images}")


def _check_device(device: str, precision: str = "auto", nproc_per_node: int = 1) -> None:
    """`device.check`, imported here when a config validates: it needs torch."""
    from latent_models.device import check

    check(device, precision, nproc_per_node)


def _validate_common(cfg, model) -> None:
    _validate_data(cfg, model)
    _positive("nproc_per_node", cfg.nproc_per_node)
    _check_device(cfg.device, cfg.precision, cfg.nproc_per_node)
    if cfg.batch_size % cfg.nproc_per_node:
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be divisible by nproc_per_node ({cfg.nproc_per_node})")
    if cfg.resume and cfg.nproc_per_node > 1:
        raise ConfigError("resume runs in one process; leave nproc_per_node at 1 to resume")
    for name in ("epochs", "batch_size", "lr", "latent_dim", "width"):
        _positive(name, getattr(cfg, name))
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if not 0 <= cfg.adam_beta2 < 1:
        raise ConfigError(f"adam_beta2 must be in [0, 1), got {cfg.adam_beta2}")
    if cfg.max_grad_norm < 0:
        raise ConfigError(f"max_grad_norm must be >= 0 (0: off), got {cfg.max_grad_norm}")


def as_params(cfg) -> dict:
    return dataclasses.asdict(cfg)


def with_logged_params(cfg, params: dict[str, str]):
    """`cfg` with the fields a resumed run logged (its own settings), except RESUME_KEEPS."""
    hints = typing.get_type_hints(type(cfg))
    parse = {bool: lambda v: v.lower() == "true", int: lambda v: int(float(v)), float: float, str: str}
    changes = {}
    for f in dataclasses.fields(cfg):
        if f.name in params and f.name not in RESUME_KEEPS:
            value, kind = params[f.name], str if f.name in choices(type(cfg)) else hints[f.name]
            changes[f.name] = "" if value == "''" and kind is str else parse[kind](value)
    return dataclasses.replace(cfg, **changes)
