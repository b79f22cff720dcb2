"""Classical denoisers the learned one must beat, each with one setting tuned on validation.

A denoiser is only worth serving if it beats what needs no training: Gaussian blur,
a median filter, non-local means (scikit-image's; a strong patch-based method) and BM3D
(the `bm3d` package; the classical state of the art for Gaussian noise).
Every baseline takes and returns (N, C, H, W) tensors in [0, 1], C = 1 (grey) or 3 (RGB):
blur and median filter each channel on its own, non-local means compares patches across
the three channels jointly, BM3D on colour is CBM3D (`bm3d.bm3d_rgb`: grouping in the
luminance of an opponent colour space, filtering every channel).

`BASELINES`, what `evaluate` compares with by default, holds the fast ones only. BM3D
(`BM3D`, in `ALL_BASELINES`) is slow whatever the image size: measured on this project's
2-core CPU (`PYTHONPATH=. python` on a script timing `bm3d` over 20 fixture digits and 4
random images), 0.95 s per 28x28 grey image and 2.85 s per 32x32 RGB one (1.7-2.9 s for
128x128 grey); most of it a fixed cost of its library's hard-thresholding step, which also
cannot run in threads (it hangs). In the default list it would add about 9 hours to
`evaluate`'s defaults (17 noise levels x (16 x 6 tuning + 2,000 test images)) and about 20
minutes to the denoiser test of `tests/test_evaluate_model.py` (9 levels, 60 test images).
So it is opt-in: pass it (`baselines_named("all")`, or with "bm3d" among the names) to
`scores.compare_denoisers`; it tunes on at most `BM3D_TUNE_IMAGES` validation images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur as _torch_gaussian_blur

from latent_models.errors import ConfigError
from latent_models.evaluation.metrics import psnr
from latent_models.kinds.denoiser.config import BM3D_MISSING, baseline_names, bm3d_installed

# BM3D's smallest image: its library refuses sides under its 8-pixel block and crashes the
# process (a segmentation fault) on 8x8; 12 is the smallest side that ran in every case tried.
BM3D_MIN_SIDE = 12
BM3D_TUNE_IMAGES = 16


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1
    return _torch_gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def median_filter(images: torch.Tensor, size: int) -> torch.Tensor:
    """A size x size median in each channel of each image."""
    from scipy import ndimage

    filtered = ndimage.median_filter(images.numpy(), size=(1, 1, size, size), mode="reflect")
    return torch.from_numpy(filtered)


def non_local_means(images: torch.Tensor, h: float) -> torch.Tensor:
    """Patches of 3x3 compared within 11x11 windows; `h` sets how similar counts as same.
    Colour: one patch distance over the three channels (scikit-image's `channel_axis`)."""
    from skimage.restoration import denoise_nl_means

    array = images.numpy()
    out = np.empty_like(array)
    for i, image in enumerate(array):
        if image.shape[0] == 1:
            out[i, 0] = denoise_nl_means(image[0], h=h, patch_size=3, patch_distance=5, fast_mode=True)
        else:
            hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
            denoised = denoise_nl_means(hwc, h=h, patch_size=3, patch_distance=5, fast_mode=True, channel_axis=-1)
            out[i] = denoised.transpose(2, 0, 1)
    return torch.from_numpy(out).clamp_(0.0, 1.0)


def bm3d(images: torch.Tensor, sigma_psd: float) -> torch.Tensor:
    """BM3D (Dabov et al. 2007) with the noise standard deviation `sigma_psd` (intensities in
    [0, 1]); colour: CBM3D (`bm3d.bm3d_rgb`). One image at a time, in this thread."""
    import bm3d as _bm3d

    if min(images.shape[-2:]) < BM3D_MIN_SIDE:
        raise ValueError(
            f"BM3D needs images of at least {BM3D_MIN_SIDE}x{BM3D_MIN_SIDE}; got {images.shape[-2]}x{images.shape[-1]}"
        )
    array = images.numpy()
    out = np.empty_like(array)
    for i, image in enumerate(array):
        if image.shape[0] == 1:
            out[i, 0] = _bm3d.bm3d(image[0], sigma_psd)
        else:
            out[i] = _bm3d.bm3d_rgb(np.ascontiguousarray(image.transpose(1, 2, 0)), sigma_psd).transpose(2, 0, 1)
    return torch.from_numpy(out).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class Baseline:
    name: str
    setting: str  # what the tuned value means
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    grid: tuple[float, ...]
    tune_images: int = 0  # at most this many validation images tune it (0: all it is given)
    min_side: int = 1  # the smallest image height and width it takes

    def accepts(self, images: torch.Tensor) -> bool:
        return min(images.shape[-2:]) >= self.min_side


BASELINES = (
    Baseline("gaussian_blur", "sigma", gaussian_blur, (0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2)),
    Baseline("median", "size", lambda x, size: median_filter(x, int(size)), (3, 5)),
    Baseline("nl_means", "h", non_local_means, (0.04, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5)),
)
BM3D = Baseline("bm3d", "sigma_psd", bm3d, (0.05, 0.1, 0.15, 0.2, 0.3, 0.45), BM3D_TUNE_IMAGES, min_side=BM3D_MIN_SIDE)
ALL_BASELINES = (*BASELINES, BM3D)


def baselines_named(names: str) -> tuple[Baseline, ...]:
    """Comma-separated baseline names (or `all`, or `default`: BASELINES) -> the baselines;
    BM3D only where its package is installed (a ConfigError naming the extra otherwise)."""
    known = {b.name: b for b in ALL_BASELINES}
    chosen = tuple(known[n] for n in baseline_names(names))
    if BM3D in chosen and not bm3d_installed():
        raise ConfigError(f"baselines: {BM3D_MISSING}")
    return chosen


def tune(baseline: Baseline, clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """The grid value with the best mean PSNR on these (validation) images, or on the first
    `baseline.tune_images` of them."""
    if baseline.tune_images:
        clean, noisy = clean[: baseline.tune_images], noisy[: baseline.tune_images]
    scores = [psnr(baseline.apply(noisy, value), clean).mean().item() for value in baseline.grid]
    return baseline.grid[int(np.argmax(scores))]
