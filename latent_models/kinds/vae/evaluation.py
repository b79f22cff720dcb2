"""The VAE's part of `evaluate`: -ELBO and IW-NLL on the test set (nats per image and bits per
dimension), and sample quality (FID in a digit classifier's features, class entropy,
confidence) for z ~ N(0, I) and for a Gaussian mixture fitted to the training latents: on
MNIST and Fashion-MNIST only (`CLASSIFIER_DATASETS`), the classifier being the `classifier`
kind, trained and registered on first use."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from latent_models import tracking
from latent_models.data import binarized
from latent_models.device import module_device
from latent_models.evaluation import figures
from latent_models.evaluation.metrics import class_entropy, frechet_distance
from latent_models.evaluation.scores import SAMPLE_SEED, TEST_SEED, batched
from latent_models.kinds import kind
from latent_models.kinds.vae.scores import held_out_likelihood, latent_prior

CLASSIFIER_TARGET = 0.99
# The datasets whose classes a classifier can learn for FID (digits, clothes); for any other
# (a folder of the user's images) FID is not computed, and the run's tag `fid` says so.
CLASSIFIER_DATASETS = ("mnist", "fashion-mnist")


def _samples(cfg, model, served_prior, data, is_binarized: bool) -> dict[str, torch.Tensor]:
    """`cfg.samples` images from each sampler: z ~ N(0, I), and the fitted mixture (the
    model's own if it has as many components, else one fitted here)."""
    if served_prior is not None and served_prior.components == cfg.components:
        prior, prior_source = served_prior, "the model's own (served as sampler=fitted)"
    else:
        prior = latent_prior(model, data.train.images, is_binarized, cfg.components, cfg.seed)
        prior_source = "fitted here on the training latent means"
    tracking.set_tags({"fitted_prior": f"{prior.components}-component Gaussian mixture, {prior_source}"})

    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    with torch.inference_mode():
        z = {
            "normal": torch.randn((cfg.samples, model.latent_dim), generator=generator),
            "fitted": prior.sample(cfg.samples, generator=generator),
        }
        samples = {name: batched(model.decode, latents) for name, latents in z.items()}
    return samples


def evaluate(cfg, model, wrapper, data, trained: dict, run_id: str) -> dict:
    served_prior = wrapper.prior
    is_binarized = trained.get("binarize", "false").lower() == "true"
    test_x = binarized(data.test.images, TEST_SEED) if is_binarized else data.test.images
    result, _ = held_out_likelihood(model, test_x, cfg.iw_samples, cfg.iw_images)
    tracking.set_tags({"binarized_test_set": is_binarized})

    if data.source == "folder" or data.name not in CLASSIFIER_DATASETS:
        # The user's own images (a folder): no classifier of their classes, so no FID, class
        # entropy or confidence; the samples are shown all the same.
        note = f"not computed (no classifier for dataset {data.name})"
        tqdm.write(f"FID is {note}; it is computed for {' and '.join(CLASSIFIER_DATASETS)} only")
        tracking.set_tags({"fid": note})
        samples = _samples(cfg, model, served_prior, data, is_binarized)
        tracking.log_figure(
            figures.sampler_comparison({k: v[:64] for k, v in samples.items()}, None, dict.fromkeys(samples, "")),
            figures.SAMPLERS,
        )
        return {**result, "table": []}

    classifier_name = cfg.classifier_name or f"latent-{data.name}-classifier"
    classifier, facts = (
        kind("classifier")
        .module("recipe")
        .classifier_for(data, classifier_name, cfg.classifier_epochs, cfg.seed, run_id, cfg.device)
    )
    result.update({k: float(v) for k, v in facts.items()})
    if facts["classifier_test_accuracy"] < CLASSIFIER_TARGET:
        tqdm.write(
            f"warning: {classifier_name} version {facts['classifier_version']} has test accuracy "
            f"{facts['classifier_test_accuracy']:.4f} < {CLASSIFIER_TARGET}; FID in its features is less "
            "meaningful (train a better one with more classifier_epochs and a new classifier_name)"
        )
    tracking.set_tags({"classifier": f"{classifier_name} version {facts['classifier_version']}"})

    samples = _samples(cfg, model, served_prior, data, is_binarized)
    reference = batched(classifier.features, data.test.images)
    result["fid_train_vs_test"] = frechet_distance(
        batched(classifier.features, data.train.images[: cfg.samples]), reference
    )
    rows, counts, scores = [], {}, {}
    for name, images in samples.items():
        features = batched(classifier.features, images)
        with torch.inference_mode():
            probs = classifier.head(features.to(module_device(classifier))).softmax(dim=1).cpu()
        predicted = probs.argmax(dim=1)
        counts[name] = torch.bincount(predicted, minlength=probs.shape[1])
        row = {
            "sampler": name,
            "fid": frechet_distance(features, reference),
            "class_entropy": class_entropy(predicted, probs.shape[1]),
            "mean_confidence": probs.max(dim=1).values.mean().item(),
        }
        row.update({f"class_{c}": (counts[name][c] / len(predicted)).item() for c in range(probs.shape[1])})
        rows.append(row)
        scores[name] = f"FID {row['fid']:.2f}, entropy {row['class_entropy']:.3f}"
        result.update({f"{k}_{name}": row[k] for k in ("fid", "class_entropy", "mean_confidence")})
    result["fid_ratio_normal_to_fitted"] = result["fid_normal"] / max(result["fid_fitted"], 1e-12)
    tracking.log_table(rows, "evaluation/sample_quality.json")
    tracking.log_figure(
        figures.sampler_comparison({k: v[:64] for k, v in samples.items()}, counts, scores), figures.SAMPLERS
    )
    result["table"] = rows
    return result


def model_metrics(result: dict, cfg) -> list[tuple[int, list[str]]]:
    """(first N test images (0: all), the model's metrics computed on them)."""
    samplers = [f"{m}_{s}" for m in ("fid", "class_entropy", "mean_confidence") for s in ("normal", "fitted")]
    return [
        (
            0,
            [
                "test_neg_elbo",
                "test_recon",
                "test_kl",
                "test_active_units",
                "test_neg_elbo_bits_per_dim",
                *samplers,
                "fid_ratio_normal_to_fitted",
            ],
        ),
        (cfg.iw_images, ["test_iw_nll", "test_iw_nll_stderr", "test_iw_nll_bits_per_dim"]),
    ]
