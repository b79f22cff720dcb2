"""Colour photos through a grey noise-map denoiser, and the noise level of a photo. Pure PyTorch
(and a wavelet noise estimator, PyWavelets').

A colour photo goes through the grey model as CBM3D filters colour: on an orthonormal
luma-chrominance transform (the rows of `OPPONENT`), noise N(0, σ²) in R, G and B stays
N(0, σ²), independent, on each axis. The luma is given as mean(R, G, B), an image in [0, 1]
whose noise is σ/√3; the two chroma axes, shifted by 0.5 into the images' range, keep σ. The
three go through the same model, each told its own level (the noise-level map), and the
transform is inverted. On the photo benchmark this scheme beat denoising R, G and B apart by
0.7 to 1.9 dB per colour photo (docs/results.md): chroma is smooth, so it comes out far
cleaner, without the colour blotches of per-channel denoising.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Rows: luma, then two chroma axes; orthonormal.
OPPONENT = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]]) / torch.tensor(
    [[math.sqrt(3)], [math.sqrt(2)], [math.sqrt(6)]]
)
# What the luma image mean(R, G, B) is of the luma axis, and of σ.
LUMA_SCALE = 1 / math.sqrt(3)


def to_luma_chroma(rgb: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB and each image's σ -> (3N, 1, H, W) grey images (luma, chroma, chroma
    of image 0, then of image 1, ...) and the 3N levels the model is told."""
    axes = torch.einsum("kc,nchw->nkhw", OPPONENT.to(rgb), rgb)
    grey = torch.stack([axes[:, 0] * LUMA_SCALE, axes[:, 1] + 0.5, axes[:, 2] + 0.5], dim=1)
    levels = torch.stack([sigma * LUMA_SCALE, sigma, sigma], dim=1)
    return grey.reshape(-1, 1, *rgb.shape[2:]), levels.reshape(-1)


def from_luma_chroma(grey: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_luma_chroma` on the denoised (3N, 1, H, W) -> (N, 3, H, W) in [0, 1]."""
    g = grey.reshape(-1, 3, *grey.shape[2:])
    axes = torch.stack([g[:, 0] / LUMA_SCALE, g[:, 1] - 0.5, g[:, 2] - 0.5], dim=1)
    return torch.einsum("kc,nkhw->nchw", OPPONENT.to(grey), axes).clamp_(0, 1)


def estimate_sigma(image: torch.Tensor) -> float:
    """The Gaussian noise level of one (C, H, W) image in [0, 1], averaged over the channels:
    Donoho's estimate (the median absolute finest diagonal wavelet detail / 0.6745, as
    scikit-image's `estimate_sigma`), over the coefficients whose support holds no pixel at 0
    or 1. A clipped pixel has lost its noise: with them the estimate of σ = 50/255 on the
    validation photos was 42.8 on average, without them 46.5; docs/serving.md has the error."""
    pixels = image.detach().cpu().numpy().astype(np.float64)
    return float(np.mean([_unclipped_sigma(channel) for channel in pixels]))


def _unclipped_sigma(channel: np.ndarray) -> float:
    import pywt
    from scipy import ndimage

    detail = pywt.dwt2(channel, "db2")[1][2]  # coefficient k covers pixels 2k-2 .. 2k+1 (4 taps)
    near_clipped = ndimage.maximum_filter((channel <= 0) | (channel >= 1), size=5)
    rows, cols = (np.clip(2 * np.arange(n) - 1, 0, size - 1) for n, size in zip(detail.shape, channel.shape))
    kept = detail[~near_clipped[np.ix_(rows, cols)]]
    kept = kept[kept != 0]
    if kept.size < max(64, detail.size // 20):  # mostly clipped: every coefficient, as scikit-image
        kept = detail[detail != 0]
    return float(np.median(np.abs(kept))) / MAD_TO_SIGMA if kept.size else 0.0


MAD_TO_SIGMA = 0.6744897501960817  # the median of |N(0, 1)|
