"""Denoising autoencoders for images in [0, 1] of the shape in their config (MNIST: 1x28x28).

`conv` has a real bottleneck (a `latent_dim` vector) so its latent space can be studied;
`unet` keeps skip connections and is the stronger denoiser. Each has one of two output heads,
with the loss that fits it (`reconstruction_loss`):

- sigmoid (the default): the output is a valid image by construction. It trains with binary
  cross-entropy on the logits, which keeps gradients alive where MSE through a saturated
  sigmoid stalls (on MNIST the network collapses to an all-black output within a few dozen
  steps).
- residual (`unet` only, DnCNN's residual learning): the output is the input plus a learned
  correction, clamped to [0, 1]; it trains with MSE on the unclamped sum, PSNR's own loss. It
  starts as the identity, so at low noise it only has to learn the noise. On photographs it
  is the better head (benchmarks/photos.py).

No normalisation or activation comes before the output.

A U-Net with `sigma_max` > 0 is one model for Gaussian noise of every σ in [0, sigma_max]:
σ is an input, given as one more input channel that holds σ at every pixel (FFDNet's
noise-level map, Zhang et al. 2018), and training draws a σ per image. Told σ, it can be
asked for the level a user knows or estimates, and the luma and chroma of a colour photo,
whose noise levels differ, go through the same grey model (`kinds/denoiser/colour.py`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from latent_models.kinds.denoiser.config import DenoiserConfig


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.SiLU(),
    )


class ConvAutoencoder(nn.Module):
    """Encoder -> `latent_dim` vector -> decoder; no skip connections around the bottleneck."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim = config.latent_dim
        w, (c, h, wd) = config.width, config.image_shape
        h4, w4 = h // 4, wd // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w, 3, stride=2, padding=1),  # 14x14 (MNIST)
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 7x7
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * w * h4 * w4, latent_dim),
        )
        self.decoder_input = nn.Linear(latent_dim, 2 * w * h4 * w4)
        self.decoder = nn.Sequential(
            nn.SiLU(),
            nn.Unflatten(1, (2 * w, h4, w4)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # 14x14
            nn.SiLU(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1),  # 28x28
            nn.SiLU(),
            nn.Conv2d(w, c, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.decoder_input(z)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_input(self.encode(x)))

    raw_output = logits  # the sigmoid head's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class UNetDenoiser(nn.Module):
    """Two-level U-Net (28 -> 14 -> 7 on MNIST) with skip connections."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        w, c = config.width, config.channels
        self.enc1 = _conv_block(c + config.noise_map, w)
        self.enc2 = _conv_block(w, 2 * w)
        self.mid = _conv_block(2 * w, 2 * w)
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv_block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _conv_block(2 * w, w)
        self.out = nn.Conv2d(w, c, 1)
        self.pool = nn.MaxPool2d(2)
        if config.residual:  # the correction starts at zero: the untrained network returns its input
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def raw_output(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """The output before its head makes it an image: logits (sigmoid head), or the input
        plus the correction, unclamped (residual head). `sigma`: the noise level, one for all
        images or one per image (a model with a noise-level map needs it; others take none)."""
        e1 = self.enc1(with_noise_map(x, sigma) if self.config.noise_map else _no_level(x, sigma))
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return x + self.out(d1) if self.config.residual else self.out(d1)

    def deepest_path(self) -> list[nn.Module]:
        """The layers with a kernel on the longest path from input to output (down both
        poolings, through the middle, up both stages): they set the receptive field; the skip
        connections bypass some of them, so they see less."""
        blocks = (
            self.enc1,
            self.pool,
            self.enc2,
            self.pool,
            self.mid,
            self.up2,
            self.dec2,
            self.up1,
            self.dec1,
            self.out,
        )
        layers = []
        for block in blocks:
            layers.extend(block if isinstance(block, nn.Sequential) else [block])
        return [layer for layer in layers if hasattr(layer, "kernel_size")]

    def logits(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        if self.config.residual:
            raise ValueError("a residual U-Net has no logits: its raw output is the input plus a correction")
        return self.raw_output(x, sigma)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        raw = self.raw_output(x, sigma)
        return raw.clamp(0, 1) if self.config.residual else torch.sigmoid(raw)


def with_noise_map(x: torch.Tensor, sigma) -> torch.Tensor:
    """(N, C, H, W) images and their noise level (a number, or one per image) -> (N, C + 1, H, W):
    the level as a constant last channel."""
    if sigma is None:
        raise ValueError("this denoiser takes the noise level as an input (sigma_max > 0): pass sigma")
    level = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    return torch.cat([x, level.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


def _no_level(x: torch.Tensor, sigma) -> torch.Tensor:
    if sigma is not None:
        raise ValueError("this denoiser was trained at one noise level (sigma_max = 0): it takes no sigma")
    return x


class AtLevel(nn.Module):
    """A noise-map denoiser told one noise level: called with images alone, as a one-level
    denoiser is, so every score, figure and baseline comparison takes either."""

    def __init__(self, model: nn.Module, sigma: float):
        super().__init__()
        self.model, self.sigma, self.config = model, sigma, model.config

    def raw_output(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.raw_output(x, self.sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.sigma)


def at_level(model: nn.Module, sigma: float) -> nn.Module:
    """`model` told the noise level `sigma` when it takes one; else `model` itself."""
    return AtLevel(model, sigma) if getattr(getattr(model, "config", None), "noise_map", False) else model


def _pair(value) -> int:
    """One side of a square kernel, stride or dilation (torch stores them as an int or a pair)."""
    return value[0] if isinstance(value, tuple) else value


def receptive_field(model: UNetDenoiser) -> tuple[int, int]:
    """(the side of the input window one output pixel depends on, the network's total stride),
    read from the kernel sizes, strides and dilations of the layers on its deepest path.

    Each convolution or pooling widens the field by (kernel - 1) x dilation input steps at its
    depth, and multiplies the step by its stride; a transposed convolution with stride s
    reads ceil(kernel / s) inputs per output and divides the step by s. The default U-Net:
    44 pixels, stride 4."""
    field, step, stride = 1, 1.0, 1
    for layer in model.deepest_path():
        kernel, layer_stride = _pair(layer.kernel_size), _pair(layer.stride)
        if isinstance(layer, nn.ConvTranspose2d):
            field += (math.ceil(kernel / layer_stride) - 1) * step
            step /= layer_stride
        else:
            field += (kernel - 1) * _pair(getattr(layer, "dilation", 1)) * step
            step *= layer_stride
            stride *= layer_stride
    return int(math.ceil(field)), stride


def reconstruction_loss(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, reduction: str = "mean"):
    """The loss that fits the model's head (see the module's docstring), in fp32 under autocast
    (a noise-map model: told its level, `at_level`)."""
    raw = model.raw_output(noisy).float()
    if model.config.residual:
        return F.mse_loss(raw, clean, reduction=reduction)
    return F.binary_cross_entropy_with_logits(raw, clean, reduction=reduction)


def build(config: DenoiserConfig) -> nn.Module:
    if config.arch == "conv":
        return ConvAutoencoder(config)
    if config.arch == "unet":
        return UNetDenoiser(config)
    raise ValueError(f"unknown arch {config.arch!r}; expected 'conv' or 'unet'")
