"""Corruption models for the denoising task. Every function returns a new tensor in [0, 1].

Training draws fresh noise each batch from a seeded generator; validation and test use
`fixed_noise`, which depends only on the seed, so metrics compare across runs.
"""

from __future__ import annotations

from typing import Callable

import torch

from latent_models.choices import NOISE_MODELS, Noise
from latent_models.errors import ConfigError

PROBABILITY_NOISE = ("salt_pepper", "mask")  # their level is a probability (0..1)


def add_gaussian_noise(x: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * noise).clamp_(0.0, 1.0)


def add_uniform_noise(x: torch.Tensor, amplitude: float, generator=None) -> torch.Tensor:
    """amplitude * (U(0,1) - 0.5): the default noise model; amplitude 0.5 is the default level."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + amplitude * (u - 0.5)).clamp_(0.0, 1.0)


def add_salt_pepper_noise(x: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    """Each pixel becomes 0 or 1 (equally likely) with probability p."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    out = x.clone()
    out[u < p / 2] = 0.0
    out[(u >= p / 2) & (u < p)] = 1.0
    return out


def add_mask_noise(x: torch.Tensor, fraction: float, generator=None) -> torch.Tensor:
    """Zero a random `fraction` of pixels."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x * (u >= fraction)


_NOISE_FUNCTIONS: dict[Noise, Callable] = {
    "gaussian": add_gaussian_noise,
    "uniform": add_uniform_noise,
    "salt_pepper": add_salt_pepper_noise,
    "mask": add_mask_noise,
}


def check_noise(model: str, level: float) -> None:
    """The noise params' one rule, for the `ae` config and every corruption alike."""
    if model not in NOISE_MODELS:
        raise ConfigError(f"noise must be one of {', '.join(NOISE_MODELS)}; got {model!r}")
    if not level >= 0:
        raise ConfigError(f"noise_level must be >= 0, got {level}")
    if model in PROBABILITY_NOISE and level > 1:
        raise ConfigError(f"noise_level for {model} is a probability (0..1), got {level}")


def add_noise(x: torch.Tensor, model: str, level: float, generator=None) -> torch.Tensor:
    check_noise(model, level)
    return _NOISE_FUNCTIONS[model](x, level, generator)


def fixed_noise(x: torch.Tensor, model: str, level: float, seed: int) -> torch.Tensor:
    """Noise that depends only on (x, model, level, seed): for comparable val/test metrics."""
    return add_noise(x, model, level, torch.Generator(device=x.device).manual_seed(seed))
