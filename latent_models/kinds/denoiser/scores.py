"""The denoiser's scores on a whole split: PSNR/SSIM/MSE beside the noisy input's, across noise
levels, iterated, and against the classical baselines (`baselines.py`)."""

from __future__ import annotations

import torch
from torch import nn

from latent_models.evaluation.metrics import psnr
from latent_models.evaluation.scores import batched, image_quality
from latent_models.kinds.denoiser.model import at_level
from latent_models.noise import fixed_noise


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
    """Denoised and noisy PSNR across a sweep of noise levels (same model, same images; a
    noise-map model told each level)."""
    denoised, noisy_psnr = [], []
    for level in levels:
        noisy = fixed_noise(clean, noise, level, seed)
        denoised.append(psnr(batched(at_level(model, level), noisy), clean).mean().item())
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
    `baselines.py`); one that does not take images this small is left out."""
    from latent_models.kinds.denoiser.baselines import BASELINES, tune

    baselines = [b for b in (BASELINES if baselines is None else baselines) if b.accepts(test_clean)]
    rows = []
    for noise, noise_levels in levels.items():
        for level in noise_levels:
            progress(f"{noise} {level:g}")
            val_noisy = fixed_noise(val_clean, noise, level, val_seed)
            test_noisy = fixed_noise(test_clean, noise, level, test_seed)
            told = at_level(model, level if noise == "gaussian" else _spread(test_noisy, test_clean, model))
            outputs = {"model": (batched(told, test_noisy), ""), "noisy_input": (test_noisy, "")}
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


def _spread(noisy: torch.Tensor, clean: torch.Tensor, model: nn.Module) -> float:
    """The level a noise-map model is told for noise that is not Gaussian: the noise's own
    standard deviation, within the range it was trained on."""
    return min(float((noisy - clean).std()), getattr(model.config, "sigma_max", 0.0))
