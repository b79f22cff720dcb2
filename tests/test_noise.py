from typing import get_args

import pytest
import torch

from latent_models.errors import ConfigError
from latent_models.noise import _NOISE_FUNCTIONS, NOISE_MODELS, PROBABILITY_NOISE, Noise, add_noise, fixed_noise


@pytest.fixture
def images():
    return torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_every_model_stays_in_unit_range_and_changes_images(images, model):
    noisy = add_noise(images, model, 0.5, torch.Generator().manual_seed(1))
    assert noisy.shape == images.shape and noisy.dtype == images.dtype
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert not torch.equal(noisy, images)
    assert torch.equal(add_noise(images, model, 0.0, torch.Generator().manual_seed(1)), images)


def test_uniform_is_amplitude_times_centred_uniform():
    x = torch.full((1, 1, 200, 200), 0.5)
    noisy = add_noise(x, "uniform", 0.5, torch.Generator().manual_seed(0))
    delta = noisy - x
    assert delta.abs().max() <= 0.25 + 1e-6
    assert delta.std().item() == pytest.approx(0.5 / 12**0.5, rel=0.02)


def test_gaussian_sigma():
    x = torch.full((1, 1, 200, 200), 0.5)
    delta = add_noise(x, "gaussian", 0.1, torch.Generator().manual_seed(0)) - x
    assert delta.std().item() == pytest.approx(0.1, rel=0.02)


def test_salt_pepper_and_mask_fractions():
    x = torch.full((1, 1, 300, 300), 0.5)
    sp = add_noise(x, "salt_pepper", 0.2, torch.Generator().manual_seed(0))
    assert (sp != 0.5).float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert (sp == 0.0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    masked = add_noise(x, "mask", 0.3, torch.Generator().manual_seed(0))
    assert (masked == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_fixed_noise_depends_only_on_seed(images):
    a = fixed_noise(images, "gaussian", 0.3, seed=7)
    torch.rand(10)  # global RNG use must not matter
    assert torch.equal(a, fixed_noise(images, "gaussian", 0.3, seed=7))
    assert not torch.equal(a, fixed_noise(images, "gaussian", 0.3, seed=8))


def test_bad_noise_is_rejected(images):
    with pytest.raises(ConfigError, match="noise_level must be >= 0, got -0.1"):
        add_noise(images, "gaussian", -0.1)
    with pytest.raises(ConfigError, match="noise must be one of gaussian, uniform, salt_pepper, mask; got 'speckle'"):
        add_noise(images, "speckle", 0.1)
    with pytest.raises(ConfigError, match=r"noise_level for mask is a probability \(0..1\), got 1.5"):
        add_noise(images, "mask", 1.5)
    assert issubclass(ConfigError, ValueError)


def test_every_noise_model_has_a_corruption():
    assert set(_NOISE_FUNCTIONS) == set(NOISE_MODELS) == set(get_args(Noise))
    assert set(PROBABILITY_NOISE) <= set(NOISE_MODELS)
