"""Denoising autoencoders for 1x28x28 images in [0, 1].

`conv` has a real bottleneck (a `latent_dim` vector) so its latent space can be studied;
`unet` keeps skip connections and is the stronger denoiser. Both end in a sigmoid so the
output is a valid image, with no normalisation or activation before it. `logits` exposes
the pre-sigmoid output: training on it with binary cross-entropy keeps gradients alive
where MSE through a saturated sigmoid stalls (the network collapses to an all-black
output within a few dozen steps).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.SiLU(),
    )


class ConvAutoencoder(nn.Module):
    """Encoder -> `latent_dim` vector -> decoder; no skip connections around the bottleneck."""

    def __init__(self, latent_dim: int = 32, width: int = 32):
        super().__init__()
        self.latent_dim = latent_dim
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, stride=2, padding=1),  # 14x14
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 7x7
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * w * 7 * 7, latent_dim),
        )
        self.decoder_input = nn.Linear(latent_dim, 2 * w * 7 * 7)
        self.decoder = nn.Sequential(
            nn.SiLU(),
            nn.Unflatten(1, (2 * w, 7, 7)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # 14x14
            nn.SiLU(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1),  # 28x28
            nn.SiLU(),
            nn.Conv2d(w, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.decoder_input(z)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_input(self.encode(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class UNetDenoiser(nn.Module):
    """Two-level U-Net (28 -> 14 -> 7) with skip connections."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.enc1 = _conv_block(1, w)
        self.enc2 = _conv_block(w, 2 * w)
        self.mid = _conv_block(2 * w, 2 * w)
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv_block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _conv_block(2 * w, w)
        self.out = nn.Conv2d(w, 1, 1)
        self.pool = nn.MaxPool2d(2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def build_denoiser(arch: str, latent_dim: int, width: int) -> nn.Module:
    if arch == "conv":
        return ConvAutoencoder(latent_dim=latent_dim, width=width)
    if arch == "unet":
        return UNetDenoiser(width=width)
    raise ValueError(f"unknown arch {arch!r}; expected 'conv' or 'unet'")
