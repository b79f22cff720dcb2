"""The `evaluate` entry point: one new run that says how good a logged model is, against
things a user can compare it with. Read top to bottom.

Denoiser: PSNR/SSIM/MSE at every noise model and several levels, beside the noisy input
and classical baselines tuned on validation. VAE: -ELBO and IW-NLL on the test set (nats
per image and bits per dimension), and sample quality (FID in a digit classifier's features,
class entropy, confidence) for z ~ N(0, I) and for a Gaussian mixture fitted to the training
latents: on MNIST and Fashion-MNIST only (`CLASSIFIER_DATASETS`).
"""

from __future__ import annotations

import dataclasses

import torch
from mlflow.exceptions import MlflowException
from tqdm.auto import tqdm

from latent_models import tracking
from latent_models.config import ConfigError, EvaluateConfig, as_params
from latent_models.data import binarized, load_data
from latent_models.device import device_tags, module_device, resolve_device
from latent_models.evaluation import figures
from latent_models.evaluation.baselines import baselines_named
from latent_models.evaluation.metrics import class_entropy, frechet_distance
from latent_models.evaluation.scores import (
    EVALUATION_LEVELS,
    SAMPLE_SEED,
    TEST_SEED,
    VAL_SEED,
    batched,
    compare_denoisers,
    held_out_likelihood,
    latent_prior,
)
from latent_models.serving.pyfunc import load_torch_model
from latent_models.training.classifier import classifier_for

CLASSIFIER_TARGET = 0.99
# The datasets whose classes a classifier can learn for FID (digits, clothes); for any other
# (a folder of the user's images) FID is not computed, and the run's tag `fid` says so.
CLASSIFIER_DATASETS = ("mnist", "fashion-mnist")


def run_evaluate(cfg: EvaluateConfig) -> dict:
    source, model_id = tracking.logged_model_run(cfg.model_uri)
    trained = source.data.params if source else {}
    try:
        model, wrapper = load_torch_model(cfg.model_uri, resolve_device(cfg.device))
    except (MlflowException, AttributeError, ImportError) as exc:
        raise ConfigError(f"{cfg.model_uri} is not a latent-models denoiser or VAE ({exc})") from None
    # By its kind, not its class: a version whose packaged code differs from this process's
    # runs its own copy of the wrapper classes (serving.isolation).
    if getattr(wrapper, "kind", None) not in ("denoiser", "vae"):
        raise ConfigError(f"{cfg.model_uri} is a {type(wrapper).__name__}, not a latent-models denoiser or VAE")
    # The split the model was trained with, unless told otherwise: its validation images
    # (which tune the baselines) must not be images it trained on.
    cfg = dataclasses.replace(
        cfg,
        dataset=cfg.dataset or trained.get("dataset", "mnist"),
        val_size=cfg.val_size or int(float(trained.get("val_size", 5000))),
        seed=cfg.seed if cfg.seed >= 0 else int(float(trained.get("seed", 0))),
    )
    if cfg.dataset == "folder":
        cfg = _as_trained_on_folder(cfg, trained, model.config.image_shape)
    data = load_data(cfg)
    kind = wrapper.kind

    with tracking.training_run(cfg.experiment_name, cfg.run_name, system_metrics=cfg.system_metrics) as run:
        tracking.log_params(as_params(cfg))
        tracking.set_tags(
            {
                "model_type": kind,
                "evaluation": "true",
                "evaluated_model": cfg.model_uri,
                "evaluated_run_id": source.info.run_id if source else "",
                # under `mlflow run` the params above are the launcher's (e.g. dataset "")
                "evaluated_dataset": cfg.dataset,
                "split": f"val_size={cfg.val_size} seed={cfg.seed}",
                **device_tags(module_device(model)),
            }
        )
        if model_id:
            tracking.log_model_input(model_id)
        if kind == "denoiser":
            result = _evaluate_denoiser(cfg, model, data, trained)
        else:
            result = _evaluate_vae(cfg, model, wrapper.prior, data, trained, run.info.run_id)
        _log_results(kind, result, model_id, data, cfg)
        return {**result, "run_id": run.info.run_id, "model_id": model_id}


def _as_trained_on_folder(cfg: EvaluateConfig, trained: dict, image_shape: tuple[int, int, int]) -> EvaluateConfig:
    """A folder model is evaluated on its own shape and split: the folder (unless data_dir names
    another), policy and fractions of its training run; the size and channels of its config."""
    defaults = EvaluateConfig.__dataclass_fields__
    channels, height, width = image_shape
    if cfg.image_size not in (0, height) or cfg.channels not in ("auto", str(channels)):
        raise ConfigError(
            f"this model takes {channels}x{height}x{width} images and is evaluated at that shape: "
            f"leave image_size at 0 and channels at auto (got image_size {cfg.image_size}, channels {cfg.channels})"
        )

    def setting(name: str, kind=str):
        value = getattr(cfg, name)
        if value != defaults[name].default or name not in trained:
            return value
        return kind(float(trained[name])) if kind in (int, float) else trained[name]

    return dataclasses.replace(
        cfg,
        data_dir=setting("data_dir"),
        image_size=image_shape[1],
        channels=str(image_shape[0]),
        image_policy=setting("image_policy"),
        patches_per_image=setting("patches_per_image", int),
        val_fraction=setting("val_fraction", float),
        test_fraction=setting("test_fraction", float),
    )


def _log_results(kind: str, result: dict, model_id: str | None, data, cfg: EvaluateConfig) -> None:
    """The model's own metrics go to the run and to the evaluated logged model, each on the
    test images it used (so the model's page, and its registered version's, list them per
    dataset); the baselines', the classifier's and the references' go to the run alone."""
    test_images, test_labels = data.test.images.numpy(), data.test.labels.numpy()
    run_only = {k: v for k, v in result.items() if isinstance(v, float)}
    for first, keys in _model_metrics(kind, result, cfg):
        linked = {k: run_only.pop(k) for k in keys if k in run_only}
        if model_id and linked:
            dataset = tracking.split_dataset(data.name, data.root, data.digest, "test", test_images, test_labels, first)
            tracking.log_dataset_input(dataset, "evaluation")
            tracking.link_metrics(model_id, linked, dataset)
        else:
            run_only.update(linked)
    tracking.log_metrics(run_only)


def _model_metrics(kind: str, result: dict, cfg: EvaluateConfig) -> list[tuple[int, list[str]]]:
    """(first N test images (0: all), the model's metrics computed on them)."""
    if kind == "denoiser":
        return [
            (
                cfg.images,
                [k for k in result if k.endswith("/model")]
                + ["psnr_model", "ssim_model", "mse_model", "psnr_margin_over_best_baseline"],
            )
        ]
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


def _evaluate_denoiser(cfg: EvaluateConfig, model, data, trained: dict) -> dict:
    levels = {noise: list(EVALUATION_LEVELS[noise]) for noise in cfg.noise_models()}
    trained_at = (trained["noise"], float(trained["noise_level"])) if "noise" in trained else None
    if trained_at and trained_at[0] in levels and trained_at[1] not in levels[trained_at[0]]:
        levels[trained_at[0]] = sorted(levels[trained_at[0]] + [trained_at[1]])
    test = data.test.images[: cfg.images] if cfg.images else data.test.images
    total = sum(len(v) for v in levels.values())
    with tqdm(total=total, desc="noise levels", unit="level", disable=None) as bar:

        def progress(text):
            bar.set_postfix_str(text)
            bar.update(1)

        rows = compare_denoisers(
            model,
            data.val.images[: cfg.tune_images],
            test,
            levels,
            VAL_SEED,
            TEST_SEED,
            progress,
            baselines_named(cfg.baselines),
        )
    tracking.log_table(rows, "evaluation/denoiser_comparison.json")
    tracking.log_figure(figures.method_comparison(rows, trained_at), figures.DENOISER_VS_BASELINES)

    result: dict = {}
    for r in rows:  # grouped in the UI as psnr/<noise>_<level>/<method>
        result[f"psnr/{r['noise']}_{r['level']:g}/{r['method']}"] = r["psnr"]
    if trained_at and trained_at[0] in levels:
        at = {r["method"]: r for r in rows if (r["noise"], r["level"]) == trained_at}
        baselines = {m: r["psnr"] for m, r in at.items() if m not in ("model", "noisy_input")}
        # Named apart from training's test_psnr: these use the first `images` test images.
        result.update(
            {
                "psnr_model": at["model"]["psnr"],
                "ssim_model": at["model"]["ssim"],
                "mse_model": at["model"]["mse"],
                "psnr_noisy_input": at["noisy_input"]["psnr"],
                **{f"psnr_{m}": v for m, v in baselines.items()},
                "psnr_margin_over_best_baseline": at["model"]["psnr"] - max(baselines.values()),
            }
        )
        tracking.set_tags(
            {
                "trained_noise": trained_at[0],
                "trained_noise_level": trained_at[1],
                "beats_all_baselines": result["psnr_margin_over_best_baseline"] > 0,
            }
        )
    result["table"], result["trained_at"] = rows, trained_at
    return result


def _samples(cfg: EvaluateConfig, model, served_prior, data, is_binarized: bool) -> dict[str, torch.Tensor]:
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


def _evaluate_vae(cfg: EvaluateConfig, model, served_prior, data, trained: dict, run_id: str) -> dict:
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
    classifier, facts = classifier_for(data, classifier_name, cfg.classifier_epochs, cfg.seed, run_id, cfg.device)
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
