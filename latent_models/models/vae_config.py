"""The VAE's config: its sizes and likelihood (the model itself: `vae.py`).

Apart from the model and free of torch, so that the CLI's options and the `vae` config's
validation load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from latent_models.models.config import ModelConfig

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS = get_args(Likelihood)


@dataclass(frozen=True)
class VAEModelConfig(ModelConfig):
    kind = "vae"
    max_side = 256  # dense layers of 2 * width * (side / 4)^2 x 256 weights: 134M at 256
    latent_dim: int = 16
    width: int = 32  # channels of the first layer
    likelihood: Likelihood = "bernoulli"

    def __post_init__(self):
        super().__post_init__()
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; expected one of {LIKELIHOODS}")
