"""Corruption models for the denoising task. Every function returns a new tensor in [0, 1].

Training draws fresh noise each batch from a seeded generator; validation and test use
`fixed_noise`, which depends only on the seed, so metrics compare across runs.
"""

from __future__ import annotations

import torch

NOISE_MODELS = ("gaussian", "uniform", "salt_pepper", "mask")


def add_gaussian_noise(x: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * noise).clamp_(0.0, 1.0)


def add_uniform_noise(x: torch.Tensor, amplitude: float, generator=None) -> torch.Tensor:
    """amplitude * (U(0,1) - 0.5): the seed study's model; amplitude 0.5 is the headline."""
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


_NOISE_FUNCTIONS = {
    "gaussian": add_gaussian_noise,
    "uniform": add_uniform_noise,
    "salt_pepper": add_salt_pepper_noise,
    "mask": add_mask_noise,
}


def check_noise(model: str, level: float) -> None:
    if model not in _NOISE_FUNCTIONS:
        raise ValueError(f"unknown noise model {model!r}; expected one of {list(NOISE_MODELS)}")
    if not level >= 0:
        raise ValueError(f"noise level must be >= 0, got {level}")
    if model in ("salt_pepper", "mask") and level > 1:
        raise ValueError(f"{model} level is a probability and must be <= 1, got {level}")


def add_noise(x: torch.Tensor, model: str, level: float, generator=None) -> torch.Tensor:
    check_noise(model, level)
    return _NOISE_FUNCTIONS[model](x, level, generator)


def fixed_noise(x: torch.Tensor, model: str, level: float, seed: int) -> torch.Tensor:
    """Noise that depends only on (x, model, level, seed): for comparable val/test metrics."""
    return add_noise(x, model, level, torch.Generator(device=x.device).manual_seed(seed))
