"""The VampPrior VAE's config (its prior; its sizes and likelihood are the VAE's, at its own
defaults) and the `vamp` entry point's, which inherits them as options, with the VAE's training
and test params (at its own defaults). Free of torch, so the CLI's options and validation load
without it."""

from __future__ import annotations

from dataclasses import dataclass

from latent_models.errors import ConfigError
from latent_models.kinds.vae.config import ELBOTrainingOptions, VAEEvaluation, VAEFamilyConfig, check_elbo_training
from latent_models.models.config import hyper_parameter
from latent_models.options import (
    DataOptions,
    DeviceOptions,
    RegistryOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    Validated,
    defaults,
    model_options,
)


@dataclass(frozen=True)
@defaults(latent_dim=32)
class VampModelConfig(VAEFamilyConfig):
    kind = "vamp"
    max_side = 128  # dense layers of 2 * width * (side / 4)^2 x 512 weights: 67M at 128
    pseudo_inputs: int = hyper_parameter(
        200, "K, the learned pseudo-inputs whose posteriors, mixed equally, are the prior (VampPrior; 0: N(0, I))"
    )

    def __post_init__(self):
        super().__post_init__()
        if self.pseudo_inputs < 0:
            raise ConfigError(f"pseudo_inputs must be >= 0 (0: the prior N(0, I)), got {self.pseudo_inputs}")


@dataclass
@defaults(
    epochs=14,  # about 45 minutes of training on 2 loaded CPU cores, plus 15 for the IW-NLL (docs/vamp.md)
    lr=5e-3,
    adam_beta2=0.95,
    experiment_name="latent-models-vamp",
    registered_model_name="latent-vamp",
    binarize=True,  # the binarized-MNIST benchmark's, with its measure (k=1000 on 2000 test images)
    iw_samples=1000,
    iw_images=2000,
)
class VampConfig(
    ELBOTrainingOptions,  # first: a base's fields follow those of the bases after it, so these follow the model's
    model_options(VampModelConfig),
    RegistryOptions,
    DeviceOptions,
    RunOptions,
    TrackingOptions,
    TrainOptions,
    DataOptions,
    Validated,
):
    def _check(self) -> None:
        check_elbo_training(self)


# `evaluate`'s options are the VAE's (the same measures; `components` is the VAE's alone).
VampEvaluation = VAEEvaluation
