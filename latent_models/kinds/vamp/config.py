"""The VampPrior VAE's config (its sizes, prior and likelihood, declared once) and the `vamp`
entry point's, which inherits them as options. Free of torch, so the CLI's options and
validation load without it."""

from __future__ import annotations

from dataclasses import dataclass

from latent_models.errors import ConfigError
from latent_models.kinds.vae.config import LIKELIHOODS, Likelihood, VAEEvaluation, check_elbo_training
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
)


@dataclass(frozen=True)
class VampModelConfig(ModelConfig):
    kind = "vamp"
    max_side = 128  # dense layers of 2 * width * (side / 4)^2 x 512 weights: 67M at 128
    latent_dim: int = hyper_parameter(32, "latent dimensions")
    width: int = hyper_parameter(32, "channels in the first layer (twice that at a quarter of the side)")
    pseudo_inputs: int = hyper_parameter(
        200, "K, the learned pseudo-inputs whose posteriors, mixed equally, are the prior (VampPrior; 0: N(0, I))"
    )
    likelihood: Likelihood = hyper_parameter(
        "bernoulli", "bernoulli: intensities as pixel probabilities; gaussian: one learned scale"
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("latent_dim", "width"):
            positive(name, getattr(self, name))
        if self.pseudo_inputs < 0:
            raise ConfigError(f"pseudo_inputs must be >= 0 (0: the prior N(0, I)), got {self.pseudo_inputs}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; expected one of {LIKELIHOODS}")


@dataclass
@defaults(
    epochs=14,  # about 45 minutes of training on 2 loaded CPU cores, plus 15 for the IW-NLL (docs/vamp.md)
    lr=5e-3,
    adam_beta2=0.95,
    experiment_name="latent-models-vamp",
    registered_model_name="latent-vamp",
)
class VampConfig(
    model_options(VampModelConfig),
    RegistryOptions,
    DeviceOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    DataOptions,
    Validated,
):
    beta: float = help_field("weight of the KL term after warm-up", default=1.0)
    kl_warmup_epochs: float = help_field("epochs over which the KL weight rises linearly from 0", default=1.0)
    binarize: bool = help_field(
        "dynamically binarize the training images (pixels ~ Bernoulli(intensity)), and binarize the "
        "validation and test images once, with fixed seeds",
        default=True,
    )
    iw_samples: int = help_field("importance samples k for test_iw_nll", default=1000)
    iw_images: int = help_field("first N test images for test_iw_nll (0: all)", default=2000)

    def _check(self) -> None:
        check_elbo_training(self)


# `evaluate`'s options are the VAE's (the same measures; `components` is the VAE's alone).
VampEvaluation = VAEEvaluation
