"""Metrics of a trained model on a whole split, computed in batches under inference_mode.

Batches move to the model's device and results come back to the CPU, where the metrics and
figures are computed; seeded draws are made on the CPU and moved, so they match on any device."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

from latent_models.data import binarized
from latent_models.device import module_device
from latent_models.evaluation.metrics import active_units, bits_per_dim, log_normal, mse, psnr, ssim
from latent_models.models.prior import GaussianMixturePrior, check_components, fit_gaussian_mixture
from latent_models.noise import fixed_noise

EVAL_BATCH = 500
# Seeds of the fixed evaluation draws (validation and test noise or binarization, figures,
# samples): they depend only on these and the config, so runs and `evaluate` compare.
VAL_SEED, TEST_SEED, FIGURE_SEED, SAMPLE_SEED = 1_000_001, 2_000_002, 3_000_003, 4_000_004


def _device_of(fn) -> torch.device | None:
    """The device of a module, or of the module a bound method belongs to; else None."""
    owner = getattr(fn, "__self__", fn)
    return module_device(owner) if isinstance(owner, nn.Module) else None


@torch.inference_mode()
def batched(
    fn, *tensors: torch.Tensor, batch_size: int = EVAL_BATCH, device: torch.device | None = None
) -> torch.Tensor:
    """Apply fn to aligned slices of tensors and concatenate the results, on the CPU. The
    slices move to `device` (default: fn's module's device, if fn is a module or its method)."""
    device = device or _device_of(fn)
    n = tensors[0].shape[0]
    return torch.cat(
        [
            fn(*(t[i : i + batch_size].to(device) if device else t[i : i + batch_size] for t in tensors)).cpu()
            for i in range(0, n, batch_size)
        ]
    )


def image_quality(output: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": psnr(output, clean).mean().item(),
        "ssim": ssim(output, clean).mean().item(),
        "mse": mse(output, clean).mean().item(),
    }


@torch.inference_mode()
def evaluate_denoiser(model: nn.Module, clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    """PSNR/SSIM/MSE of the denoised images, and of the noisy input for reference."""
    denoised = batched(model, noisy)
    out = image_quality(denoised, clean)
    out.update({f"{k}_noisy": v for k, v in image_quality(noisy, clean).items()})
    return out


@torch.inference_mode()
def psnr_by_level(
    model: nn.Module, clean: torch.Tensor, noise: str, levels: list[float], seed: int
) -> dict[str, list[float]]:
    """Denoised and noisy PSNR across a sweep of noise levels (same model, same images)."""
    denoised, noisy_psnr = [], []
    for level in levels:
        noisy = fixed_noise(clean, noise, level, seed)
        denoised.append(psnr(batched(model, noisy), clean).mean().item())
        noisy_psnr.append(psnr(noisy, clean).mean().item())
    return {"level": list(levels), "denoised": denoised, "noisy": noisy_psnr}


@torch.inference_mode()
def iterate_denoiser(model: nn.Module, noisy: torch.Tensor, iterations: int) -> list[torch.Tensor]:
    """[noisy, f(noisy), f(f(noisy)), ...]: what repeated application does to an image."""
    steps = [noisy]
    for _ in range(iterations):
        steps.append(batched(model, steps[-1]))
    return steps


def default_levels(noise: str) -> list[float]:
    return {
        "gaussian": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "uniform": [0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
        "salt_pepper": [0.02, 0.05, 0.1, 0.2, 0.3, 0.4],
        "mask": [0.1, 0.2, 0.3, 0.5, 0.7, 0.8],
    }[noise]


@torch.inference_mode()
def mean_image_nll(train: torch.Tensor, images: torch.Tensor, likelihood: str) -> float:
    """-log p(x) in nats per image under a model that ignores the image: independent pixels
    around the training mean, Bernoulli, or Gaussian with one scale for all pixels (the VAE's
    own likelihoods). A VAE whose -ELBO does not beat it has learned nothing."""
    mean = train.mean(0)
    if likelihood == "bernoulli":
        p = mean.clamp(1e-6, 1 - 1e-6).expand_as(images)
        return F.binary_cross_entropy(p, images, reduction="none").flatten(1).sum(1).mean().item()
    scale = (train - mean).pow(2).mean().sqrt().clamp_min(1e-6)
    nll = 0.5 * ((images - mean) / scale).pow(2) + scale.log() + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(1).mean().item()


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


@torch.inference_mode()
def importance_weighted_nll(
    model: nn.Module, images: torch.Tensor, k: int, seed: int, chunk: int = 1_000
) -> tuple[float, float]:
    """-log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2016).

    Returns (mean, standard error over images) in nats. `chunk` bounds images*k per pass: at
    1,000 the activations stay cache-sized, 25% faster here than 10,000.
    """
    gen = torch.Generator().manual_seed(seed)
    device = module_device(model)
    per_image = []
    per_pass = max(1, chunk // k)
    for i in range(0, images.shape[0], per_pass):
        x = images[i : i + per_pass].to(device)
        mu, logvar = model.encode(x)
        n, d = mu.shape
        eps = torch.randn((k, n, d), generator=gen).to(device)
        z = mu + eps * torch.exp(0.5 * logvar)  # (k, n, d)
        logits = model.decode_logits(z.reshape(k * n, d))
        log_px_z = model.log_likelihood(logits, x.repeat(k, 1, 1, 1)).view(k, n)
        log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = log_normal(z, mu, logvar)
        log_w = log_px_z + log_pz - log_qz
        per_image.append(-(torch.logsumexp(log_w, dim=0) - math.log(k)).cpu())
    nll = torch.cat(per_image)
    return nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0


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


EVALUATION_LEVELS = {
    "gaussian": [0.1, 0.2, 0.3, 0.5],
    "uniform": [0.25, 0.5, 0.75, 1.0],
    "salt_pepper": [0.05, 0.1, 0.2, 0.3],
    "mask": [0.1, 0.25, 0.5, 0.7],
}


def compare_denoisers(
    model: nn.Module,
    val_clean: torch.Tensor,
    test_clean: torch.Tensor,
    levels: dict[str, list[float]],
    val_seed: int,
    test_seed: int,
    progress=lambda text: None,
    baselines=None,
) -> list[dict]:
    """One row per (noise, level, method): the model, the noisy input and each classical
    baseline (its setting tuned on the validation images at that noise and level).

    `baselines`: which (default `baselines.BASELINES`, the fast ones; BM3D is opt-in, see
    `latent_models.evaluation.baselines`); one that does not take images this small is left out."""
    from latent_models.evaluation.baselines import BASELINES, tune

    baselines = [b for b in (BASELINES if baselines is None else baselines) if b.accepts(test_clean)]
    rows = []
    for noise, noise_levels in levels.items():
        for level in noise_levels:
            progress(f"{noise} {level:g}")
            val_noisy = fixed_noise(val_clean, noise, level, val_seed)
            test_noisy = fixed_noise(test_clean, noise, level, test_seed)
            outputs = {"model": (batched(model, test_noisy), ""), "noisy_input": (test_noisy, "")}
            for baseline in baselines:
                value = tune(baseline, val_clean, val_noisy)
                outputs[baseline.name] = (baseline.apply(test_noisy, value), f"{baseline.setting}={value:g}")
            for method, (output, setting) in outputs.items():
                rows.append(
                    {
                        "noise": noise,
                        "level": level,
                        "method": method,
                        "setting": setting,
                        **image_quality(output, test_clean),
                    }
                )
    return rows
