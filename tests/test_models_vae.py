import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from latent_models.kinds.vae.config import VAEModelConfig
from latent_models.kinds.vae.model import ConvVAE, gaussian_kl


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(6, 5), torch.randn(6, 5)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_and_ranges(likelihood):
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8, likelihood=likelihood))
    x = torch.rand(3, 1, 28, 28)
    ll, kl, mu, logvar = model(x)
    assert ll.shape == kl.shape == (3,) and mu.shape == logvar.shape == (3, 4)
    assert (kl >= 0).all()
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, model.sample(5, generator=torch.Generator().manual_seed(0)))


def test_bernoulli_log_likelihood_in_nats():
    model = ConvVAE(VAEModelConfig(latent_dim=2, width=8))
    logits = torch.zeros(1, 1, 28, 28)  # p = 0.5 everywhere
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5))
    assert model.log_likelihood(logits, x).item() == pytest.approx(-784 * math.log(2), rel=1e-5)


def test_gaussian_log_likelihood_matches_normal():
    model = ConvVAE(VAEModelConfig(latent_dim=2, width=8, likelihood="gaussian"))
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    ref = Normal(torch.sigmoid(logits), model.log_scale.exp()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_likelihood(logits, x), ref, atol=1e-3)


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="unknown likelihood"):
        ConvVAE(VAEModelConfig(likelihood="poisson"))


def test_a_few_steps_reduce_the_negative_elbo(fixture_data):
    from latent_models.data import load_splits

    torch.manual_seed(0)
    x = load_splits("mnist", str(fixture_data), val_size=100, download=False).train.images[:64]
    model = ConvVAE(VAEModelConfig(latent_dim=8, width=8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        ll, kl, _, _ = model(x, generator=g)
        loss = (kl - ll).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
