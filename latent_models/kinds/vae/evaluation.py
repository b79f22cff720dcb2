"""The VAE's part of `evaluate`: -ELBO and IW-NLL on the test set (nats per image and bits per
dimension), how well -log p(x) tells the test images from the other dataset's (MNIST against
Fashion-MNIST and back: AUROC, raw and corrected for input complexity), and sample quality
(FID in a digit classifier's features, class entropy, confidence) for z ~ N(0, I) and for a
Gaussian mixture fitted to the training latents: on MNIST and Fashion-MNIST only
(`CLASSIFIER_DATASETS`), the classifier being the `classifier` kind, trained and registered on
first use."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from latent_models import tracking
from latent_models.data import binarized, load_data
from latent_models.device import module_device
from latent_models.errors import DataError
from latent_models.evaluation import figures
from latent_models.evaluation.metrics import auroc, class_entropy, frechet_distance, png_bits
from latent_models.evaluation.scores import SAMPLE_SEED, TEST_SEED, VAL_SEED, batched
from latent_models.kinds import kind
from latent_models.kinds.vae.scores import held_out_likelihood, iw_nll_per_image, latent_prior, mean_image_nll_per_image

CLASSIFIER_TARGET = 0.99
# The datasets whose classes a classifier can learn for FID (digits, clothes); for any other
# (a folder of the user's images) FID is not computed, and the run's tag `fid` says so.
CLASSIFIER_DATASETS = ("mnist", "fashion-mnist")
# The out-of-distribution check: a model of one dataset scores the other's test images, which it
# has never seen anything like. The pair is the usual one in the literature (Nalisnick et al.
# 2019): same size, same grey levels, different content.
OUT_OF_DISTRIBUTION = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
# Below this raw-likelihood AUROC the score barely separates the datasets (0.5 is chance).
WEAK_AUROC = 0.7


def out_of_distribution(cfg, model, data, test_x: torch.Tensor, is_binarized: bool) -> dict[str, float]:
    """AUROC of -log p(x) for telling the first `ood_images` test images of the model's dataset
    (inliers) from the first as many of the other dataset's (outliers), beside two known
    corrections. Raw likelihood is known to be fooled the Fashion-MNIST -> MNIST way: simple
    images (digits: mostly black) are likely under any model of images, so a Fashion-MNIST model
    rates digits more likely than clothes.

    - input complexity (Serra et al. 2020): S(x) = -log2 p(x) - L(x), L(x) the image's PNG size
      in bits; it assumes the model's bits are bits of the same 8-bit image, which a Bernoulli
      model of grey levels' are not (a binarized model's, of its binary images, are);
    - likelihood ratio to a background model that ignores the image: -log p(x) + log p_mean(x),
      p_mean the independent pixels around the training mean in the VAE's own likelihood
      (`mean_image_nll`): what the VAE explains beyond pixel statistics, in the same units
      whatever the likelihood.

    Both sets are scored with the same k and seed (binarized as the test set is, for a
    binarize=true model)."""
    other_name = OUT_OF_DISTRIBUTION.get(data.name) if data.source != "folder" else None
    if other_name is None:
        tracking.set_tags({"ood": f"not computed (no out-of-distribution pair for dataset {data.name})"})
        return {}
    try:
        other = load_data(dataclasses.replace(cfg, dataset=other_name)).test.images
    except DataError as exc:
        note = f"not computed ({other_name} test images not found: {exc})"
        tqdm.write(f"out-of-distribution AUROC {note}")
        tracking.set_tags({"ood": note})
        return {}
    n = cfg.ood_images or max(len(test_x), len(other))
    inliers = test_x[:n]
    outliers = (binarized(other, TEST_SEED) if is_binarized else other)[:n]
    nll = {
        name: iw_nll_per_image(model, x, cfg.iw_samples, torch.Generator().manual_seed(TEST_SEED)).double().numpy()
        for name, x in ((data.name, inliers), (other_name, outliers))
    }
    bits = {name: v / math.log(2) for name, v in nll.items()}  # -log2 p(x)
    corrected = {name: bits[name] - png_bits(x) for name, x in ((data.name, inliers), (other_name, outliers))}
    train = binarized(data.train.images, VAL_SEED) if is_binarized else data.train.images
    ratio = {
        name: nll[name] - mean_image_nll_per_image(train, x, model.likelihood).double().numpy()
        for name, x in ((data.name, inliers), (other_name, outliers))
    }
    dims = math.prod(test_x.shape[1:])
    result = {
        "ood_auroc_nll": auroc(nll[data.name], nll[other_name]),
        "ood_auroc_complexity": auroc(corrected[data.name], corrected[other_name]),
        "ood_auroc_ratio": auroc(ratio[data.name], ratio[other_name]),
        "ood_nll_inliers": float(nll[data.name].mean()),
        "ood_nll_outliers": float(nll[other_name].mean()),
    }
    raw = result["ood_auroc_nll"]
    corrections = (
        f"input complexity {result['ood_auroc_complexity']:.3f}, "
        f"likelihood ratio to the mean image {result['ood_auroc_ratio']:.3f}"
    )
    if raw < 0.5:
        verdict = (
            f"fooled: AUROC {raw:.3f} < 0.5, {other_name} images get a higher likelihood than {data.name}'s own; "
            f"corrected: {corrections}"
        )
    elif raw < WEAK_AUROC:
        verdict = f"weak: AUROC {raw:.3f}; corrected: {corrections}"
    else:
        verdict = f"separates: AUROC {raw:.3f} (corrected: {corrections})"
    tqdm.write(f"out-of-distribution ({data.name} against {other_name}), raw likelihood {verdict}")
    tracking.set_tags(
        {
            "ood": f"{data.name} test[:{len(inliers)}] against {other_name} test[:{len(outliers)}], k={cfg.iw_samples}",
            "ood_raw_likelihood": verdict,
        }
    )
    tracking.log_figure(
        figures.score_histograms(
            {
                "−log p(x), bits per dimension": {k: v / dims for k, v in bits.items()},
                "S(x) = −log2 p(x) − PNG bits": corrected,
                "−log p(x) + log p_mean(x), nats": ratio,
            },
            f"{data.name} model: its test images against {other_name}'s (AUROC raw {raw:.3f}; {corrections})",
        ),
        figures.OOD_SCORES,
    )
    return result


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
    result = likelihoods(cfg, model, data, is_binarized)
    result.update(sample_quality(cfg, data, lambda: _samples(cfg, model, served_prior, data, is_binarized), run_id))
    if "fid_normal" in result:
        result["fid_ratio_normal_to_fitted"] = result["fid_normal"] / max(result["fid_fitted"], 1e-12)
    return result


def likelihoods(cfg, model, data, is_binarized: bool) -> dict:
    """The test -ELBO and IW-NLL (of the binarized test set for a binarize=true model), and the
    out-of-distribution AUROCs: what `evaluate` measures of any VAE's likelihood."""
    test_x = binarized(data.test.images, TEST_SEED) if is_binarized else data.test.images
    result, _ = held_out_likelihood(model, test_x, cfg.iw_samples, cfg.iw_images)
    tracking.set_tags({"binarized_test_set": is_binarized})
    result.update(out_of_distribution(cfg, model, data, test_x, is_binarized))
    return result


def sample_quality(cfg, data, draw: Callable[[], dict[str, torch.Tensor]], run_id: str) -> dict:
    """FID in the digit classifier's features, class entropy and mean confidence of the images
    `draw()` gives (sampler name -> `cfg.samples` images), per sampler (`<metric>_<sampler>`),
    with the table and the figure comparing them; on a dataset without a classifier (a folder)
    only the figure. The classifier is found (or trained) before the images are drawn."""
    if data.source == "folder" or data.name not in CLASSIFIER_DATASETS:
        # The user's own images (a folder): no classifier of their classes, so no FID, class
        # entropy or confidence; the samples are shown all the same.
        note = f"not computed (no classifier for dataset {data.name})"
        tqdm.write(f"FID is {note}; it is computed for {' and '.join(CLASSIFIER_DATASETS)} only")
        tracking.set_tags({"fid": note})
        samples = draw()
        tracking.log_figure(
            figures.sampler_comparison({k: v[:64] for k, v in samples.items()}, None, dict.fromkeys(samples, "")),
            figures.SAMPLERS,
        )
        return {"table": []}

    result = {}
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

    samples = draw()
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
    tracking.log_table(rows, "evaluation/sample_quality.json")
    tracking.log_figure(
        figures.sampler_comparison({k: v[:64] for k, v in samples.items()}, counts, scores), figures.SAMPLERS
    )
    result["table"] = rows
    return result


def model_metrics(
    result: dict,
    cfg,
    samplers: tuple[str, ...] = ("normal", "fitted"),
    extra: tuple[str, ...] = ("fid_ratio_normal_to_fitted",),
) -> list[tuple[int, list[str]]]:
    """(first N test images (0: all), the model's metrics computed on them); one entry per N.
    `samplers`: those `sample_quality` measured; `extra`: metrics on all test images beside them."""
    quality = [f"{m}_{s}" for m in ("fid", "class_entropy", "mean_confidence") for s in samplers]
    on_first: dict[int, list[str]] = {
        0: [
            "test_neg_elbo",
            "test_recon",
            "test_kl",
            "test_active_units",
            "test_neg_elbo_bits_per_dim",
            *quality,
            *extra,
        ]
    }
    on_first.setdefault(cfg.iw_images, []).extend(["test_iw_nll", "test_iw_nll_stderr", "test_iw_nll_bits_per_dim"])
    on_first.setdefault(cfg.ood_images, []).extend(OOD_METRICS)
    return list(on_first.items())


OOD_METRICS = ("ood_auroc_nll", "ood_auroc_complexity", "ood_auroc_ratio", "ood_nll_inliers", "ood_nll_outliers")
