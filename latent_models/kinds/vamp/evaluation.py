"""The VampPrior VAE's part of `evaluate`: the VAE's measures (`kinds.vae.evaluation`): -ELBO
and IW-NLL on the test set, the out-of-distribution AUROCs, and sample quality (FID in the digit
classifier's features, class entropy, confidence) of `samples` images drawn from the model's own
learned prior: one sampler, `prior`, nothing fitted afterwards."""

from __future__ import annotations

import torch

from latent_models import tracking
from latent_models.evaluation.scores import SAMPLE_SEED, batched
from latent_models.kinds.vae import evaluation as vae

SAMPLERS = ("prior",)


def _samples(cfg, model) -> dict[str, torch.Tensor]:
    tracking.set_tags({"prior": f"the learned VampPrior ({model.config.pseudo_inputs} pseudo-inputs)"})
    with torch.inference_mode():
        z = model.sample_latents(cfg.samples, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        return {"prior": batched(model.decode, z)}


def evaluate(cfg, model, wrapper, data, trained: dict, run_id: str) -> dict:
    is_binarized = trained.get("binarize", "false").lower() == "true"
    result = vae.likelihoods(cfg, model, data, is_binarized)
    result.update(vae.sample_quality(cfg, data, lambda: _samples(cfg, model), run_id))
    return result


def model_metrics(result: dict, cfg) -> list[tuple[int, list[str]]]:
    """(first N test images (0: all), the model's metrics computed on them); one entry per N."""
    return vae.model_metrics(result, cfg, SAMPLERS, ())
