"""Image-quality and VAE metrics, computed per image and averaged by the caller."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import torch
from torch.nn import functional as F


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image."""
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, for images in [0, 1]: over all pixels and
    channels of each (C, H, W) image (grey or colour alike).

    Averaged per image (not from the mean MSE), as denoising papers report it.
    """
    return -10.0 * torch.log10(mse(x, y).clamp_min(eps))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(1, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1=0.01, K2=0.03, 'valid' borders), for (N, C, H, W) tensors: each channel on its own,
    then the mean over channels and positions (colour SSIM as scikit-image computes it)."""
    channels = x.shape[1]
    window = _gaussian_window().to(x.dtype).to(x.device).expand(channels, 1, -1, -1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(dim=1)


def bits_per_dim(nats_per_image: float, image_shape: tuple[int, ...], likelihood: str) -> float:
    """A VAE's -ELBO (or IW-NLL) in nats per image as bits per dimension, D = C*H*W.

    `gaussian`: a density on intensities in [0, 1]; for 8-bit images under uniform
    dequantization (x + u) / 256, -log2 P(x) <= (nll + D ln 256) / (D ln 2), the bits/dim
    of image models in the literature (CIFAR-10, ImageNet). `bernoulli`: nll / (D ln 2),
    the Bernoulli bound's figure per dimension: bits per binary pixel for binarized images,
    and for grey-level intensities (read as Bernoulli means) not a likelihood of 8-bit
    images, comparable only with other Bernoulli runs."""
    dims = math.prod(image_shape)
    if likelihood == "gaussian":
        return (nats_per_image + dims * math.log(256)) / (dims * math.log(2))
    if likelihood == "bernoulli":
        return nats_per_image / (dims * math.log(2))
    raise ValueError(f"unknown likelihood {likelihood!r}")


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent units whose posterior mean varies across data (Burda et al. 2016)."""
    return int((mu.var(dim=0) > threshold).sum())


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F): FID when the
    features come from a classifier of the domain. Lower is better; 0 for equal statistics."""
    from scipy import linalg

    a, b = features_a.double().numpy(), features_b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # singular is normal: ReLU features that never fire have zero variance
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: regularise, as the FID reference code does
        offset = np.eye(a.shape[1]) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def class_entropy(predicted: torch.Tensor, classes: int = 10) -> float:
    """Entropy (nats) of the histogram of predicted classes: log(10) = 2.303 when all ten
    digits are equally frequent, 0 when every sample is the same digit."""
    counts = torch.bincount(predicted, minlength=classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0: no -0.0


def auroc(inliers: np.ndarray | torch.Tensor, outliers: np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be higher for outliers: the chance that a
    random outlier scores above a random inlier, ties counting half (the Mann-Whitney U over the
    product of the counts). 1: perfect separation; 0.5: chance; below 0.5: the score ranks the
    wrong way round."""
    from scipy.stats import rankdata

    a, b = np.asarray(inliers, dtype=np.float64).ravel(), np.asarray(outliers, dtype=np.float64).ravel()
    if not len(a) or not len(b):
        raise ValueError("auroc needs at least one inlier and one outlier score")
    ranks = rankdata(np.concatenate([a, b]))  # average ranks for ties
    u = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))


def png_bits(images: torch.Tensor) -> np.ndarray:
    """Bits each (C, H, W) image in [0, 1] takes as an 8-bit PNG at the highest compression: a
    generic compressor's estimate of its complexity, L(x) of the input-complexity correction
    (Serra et al. 2020). PNG's fixed headers add the same bits to every image."""
    from PIL import Image

    pixels = (images.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    bits = np.empty(len(pixels), dtype=np.float64)
    for i, p in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p).save(buffer, format="PNG", compress_level=9)
        bits[i] = 8 * buffer.tell()
    return bits
