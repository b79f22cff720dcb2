"""The VAE's scores on a whole split: -ELBO and its terms, active units, the importance-weighted
NLL, the "doing nothing" floor, and the mixture fitted to the training latents."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

from latent_models.data import binarized
from latent_models.device import module_device
from latent_models.evaluation.metrics import active_units, bits_per_dim, log_normal
from latent_models.evaluation.scores import EVAL_BATCH, TEST_SEED, VAL_SEED, batched
from latent_models.kinds.vae.prior import GaussianMixturePrior, check_components, fit_gaussian_mixture


@torch.inference_mode()
def mean_image_nll(train: torch.Tensor, images: torch.Tensor, likelihood: str) -> float:
    """-log p(x) in nats per image under a model that ignores the image: independent pixels
    around the training mean, Bernoulli, or Gaussian with one scale for all pixels (the VAE's
    own likelihoods). A VAE whose -ELBO does not beat it has learned nothing."""
    return mean_image_nll_per_image(train, images, likelihood).mean().item()


@torch.inference_mode()
def mean_image_nll_per_image(train: torch.Tensor, images: torch.Tensor, likelihood: str) -> torch.Tensor:
    """`mean_image_nll`'s -log p(x) per image: also the background model of the likelihood-ratio
    out-of-distribution score, in the same units as the VAE's own (same likelihood, same data)."""
    mean = train.mean(0)
    if likelihood == "bernoulli":
        p = mean.clamp(1e-6, 1 - 1e-6).expand_as(images)
        return F.binary_cross_entropy(p, images, reduction="none").flatten(1).sum(1)
    scale = (train - mean).pow(2).mean().sqrt().clamp_min(1e-6)
    nll = 0.5 * ((images - mean) / scale).pow(2) + scale.log() + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(1)


@torch.inference_mode()
def evaluate_vae(model: nn.Module, images: torch.Tensor, seed: int) -> dict[str, float]:
    """Single-sample -ELBO (nats/image) with beta = 1, its two terms, active units, and the
    -ELBO in bits per dimension (`metrics.bits_per_dim`)."""
    gen = torch.Generator().manual_seed(seed)
    device = module_device(model)
    recon, kl, mus = [], [], []
    for i in range(0, images.shape[0], EVAL_BATCH):
        x = images[i : i + EVAL_BATCH]
        eps = torch.randn((x.shape[0], model.latent_dim), generator=gen, dtype=x.dtype)  # on the CPU, any device
        ll, k, mu, _ = model(x.to(device), eps=eps.to(device))
        recon.append(-ll.cpu())
        kl.append(k.cpu())
        mus.append(mu.cpu())
    recon_t, kl_t = torch.cat(recon), torch.cat(kl)
    neg_elbo = (recon_t + kl_t).mean().item()
    return {
        "neg_elbo": neg_elbo,
        "recon": recon_t.mean().item(),
        "kl": kl_t.mean().item(),
        "active_units": float(active_units(torch.cat(mus))),
        "neg_elbo_bits_per_dim": bits_per_dim(neg_elbo, images.shape[1:], model.likelihood),
    }


# Images x k per pass of the IW estimate: at 1,000 the activations stay cache-sized, 25% faster
# here than 10,000, and memory stays bounded whatever the number of images.
IW_CHUNK = 1_000


@torch.inference_mode()
def importance_weighted_nll(
    model: nn.Module, images: torch.Tensor, k: int, seed: int, chunk: int = IW_CHUNK
) -> tuple[float, float]:
    """-log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2016).

    Returns (mean, standard error over images) in nats: `iw_nll_per_image` averaged.
    """
    nll = iw_nll_per_image(model, images, k, torch.Generator().manual_seed(seed), chunk)
    return nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0


@torch.inference_mode()
def iw_nll_per_image(
    model: nn.Module, images: torch.Tensor, k: int, generator: torch.Generator, chunk: int = IW_CHUNK
) -> torch.Tensor:
    """The importance-weighted estimate of -log p(x) in nats, one per image, on the CPU:
    -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x), p(z) the model's `log_prior` if it has
    one (the VampPrior VAE's), else N(0, I). The training metric, `evaluate`'s
    out-of-distribution score and the served `score` mode are this one function, so the same
    seed gives the same numbers in all three.

    `chunk` bounds images * k per pass (at least one image per pass, so k images when k is
    larger). The draws are made on the CPU from `generator`, pass by pass: the result depends
    on the seed, k and chunk, not on the device.
    """
    device = module_device(model)
    log_prior = getattr(model, "log_prior", None)  # a learned prior's log p(z); none: N(0, I)
    per_image = []
    per_pass = max(1, chunk // k)
    for i in range(0, images.shape[0], per_pass):
        x = images[i : i + per_pass].to(device)
        mu, logvar = model.encode(x)
        n, d = mu.shape
        eps = torch.randn((k, n, d), generator=generator).to(device)
        z = mu + eps * torch.exp(0.5 * logvar)  # (k, n, d)
        logits = model.decode_logits(z.reshape(k * n, d))
        log_px_z = model.log_likelihood(logits, x.repeat(k, 1, 1, 1)).view(k, n)
        log_pz = log_prior(z) if log_prior is not None else log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = log_normal(z, mu, logvar)
        log_w = log_px_z + log_pz - log_qz
        per_image.append(-(torch.logsumexp(log_w, dim=0) - math.log(k)).cpu())
    return torch.cat(per_image) if per_image else torch.empty(0)


@torch.inference_mode()
def latent_means(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return batched(lambda x: model.encode(x)[0], images, device=module_device(model))


def held_out_likelihood(model: nn.Module, test_x: torch.Tensor, iw_samples: int, iw_images: int) -> tuple[dict, float]:
    """The test -ELBO terms and the IW-NLL on the first `iw_images` (0: all), each also in
    bits per dimension, in training and in evaluate alike; also the seconds the IW-NLL took."""
    test = {f"test_{k}": v for k, v in evaluate_vae(model, test_x, TEST_SEED).items()}
    iw_x = test_x[:iw_images] if iw_images else test_x
    started = time.perf_counter()
    test["test_iw_nll"], test["test_iw_nll_stderr"] = importance_weighted_nll(model, iw_x, iw_samples, TEST_SEED)
    seconds = time.perf_counter() - started
    test["test_iw_nll_bits_per_dim"] = bits_per_dim(test["test_iw_nll"], test_x.shape[1:], model.likelihood)
    return test, seconds


def latent_prior(
    model: nn.Module, train_images: torch.Tensor, binarize: bool, components: int, seed: int
) -> GaussianMixturePrior:
    """The Gaussian mixture on the training-set latent means (of the binarized digits for a
    binarize=true model): the `fitted` sampler, in training and in evaluate alike."""
    check_components(components, len(train_images))
    train_x = binarized(train_images, VAL_SEED) if binarize else train_images
    return fit_gaussian_mixture(latent_means(model, train_x), components, seed)
