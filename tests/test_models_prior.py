import pytest
import torch

from latent_models.errors import ConfigError
from latent_models.kinds.vae.prior import GaussianMixturePrior, check_components, fit_gaussian_mixture


def _two_clusters(n=2000):
    g = torch.Generator().manual_seed(0)
    a = torch.randn((n, 2), generator=g) * 0.1 + torch.tensor([2.0, 0.0])
    b = torch.randn((n, 2), generator=g) * 0.3 + torch.tensor([-2.0, 1.0])
    return torch.cat([a, b])


def test_fit_recovers_the_clusters_and_samples_like_them():
    prior = fit_gaussian_mixture(_two_clusters(), components=2, seed=0)
    order = prior.means[:, 0].argsort(descending=True)
    assert torch.allclose(prior.means[order], torch.tensor([[2.0, 0.0], [-2.0, 1.0]]), atol=0.03)
    assert torch.allclose(prior.weights, torch.tensor([0.5, 0.5]), atol=0.02)
    samples = prior.sample(20000, generator=torch.Generator().manual_seed(1))
    right = samples[samples[:, 0] > 0]
    assert abs(len(right) / len(samples) - 0.5) < 0.02
    assert torch.allclose(right.std(0), torch.tensor([0.1, 0.1]), atol=0.01)


def test_temperature_scales_the_spread_and_seed_repeats():
    prior = fit_gaussian_mixture(_two_clusters(), components=2, seed=0)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    cold = prior.sample(5000, temperature=0.5, generator=g())
    assert torch.equal(prior.sample(5000, temperature=0.5, generator=g()), cold)
    hot = prior.sample(5000, temperature=1.0, generator=g())
    right = lambda s: s[s[:, 0] > 0]  # noqa: E731
    assert right(cold).std(0)[1].item() == pytest.approx(0.5 * right(hot).std(0)[1].item(), rel=0.1)


def test_state_dict_round_trip():
    prior = fit_gaussian_mixture(_two_clusters(), components=3, seed=0)
    again = GaussianMixturePrior.from_state_dict(prior.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(again.sample(10, generator=g()), prior.sample(10, generator=g()))
    assert again.components == 3 and again.latent_dim == 2


def test_more_components_than_points_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"components \(5\) must not exceed the training images \(3\)"):
        fit_gaussian_mixture(torch.randn(3, 2), components=5, seed=0)
    with pytest.raises(ConfigError, match="components must be >= 1, got 0"):
        fit_gaussian_mixture(torch.randn(3, 2), components=0, seed=0)


def test_the_training_pipeline_uses_the_same_rule():
    from latent_models.kinds.vae.config import VAEModelConfig
    from latent_models.kinds.vae.model import ConvVAE
    from latent_models.kinds.vae.scores import latent_prior

    model = ConvVAE(VAEModelConfig(latent_dim=2, width=4)).eval()
    with pytest.raises(ConfigError) as err:
        latent_prior(model, torch.rand(3, 1, 28, 28), False, 5, 0)
    with pytest.raises(ConfigError) as expected:
        check_components(5, 3)
    assert str(err.value) == str(expected.value)
