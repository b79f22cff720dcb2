"""The option groups every entry point's config is made of, and the rules they share.

Field names are the MLproject parameter names, the click option names and the logged run
params, all at once; `cli.py` builds the click options from these fields (a `Literal` field
becomes a `click.Choice` of its values) and a test checks them against `MLproject`.

A config is valid from the moment it exists: `__post_init__` runs `validate()` once, which
turns the first bad value into one clear sentence (ConfigError, or DeviceError for the
device). Nothing downstream validates again; a config derived from another (`dataclasses.replace`,
a sweep's child, `with_logged_params`) is a new object and validates itself, once. Each rule is
written once: a choice is its `Literal` type; a rule that also holds outside the configs lives
where its concept does (`noise.check_noise`, the model configs' own checks, `device.check`) and
the configs call it.

A model's hyper-parameters are declared once, in its kind's model config; the entry point that
trains it inherits them as options (`model_options`). This module imports no torch: `cli.py`
builds every command's options (and `--help`) from the configs; the rules that need torch are
imported when a config validates, not when it loads.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from latent_models.choices import DEVICE_CHOICES, Channels, Dataset, ImagePolicy, Precision, Schedule
from latent_models.errors import ConfigError  # defined apart: the data and model layers raise it too
from latent_models.models.config import MNIST_SHAPE, check_image_size


def help_field(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class DataOptions:
    dataset: Dataset = help_field("image dataset; folder: your own images under data_dir", default="mnist")
    data_dir: str = help_field(
        "dataset root in torchvision's layout (dataset=folder: the folder of images, flat or with "
        "train/ val/ test/ sub-folders); empty: $LATENT_MODELS_DATA_DIR, else ./data",
        default="",
    )
    download: bool = help_field("download the dataset if its files are missing", default=True)
    val_size: int = help_field(
        "validation images carved (seeded) from the training set (MNIST-style datasets)", default=5000
    )
    limit_train: int = help_field("use only the first N training images (0: all)", default=0)
    limit_test: int = help_field("use only the first N test images (0: all)", default=0)
    image_size: int = help_field(
        "height and width the models see, a multiple of 4 (0: the dataset's own, 28 for MNIST; a folder: 64)",
        default=0,
    )
    channels: Channels = help_field(
        "folder: 1 (grey; colour converted) or 3 (RGB; grey replicated); auto: 3 if any image is colour", default="auto"
    )
    image_policy: ImagePolicy = help_field(
        "folder: how images become image_size squares: resize (whole image), center_crop (shorter side "
        "scaled, centre kept), patches (random crops each epoch; fixed crops for val and test)",
        default="resize",
    )
    patches_per_image: int = help_field(
        "folder, patches: crops per image per epoch (and fixed crops per val/test image)", default=16
    )
    val_fraction: float = help_field(
        "folder without a val/ sub-folder: share of training images (by image) for validation", default=0.1
    )
    test_fraction: float = help_field(
        "folder without a test/ sub-folder: share of images (by image) for test", default=0.1
    )
    memory_budget_mb: float = help_field(
        "folder: MiB the training images may take in memory, else they stream from disk (0: half the free memory)",
        default=0,
    )


@dataclass
class TrainOptions:
    epochs: int = help_field("training epochs", default=5)
    batch_size: int = help_field("minibatch size", default=128)
    lr: float = help_field("peak learning rate (AdamW)", default=3e-3)
    weight_decay: float = help_field("AdamW weight decay", default=1e-4)
    adam_beta2: float = help_field(
        "AdamW's second-moment decay (beta2); lower adapts faster in short runs", default=0.999
    )
    max_grad_norm: float = help_field(
        "clip the gradients' global norm to this before each step (0: off); guards a long, high-lr run "
        "against a loss spike",
        default=0.0,
    )
    schedule: Schedule = help_field("learning-rate schedule", default="onecycle")
    seed: int = help_field("seed for weights, batches, noise and the validation split", default=0)


def defaults(**values):
    """This class's own defaults for fields a base class defines (an entry point's config, or a
    model config over a shared base; put it under `@dataclass`): each field's type and help text
    are written once, where it is defined; the field keeps its place in the order."""

    def apply(cls):
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in values.items():
            owner = next(b for b in cls.__mro__[1:] if name in getattr(b, "__dataclass_fields__", {}))
            inherited = owner.__dataclass_fields__[name]
            # The resolved type, not its name: the base's module may name types this one does not import.
            annotations[name] = typing.get_type_hints(owner)[name]
            setattr(cls, name, field(default=value, metadata=inherited.metadata))
        cls.__annotations__ = annotations
        return cls

    return apply


@dataclass
class TrackingOptions:
    experiment_name: str = help_field("MLflow experiment (when not launched by `mlflow run`)", default="")
    run_name: str = help_field("MLflow run name (empty: generated)", default="")
    register: bool = help_field("register the model in the MLflow Model Registry", default=True)
    promote: bool = help_field(
        "make the new version `champion` when it beats the current one on validation", default=True
    )
    system_metrics: bool = help_field(
        "log MLflow's system metrics (CPU, memory; GPU where present) into the run", default=True
    )


@dataclass
class RunOptions:
    resume: str = help_field(
        "continue an interrupted run from its last finished epoch: a run id, or `last` "
        "(the newest unfinished run of this kind in the experiment)",
        default="",
    )
    checkpoint_dir: str = help_field(
        "local checkpoint folder (one subfolder per run id); empty: $LATENT_MODELS_CHECKPOINT_DIR, else ./checkpoints",
        default="",
    )
    nproc_per_node: int = help_field(
        "training processes on this machine; > 1 relaunches with torchrun (DDP)", default=1
    )
    log_checkpoints: bool = help_field(
        "also log each epoch's weights as a logged model (step = epoch, with that "
        "epoch's validation metrics), to compare and register checkpoints",
        default=False,
    )


@dataclass
class DeviceOptions:
    device: str = help_field(
        f"where to train and evaluate: {DEVICE_CHOICES}; auto: CUDA, else MPS, else CPU", default="auto"
    )
    precision: Precision = help_field(
        "auto: bf16 on a GPU that has it, else fp32; bf16: autocast; fp16: autocast + "
        "gradient scaling, GPU only; losses and metrics stay fp32",
        default="auto",
    )
    compile: bool = help_field("torch.compile the training step", default=False)


class Validated:
    """Base of the entry points' configs: validated once, when made."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every rule of this entry point's params, or an error naming the first broken one.
        Runs in __post_init__; call it again only after changing a field by hand."""
        for name, allowed in choices(type(self)).items():
            check_choice(name, getattr(self, name), allowed)
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
class RegistryOptions:
    registered_model_name: str = help_field("registered model name", default="")


class ModelOptions:
    """The base of `model_options(...)`: the model config these options make."""

    model_class: ClassVar[type]

    def model_config(self, image_shape: tuple[int, int, int]):
        """The model's config for images of `image_shape`, from this config's model options."""
        names = [f.name for f in dataclasses.fields(self.model_class) if f.name != "image_shape"]
        return self.model_class(image_shape=image_shape, **{n: getattr(self, n) for n in names})


def model_options(model_class: type) -> type:
    """A dataclass of `model_class`'s hyper-parameters (its fields but `image_shape`), with their
    types, defaults and help: an entry point's config inherits it, so each is declared once, in
    the model's config; `defaults(...)` may give the entry point other defaults."""
    hints = typing.get_type_hints(model_class)
    fields = [
        (f.name, hints[f.name], field(default=f.default, metadata=f.metadata))
        for f in dataclasses.fields(model_class)
        if f.name != "image_shape"
    ]
    options = dataclasses.make_dataclass(f"{model_class.__name__}Options", fields, bases=(ModelOptions,))
    options.model_class = model_class
    options.__module__ = model_class.__module__
    return options


def shared_fields(cfg, target) -> dict:
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


def check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def positive(name: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def validate_limits(cfg: DataOptions) -> None:
    if cfg.limit_train < 0 or cfg.limit_test < 0:
        raise ConfigError("limit_train and limit_test must be >= 0")


def validate_data(cfg: DataOptions, model=None) -> None:
    """The data params' rules; `model` (a ModelConfig class) adds the image sizes it takes."""
    positive("val_size", cfg.val_size)
    validate_limits(cfg)
    validate_images(cfg, model)


def validate_images(cfg: DataOptions, model=None) -> None:
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
    positive("patches_per_image", cfg.patches_per_image)
    for name in ("val_fraction", "test_fraction"):
        if not 0 < getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(cfg, name)}")
    if cfg.image_size < 0 or cfg.memory_budget_mb < 0:
        raise ConfigError("image_size and memory_budget_mb must be >= 0")


def validate_iw(cfg) -> None:
    """The importance-weighted NLL's params, trained (VAEConfig) or evaluated (EvaluateConfig)."""
    positive("iw_samples", cfg.iw_samples)
    if cfg.iw_images < 0:
        raise ConfigError(f"iw_images must be >= 0, got {cfg.iw_images}")


def check_device(device: str, precision: str = "auto", nproc_per_node: int = 1) -> None:
    """`device.check`, imported here when a config validates: it needs torch."""
    from latent_models.device import check

    check(device, precision, nproc_per_node)


def validate_training(cfg) -> None:
    """The rules every training entry point's config shares; the model's own rules are checked
    by making its config (`model_config`)."""
    validate_data(cfg, cfg.model_class)
    positive("nproc_per_node", cfg.nproc_per_node)
    check_device(cfg.device, cfg.precision, cfg.nproc_per_node)
    if cfg.batch_size % cfg.nproc_per_node:
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be divisible by nproc_per_node ({cfg.nproc_per_node})")
    if cfg.resume and cfg.nproc_per_node > 1:
        raise ConfigError("resume runs in one process; leave nproc_per_node at 1 to resume")
    for name in ("epochs", "batch_size", "lr"):
        positive(name, getattr(cfg, name))
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if not 0 <= cfg.adam_beta2 < 1:
        raise ConfigError(f"adam_beta2 must be in [0, 1), got {cfg.adam_beta2}")
    if cfg.max_grad_norm < 0:
        raise ConfigError(f"max_grad_norm must be >= 0 (0: off), got {cfg.max_grad_norm}")
    cfg.model_config(MNIST_SHAPE)  # the model's own rules (e.g. residual needs unet), before any run


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
