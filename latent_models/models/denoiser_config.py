"""The denoiser's config: its architecture and sizes (the model itself: `denoiser.py`).

Apart from the model and free of torch, so that the CLI's options and the `ae` config's
validation (`AEConfig.model_config`) load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latent_models.errors import ConfigError
from latent_models.models.config import ModelConfig

Arch = Literal["unet", "conv"]


@dataclass(frozen=True)
class DenoiserConfig(ModelConfig):
    kind = "denoiser"
    max_side = 1024  # the conv arch's dense bottleneck grows with the area; the U-Net is fully convolutional
    arch: Arch = "unet"
    width: int = 16  # channels of the first layer
    latent_dim: int = 32  # bottleneck size (conv only)
    # unet only: the residual head (output = input + a learned correction, trained with MSE)
    # instead of the sigmoid head; see `denoiser.py`'s docstring.
    residual: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.residual and self.arch != "unet":
            raise ConfigError("residual=true needs arch=unet (a bottleneck autoencoder has no residual path)")
