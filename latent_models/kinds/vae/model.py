"""Convolutional VAE for images in [0, 1] of the shape in its config (MNIST: 1x28x28).

The decoder returns logits; the likelihood decides how they are read: `bernoulli` treats
pixel intensities as Bernoulli means (the usual MNIST choice, giving -ELBO in nats),
`gaussian` uses sigmoid(logits) as the mean with one learned log-scale for all pixels, so
the reconstruction term is a real log-density rather than a bare MSE.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import Permute

from latent_models.kinds.vae.config import VAEModelConfig


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent units."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class ConvVAE(nn.Module):
    def __init__(self, config: VAEModelConfig):
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim = config.latent_dim
        self.likelihood = config.likelihood
        w, (c, h, wd) = config.width, config.image_shape
        h4, w4 = h // 4, wd // 4
        hidden = 256  # dense layer between the 7x7 maps and the code (512: -0.3 nats, +25% time)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w, 4, stride=2, padding=1),  # 14x14 (MNIST)
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # 7x7
            nn.SiLU(),
            Permute([0, 2, 3, 1]),  # (h, w, c) order: a free view of a channels_last map
            nn.Flatten(),
            nn.Linear(2 * w * h4 * w4, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * w * h4 * w4),
            nn.SiLU(),
            nn.Unflatten(1, (h4, w4, 2 * w)),
            Permute([0, 3, 1, 2]),  # a channels_last map without a copy: the conv below runs 30% faster
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # 14x14
            nn.SiLU(),
            # One more 3x3 conv at 14x14: about 1.5 nats of -ELBO for a third more compute.
            nn.Conv2d(w, w, 3, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(w, c, 4, stride=2, padding=1),  # 28x28 logits
        )
        # Only used by the Gaussian likelihood; kept for both so state_dicts have one shape.
        self.log_scale = nn.Parameter(torch.tensor(math.log(0.1)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator=None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + eps * torch.exp(0.5 * logvar)

    def log_likelihood(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image, in nats."""
        if self.likelihood == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            scale = self.log_scale.exp()
            mean = torch.sigmoid(logits)
            ll = -0.5 * ((x - mean) / scale).pow(2) - self.log_scale - 0.5 * math.log(2 * math.pi)
        return ll.flatten(1).sum(dim=1)

    def forward(self, x: torch.Tensor, generator=None, eps: torch.Tensor | None = None):
        """Returns (reconstruction log-likelihood, KL, mu, logvar), each per image.
        `eps`: the standard-normal draw of the reparameterization, if drawn by the caller."""
        mu, logvar = self.encode(x)
        z = mu + eps * torch.exp(0.5 * logvar) if eps is not None else self.reparameterize(mu, logvar, generator)
        logits = self.decode_logits(z)
        # In fp32 under autocast too (a no-op at fp32): the loss terms are sums over every pixel.
        return self.log_likelihood(logits.float(), x), gaussian_kl(mu.float(), logvar.float()), mu, logvar

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        device = self.log_scale.device
        # Drawn where the generator lives (a seeded CPU generator gives the same images on any device).
        z = (
            torch.randn(
                n, self.latent_dim, generator=generator, device=generator.device if generator is not None else device
            )
            * temperature
        )
        return self.decode(z.to(device))


def build(config: VAEModelConfig) -> ConvVAE:
    return ConvVAE(config)
