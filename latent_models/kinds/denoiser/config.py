"""The denoiser's config (its architecture and sizes, declared once) and the `ae` entry point's,
which inherits them as options. Free of torch, so the CLI's options and validation load without it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from latent_models.choices import NOISE_MODELS, Noise
from latent_models.errors import ConfigError
from latent_models.models.config import ModelConfig, hyper_parameter
from latent_models.options import (
    DataOptions,
    DeviceOptions,
    RegistryOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    Validated,
    check_choice,
    defaults,
    help_field,
    model_options,
    positive,
    validate_training,
)

Arch = Literal["unet", "conv"]


@dataclass(frozen=True)
class DenoiserConfig(ModelConfig):
    kind = "denoiser"
    max_side = 1024  # the conv arch's dense bottleneck grows with the area; the U-Net is fully convolutional
    arch: Arch = hyper_parameter("unet", "unet: skip connections, the best denoiser; conv: a true bottleneck")
    width: int = hyper_parameter(16, "channels in the first layer")
    latent_dim: int = hyper_parameter(32, "latent dimensions of the conv architecture's bottleneck (unet: unused)")
    # The residual head instead of the sigmoid head: see `model.py`'s docstring.
    residual: bool = hyper_parameter(
        False,
        "unet: output = input + a learned correction, trained with MSE (DnCNN's residual learning; for photographs)",
    )
    # One model for every Gaussian noise level up to sigma_max: see `model.py`'s docstring.
    sigma_max: float = hyper_parameter(
        0.0,
        "unet, gaussian noise: > 0 trains one model for every sigma from 0 up to this ([0, 1] units; 55/255 = "
        "0.216 for photographs), sigma given as an input (FFDNet's noise-level map); the served model takes "
        "sigma or sigma=auto. 0: one noise level, noise_level's",
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("width", "latent_dim"):
            positive(name, getattr(self, name))
        if self.residual and self.arch != "unet":
            raise ConfigError("residual=true needs arch=unet (a bottleneck autoencoder has no residual path)")
        if not 0 <= self.sigma_max <= 1:
            raise ConfigError(f"sigma_max must lie in [0, 1] (the images' range), got {self.sigma_max}")
        if self.sigma_max and self.arch != "unet":
            raise ConfigError("sigma_max > 0 needs arch=unet (the noise-level map is one more input channel)")

    @property
    def noise_map(self) -> bool:
        """Whether the noise level is an input."""
        return self.sigma_max > 0


@dataclass
@defaults(experiment_name="latent-models-ae", registered_model_name="latent-denoiser")
class AEConfig(
    model_options(DenoiserConfig),
    RegistryOptions,
    DeviceOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    DataOptions,
    Validated,
):
    noise: Noise = help_field("corruption model", default="uniform")
    noise_level: float = help_field(
        "gaussian: sigma; uniform: amplitude; salt_pepper: p; mask: masked fraction", default=0.5
    )
    iterations: int = help_field("passes of the iterative-reconstruction figure", default=5)

    def _check(self) -> None:
        from latent_models.noise import check_noise  # torch: imported to validate, not to build the CLI

        validate_training(self)
        check_noise(self.noise, self.noise_level)
        if self.sigma_max and self.noise != "gaussian":
            raise ConfigError(
                f"sigma_max > 0 trains for Gaussian noise of any sigma: it needs noise=gaussian, got {self.noise}"
            )
        if self.sigma_max and self.noise_level > self.sigma_max:
            raise ConfigError(
                f"noise_level {self.noise_level:g} (where validation and test measure) must lie within "
                f"sigma_max {self.sigma_max:g} (the range trained on)"
            )
        positive("iterations", self.iterations)


# The `bm3d` package is "free for non-commercial use", not an OSI licence: an opt-in extra.
BM3D_MISSING = 'BM3D needs the bm3d package (free for non-commercial use only): pip install -e ".[bm3d]"'


def bm3d_installed() -> bool:
    return importlib.util.find_spec("bm3d") is not None


# The classical baselines `evaluate` tunes and compares (`baselines.py`); the default leaves out
# BM3D, the slowest and an opt-in extra.
BASELINE_NAMES = ("gaussian_blur", "median", "nl_means", "bm3d")
DEFAULT_BASELINES = BASELINE_NAMES[:3]


def baseline_names(text: str) -> tuple[str, ...]:
    """Comma-separated baseline names, `default` or `all` -> the names, in order, once each."""
    wanted = [n.strip() for n in text.split(",") if n.strip()]
    if wanted == ["all"]:
        return BASELINE_NAMES
    if wanted == ["default"]:
        return DEFAULT_BASELINES
    unknown = [n for n in wanted if n not in BASELINE_NAMES]
    if unknown or not wanted:
        raise ConfigError(
            f"baselines: unknown baselines {unknown or text!r}; expected some of {', '.join(BASELINE_NAMES)}, or all"
        )
    return tuple(dict.fromkeys(wanted))


@dataclass
class DenoiserEvaluation:
    """`evaluate`'s options for a denoiser."""

    noise: str = help_field(
        f"denoiser: noise models to evaluate, comma-separated ({', '.join(NOISE_MODELS)}), or all", default="all"
    )
    images: int = help_field("denoiser: first N test images per noise level (0: all)", default=2000)
    tune_images: int = help_field("denoiser: validation images that tune each classical baseline", default=500)
    baselines: str = help_field(
        "denoiser: classical baselines, comma-separated (gaussian_blur, median, nl_means, bm3d), default "
        "(all but bm3d, the slowest and an opt-in extra: pip install -e '.[bm3d]') or all",
        default="default",
    )

    def check(self) -> None:
        if "bm3d" in baseline_names(self.baselines) and not bm3d_installed():
            raise ConfigError(f"baselines: {BM3D_MISSING}")
        positive("tune_images", self.tune_images)
        if self.images < 0:
            raise ConfigError(f"images must be >= 0, got {self.images}")
        for noise in self.noise_models():
            check_choice("noise", noise, NOISE_MODELS)

    def noise_models(self) -> list[str]:
        return list(NOISE_MODELS) if self.noise == "all" else [n.strip() for n in self.noise.split(",") if n.strip()]
