"""The VAE's config (its sizes and likelihood, declared once) and the `vae` entry point's, which
inherits them as options; their shared parts (`VAEFamilyConfig`, `ELBOTrainingOptions`) are the
VampPrior VAE's too. Free of torch, so the CLI's options and validation load without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

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
    defaults,
    help_field,
    model_options,
    positive,
    validate_iw,
    validate_training,
)

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS = get_args(Likelihood)


@dataclass(frozen=True)
class VAEFamilyConfig(ModelConfig):
    """The hyper-parameters every VAE kind's model config shares (this one's, the VampPrior
    VAE's) and their checks, at the VAE's defaults; a kind gives its own with `defaults(...)`."""

    latent_dim: int = hyper_parameter(16, "latent dimensions")
    width: int = hyper_parameter(32, "channels in the first layer (twice that at a quarter of the side)")
    likelihood: Likelihood = hyper_parameter(
        "bernoulli", "bernoulli: intensities as pixel probabilities; gaussian: one learned scale"
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("latent_dim", "width"):
            positive(name, getattr(self, name))
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; expected one of {LIKELIHOODS}")


@dataclass(frozen=True)
class VAEModelConfig(VAEFamilyConfig):
    kind = "vae"
    max_side = 256  # dense layers of 2 * width * (side / 4)^2 x 256 weights: 134M at 256


@dataclass
class ELBOTrainingOptions:
    """The training and test params every VAE kind's entry point shares (this one's, the VampPrior
    VAE's), at the VAE's defaults; an entry point gives its own with `defaults(...)`. Their rules:
    `check_elbo_training`."""

    beta: float = help_field("weight of the KL term after warm-up", default=1.0)
    kl_warmup_epochs: float = help_field("epochs over which the KL weight rises linearly from 0", default=1.0)
    binarize: bool = help_field(
        "dynamically binarize the training images (pixels ~ Bernoulli(intensity)), and binarize the "
        "validation and test images once, with fixed seeds",
        default=False,
    )
    iw_samples: int = help_field("importance samples k for test_iw_nll", default=100)
    iw_images: int = help_field(
        "first N test images for test_iw_nll (0: all; k=100 on all 10,000 takes minutes)", default=1000
    )


@dataclass
@defaults(
    epochs=12,
    lr=5e-3,
    adam_beta2=0.95,
    experiment_name="latent-models-vae",
    registered_model_name="latent-vae",
)
class VAEConfig(
    ELBOTrainingOptions,  # first: a base's fields follow those of the bases after it, so these follow the model's
    model_options(VAEModelConfig),
    RegistryOptions,
    DeviceOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    DataOptions,
    Validated,
):
    prior_components: int = help_field(
        "Gaussian-mixture components fitted to the training latent means and served as sampler=fitted (0: none)",
        default=10,
    )

    def _check(self) -> None:
        if self.prior_components:  # 0: no fitted prior
            check_components(self.prior_components, name="prior_components")
        check_elbo_training(self)


def check_elbo_training(cfg) -> None:
    """The rules of a VAE entry point's training and test params (this one's, the VampPrior
    VAE's): training, binarization, the KL weight and its warm-up, the IW-NLL."""
    validate_training(cfg)
    if cfg.binarize and cfg.likelihood != "bernoulli":
        raise ConfigError("binarize=true needs likelihood=bernoulli")
    if not cfg.beta > 0:
        raise ConfigError(f"beta must be > 0, got {cfg.beta}")
    if not cfg.kl_warmup_epochs >= 0:
        raise ConfigError(f"kl_warmup_epochs must be >= 0, got {cfg.kl_warmup_epochs}")
    validate_iw(cfg)


def check_components(components: int, points: int | None = None, name: str = "components") -> None:
    """The fitted mixture's one size rule, for the configs (`points` unknown yet), before training
    (`points`: the training images) and at the fit alike: at least one component, and no
    more than the latent vectors (one per training image) it is fitted to."""
    if not components >= 1:
        raise ConfigError(f"{name} must be >= 1, got {components}")
    if points is not None and components > points:
        raise ConfigError(
            f"{name} ({components}) must not exceed the training images ({points}): "
            "the mixture is fitted to one latent mean per image"
        )


@dataclass
class VAEEvaluation:
    """`evaluate`'s options for a VAE."""

    iw_samples: int = help_field("VAE: importance samples k for test_iw_nll", default=100)
    iw_images: int = help_field("VAE: first N test images for test_iw_nll (0: all)", default=1000)
    samples: int = help_field("VAE: samples per sampler for FID and class entropy", default=10000)
    components: int = help_field("VAE: Gaussian-mixture components of the fitted prior", default=10)
    classifier_name: str = help_field(
        "registered classifier for FID (empty: latent-<dataset>-classifier); trained and registered on first use",
        default="",
    )
    classifier_epochs: int = help_field("epochs when the classifier has to be trained", default=3)
    ood_images: int = help_field(
        "VAE on mnist or fashion-mnist: first N test images of each for the out-of-distribution AUROC, "
        "the other dataset's as outliers, scored with iw_samples (0: all)",
        default=1000,
    )

    def check(self) -> None:
        positive("classifier_epochs", self.classifier_epochs)
        if self.ood_images < 0:
            raise ConfigError(f"ood_images must be >= 0 (0: all), got {self.ood_images}")
        check_components(self.components)
        if self.samples < 64:
            raise ConfigError(f"samples must be >= 64 (FID needs many; the figure shows 64), got {self.samples}")
        validate_iw(self)
