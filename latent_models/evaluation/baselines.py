"""Classical denoisers the learned one must beat, each with one setting tuned on validation.

A denoiser is only worth serving if it beats what needs no training: Gaussian blur,
a median filter, and non-local means (scikit-image's; a strong patch-based method).
Every baseline takes and returns (N, 1, 28, 28) tensors in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur as _torch_gaussian_blur

from latent_models.evaluation.metrics import psnr


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1
    return _torch_gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def median_filter(images: torch.Tensor, size: int) -> torch.Tensor:
    from scipy import ndimage

    filtered = ndimage.median_filter(images.numpy(), size=(1, 1, size, size), mode="reflect")
    return torch.from_numpy(filtered)


def non_local_means(images: torch.Tensor, h: float) -> torch.Tensor:
    """Patches of 3x3 compared within 11x11 windows; `h` sets how similar counts as same."""
    from skimage.restoration import denoise_nl_means

    out = np.empty_like(images.numpy())
    for i, image in enumerate(images.numpy()):
        out[i, 0] = denoise_nl_means(image[0], h=h, patch_size=3, patch_distance=5, fast_mode=True)
    return torch.from_numpy(out).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class Baseline:
    name: str
    setting: str  # what the tuned value means
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    grid: tuple[float, ...]


BASELINES = (
    Baseline("gaussian_blur", "sigma", gaussian_blur, (0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2)),
    Baseline("median", "size", lambda x, size: median_filter(x, int(size)), (3, 5)),
    Baseline("nl_means", "h", non_local_means, (0.04, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5)),
)


def tune(baseline: Baseline, clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """The grid value with the best mean PSNR on these (validation) images."""
    scores = [psnr(baseline.apply(noisy, value), clean).mean().item() for value in baseline.grid]
    return baseline.grid[int(np.argmax(scores))]
