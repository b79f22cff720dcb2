"""A VAE with a VampPrior (Tomczak & Welling 2018) and residual convolutional networks, for
images in [0, 1] of the shape in its config (MNIST: 1x28x28).

The prior is learned: p(z) = (1/K) sum_k q(z | u_k), the encoder's own posteriors at K learned
pseudo-inputs u_k (`pseudo_inputs` = 0: N(0, I), the ablation). Training pulls the prior
towards the aggregate posterior, so z drawn from it decode to images like the data's (no
mixture fitted afterwards), and the KL it costs is lower than a standard normal's. The pseudo-
inputs pass through the encoder with each batch: K more encoder passes per step, no more
decoder passes.

The same interface as the VAE's `ConvVAE` (encode, decode_logits, decode, log_likelihood,
forward, sample, latent_dim, likelihood), plus `log_prior`, so the VAE's scores (the -ELBO, the
importance-weighted NLL) measure it the same way. With a learned prior the KL has no closed
form: `forward` returns its one-sample estimate log q(z|x) - log p(z) at the z it decodes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import Permute

from latent_models.kinds.vae.model import ConvVAE
from latent_models.kinds.vamp.config import VampModelConfig

HIDDEN = 512  # the dense layer between the quarter-side maps and the code


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))): two 3x3 convolutions that keep the shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


class VampVAE(nn.Module):
    def __init__(self, config: VampModelConfig):
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim = config.latent_dim
        self.likelihood = config.likelihood
        w, (c, h, wd) = config.width, config.image_shape
        h4, w4 = h // 4, wd // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w, 4, stride=2, padding=1),  # 14x14 (MNIST)
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # 7x7
            ResidualBlock(2 * w),
            nn.SiLU(),
            Permute([0, 2, 3, 1]),
            nn.Flatten(),
            nn.Linear(2 * w * h4 * w4, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, HIDDEN),
            nn.SiLU(),
            nn.Linear(HIDDEN, 2 * w * h4 * w4),
            nn.Unflatten(1, (h4, w4, 2 * w)),
            Permute([0, 3, 1, 2]),
            ResidualBlock(2 * w),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # 14x14
            ResidualBlock(w),
            nn.SiLU(),
            # 28x28 logits: a 3x3 conv to 4 sub-pixels per channel, then a pixel shuffle; 2 to 3 times
            # faster on this CPU than a transposed conv to one channel (1,000 codes: 29-39 ms against
            # 79-83), and the decoder's cost is the IW-NLL's (k decoder passes per image).
            nn.Conv2d(w, 4 * c, 3, padding=1),
            nn.PixelShuffle(2),
        )
        # The pseudo-inputs, as logits of images in (0, 1); drawn around a dim image, and moved
        # by training towards the images whose posteriors make a good prior.
        self.pseudo_logits = nn.Parameter(torch.randn(config.pseudo_inputs, c, h, wd) * 0.5 - 2.0)
        # Only used by the Gaussian likelihood; kept for both so state_dicts have one shape.
        self.log_scale = nn.Parameter(torch.tensor(math.log(0.1)))
        self._prior_cache: tuple | None = None

    # The VAE's own, read from the same attributes (encoder, decoder, likelihood, log_scale).
    encode = ConvVAE.encode
    decode_logits = ConvVAE.decode_logits
    decode = ConvVAE.decode
    reparameterize = staticmethod(ConvVAE.reparameterize)
    log_likelihood = ConvVAE.log_likelihood

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (K, latent_dim): the posteriors at the pseudo-inputs. Without
        gradients (validation, evaluation, serving) computed once per set of weights: the cache's
        key is the sum of each encoder parameter and of the pseudo-inputs, so any change of them
        (an optimizer step, a load) refreshes it. (Not the tensors' version counters: a fused
        AdamW step leaves those as they were.)"""
        if torch.is_grad_enabled():
            return self.encode(self.pseudo_inputs())
        with torch.no_grad():
            key = torch.stack([p.sum(dtype=torch.float64) for p in (self.pseudo_logits, *self.encoder.parameters())])
        cached = self._prior_cache
        if cached is None or cached[0].shape != key.shape or not torch.equal(cached[0], key):
            mu, logvar = self.encode(self.pseudo_inputs())
            self._prior_cache = cached = (key, mu.clone(), logvar.clone())
        return cached[1], cached[2]

    def log_prior(self, z: torch.Tensor, components: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """log p(z) under the VampPrior, over z's last dimension (any leading shape)."""
        if not self.config.pseudo_inputs:  # the ablation: N(0, I)
            return log_normal(z.float(), torch.zeros_like(z[..., :1]), torch.zeros_like(z[..., :1]))
        mu, logvar = components if components is not None else self.prior_components()
        # sum_d (z - mu)^2 / var expanded into matrix products, (N, L) x (L, K), with no (N, K, L)
        # tensor: 100 times faster; in float64, so the expanded terms do not cancel away its digits.
        mu, logvar, flat = mu.double(), logvar.double(), z.reshape(-1, z.shape[-1]).double()
        precision = torch.exp(-logvar)  # (K, L)
        squared = flat.pow(2) @ precision.T - 2 * flat @ (mu * precision).T + (mu.pow(2) * precision).sum(1)
        per_component = -0.5 * (squared + logvar.sum(1) + z.shape[-1] * math.log(2 * math.pi))  # (N, K)
        log_p = torch.logsumexp(per_component, dim=1) - math.log(mu.shape[0])
        return log_p.view(z.shape[:-1]).to(torch.promote_types(z.dtype, torch.float32))

    def forward(self, x: torch.Tensor, generator=None, eps: torch.Tensor | None = None):
        """Returns (reconstruction log-likelihood, KL estimate, mu, logvar), each per image; the
        KL is log q(z|x) - log p(z) at the one z decoded (its expectation is the KL).
        `eps`: the standard-normal draw of the reparameterization, if drawn by the caller."""
        mu, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.decode_logits(z)
        # log q(z|x) at z = mu + eps * sigma, exactly: -0.5 * (eps^2 + logvar + log 2 pi).
        log_q = -0.5 * (eps.float().pow(2) + logvar.float() + math.log(2 * math.pi)).sum(1)
        kl = log_q - self.log_prior(z)
        # In fp32 under autocast too (a no-op at fp32): the loss terms are sums over every pixel.
        return self.log_likelihood(logits.float(), x), kl, mu, logvar

    def sample_latents(self, n: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        """n draws of z from the prior, on the CPU: a pseudo-input uniformly, then its posterior
        (its standard deviation times `temperature`). Drawn from `generator` (a seeded CPU
        generator gives the same latents on any device)."""
        if not self.config.pseudo_inputs:  # the ablation: N(0, I)
            return temperature * torch.randn(n, self.latent_dim, generator=generator)
        mu, logvar = (t.float().cpu() for t in self.prior_components())
        which = torch.randint(mu.shape[0], (n,), generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        return mu[which] + temperature * eps * torch.exp(0.5 * logvar[which])

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        with torch.no_grad():
            z = self.sample_latents(n, temperature, generator)
        return self.decode(z.to(self.log_scale.device))


def build(config: VampModelConfig) -> VampVAE:
    return VampVAE(config)
