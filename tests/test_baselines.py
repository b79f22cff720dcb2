import pytest
import torch

from latent_models.data import load_splits
from latent_models.evaluation.baselines import BASELINES, gaussian_blur, median_filter, non_local_means, tune
from latent_models.evaluation.metrics import psnr
from latent_models.noise import fixed_noise
from tests.conftest import FIXTURE_DATA


@pytest.fixture(scope="module")
def digits():
    return load_splits("mnist", str(FIXTURE_DATA), 100, 0, False).test.images[:60]


def _gain(method, clean, noisy, value):
    return (psnr(method(noisy, value), clean) - psnr(noisy, clean)).mean().item()


def test_each_baseline_removes_the_noise_it_suits(digits):
    gaussian = fixed_noise(digits, "gaussian", 0.3, 0)
    salt = fixed_noise(digits, "salt_pepper", 0.1, 0)
    assert _gain(gaussian_blur, digits, gaussian, 0.8) > 1.5
    assert _gain(non_local_means, digits, gaussian, 0.25) > 1.5
    assert _gain(median_filter, digits, salt, 3) > 5.0
    for method, value in ((gaussian_blur, 1.0), (median_filter, 3), (non_local_means, 0.2)):
        out = method(gaussian, value)
        assert out.shape == digits.shape and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_tune_picks_the_best_grid_value(digits):
    noisy = fixed_noise(digits, "gaussian", 0.3, 0)
    for baseline in BASELINES:
        chosen = tune(baseline, digits, noisy)
        scores = {v: psnr(baseline.apply(noisy, v), digits).mean().item() for v in baseline.grid}
        assert scores[chosen] == max(scores.values())
    blur = BASELINES[0]
    # Light noise wants less blur than heavy noise.
    assert tune(blur, digits, fixed_noise(digits, "gaussian", 0.05, 0)) < tune(blur, digits, noisy)
