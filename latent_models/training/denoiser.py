"""Train, evaluate, log and register the denoising autoencoder. Read top to bottom."""

from __future__ import annotations

import time

from torch.nn import functional as F

from latent_models import tracking
from latent_models.training import distributed
from latent_models.evaluation import figures
from latent_models.evaluation import report
from latent_models.config import AEConfig, with_logged_params
from latent_models.device import check as check_device, device_tags
from latent_models.data import DataSplits, load_splits
from latent_models.evaluation.scores import (
    batched,
    default_levels,
    evaluate_denoiser,
    iterate_denoiser,
    psnr_versus_level,
)
from latent_models.evaluation.metrics import psnr
from latent_models.models import build_model
from latent_models.noise import add_noise, fixed_noise
from latent_models.serving.logged_model import model_saver
from latent_models.training.loop import EpochHook, fit, images_per_second, seed_everything
from latent_models.tracking import check_resumable_data, checkpointing

# Fixed-noise seeds: validation and test corruption depend only on these and the config.
VAL_NOISE_SEED, TEST_NOISE_SEED = 1_000_001, 2_000_002
# Champion: higher validation PSNR at the same dataset, noise model and level, and above the
# noisy input's own (a denoiser below it is worse than no denoiser).
CHAMPION = tracking.ChampionRule("val_psnr", True, ("dataset", "noise", "noise_level"), "val_psnr_noisy",
                                 "the noisy input's val_psnr")
N_FIGURE_IMAGES = 10
SWEEP_IMAGES = 2000


def denoising_loss(noise: str, level: float):
    """Fresh noise every batch; BCE on logits (gradients survive sigmoid saturation).
    The noise is drawn for the whole batch; the loss is computed on `rows` of it."""

    def loss_fn(model, clean, generator, progress, rows=slice(None)):
        noisy = add_noise(clean, noise, level, generator)[rows]
        loss = F.binary_cross_entropy_with_logits(model.logits(noisy).float(), clean[rows])  # fp32 under autocast
        return loss, {}

    return loss_fn


def run_ae(cfg: AEConfig, parent_run_id: str | None = None, data: DataSplits | None = None,
           epoch_hook: EpochHook | None = None) -> dict:
    """The `ae` entry point: returns test metrics, run id and registered version ({} on
    torchrun ranks other than 0, which only train). The selected epoch's validation metrics come
    back too; `epoch_hook(epoch, metrics)` sees each finished epoch and may raise to stop."""
    device, precision = check_device(cfg.device, cfg.precision)
    rank = distributed.setup(device)
    resumed = tracking.find_resumable_run(cfg.resume, cfg.experiment_name, "denoiser") if cfg.resume else None
    if resumed:  # the run's own settings, not the command line's defaults
        cfg = with_logged_params(cfg, resumed.data.params)
    data = data or load_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.download,
                               cfg.limit_train, cfg.limit_test)
    if resumed:
        check_resumable_data(resumed, data.digest)
    generator = seed_everything(cfg.seed, device)
    model = build_model(cfg.model_config(data.image_shape)).to(device)
    val_noisy = fixed_noise(data.val.images, cfg.noise, cfg.noise_level, VAL_NOISE_SEED)
    test_noisy = fixed_noise(data.test.images, cfg.noise, cfg.noise_level, TEST_NOISE_SEED)
    val_psnr_noisy = psnr(val_noisy, data.val.images).mean().item()  # doing nothing: the floor for champion

    def evaluate(m):
        metrics = evaluate_denoiser(m, data.val.images, val_noisy)
        metrics["loss"] = batched(
            lambda x, y: F.binary_cross_entropy_with_logits(m.logits(x), y, reduction="none").flatten(1).mean(1),
            val_noisy, data.val.images, device=device,
        ).mean().item()
        return {f"val_{k}": metrics[k] for k in ("loss", "psnr", "ssim")}

    training = dict(
        loss_fn=denoising_loss(cfg.noise, cfg.noise_level),
        evaluate_fn=evaluate, monitor="val_psnr", mode="max",
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, adam_beta2=cfg.adam_beta2,
        schedule=cfg.schedule, generator=generator, precision=precision, compile=cfg.compile,
    )
    if rank != 0:  # a DDP worker: trains in step with rank 0, which logs, evaluates and registers
        fit(model, data.train.images, **training)
        return {}

    tags = {"model_type": "denoiser", "noise": cfg.noise, "noise_level": cfg.noise_level, **device_tags(device, precision)}
    with tracking.pipeline_run(cfg, data, parent_run_id, resumed, tags) as (run, datasets):
        packed = lambda: model_saver(model, test_noisy[:2].numpy())  # noqa: E731
        checkpoints = (tracking.checkpoint_models("denoiser", "denoiser", packed, datasets["val"])
                       if cfg.log_checkpoints else None)
        started = time.perf_counter()
        result = fit(model, data.train.images, **training,
                     **checkpointing(run.info.run_id, cfg, resumed, checkpoints, epoch_hook))
        train_seconds = time.perf_counter() - started
        model.eval()

        test = evaluate_denoiser(model, data.test.images, test_noisy)
        test_metrics = {f"test_{k}": v for k, v in test.items()}
        facts = {
            "best_epoch": result.best_epoch,
            "train_seconds": train_seconds,
            "train_images_per_second": images_per_second(cfg.epochs, len(data.train), cfg.batch_size, train_seconds),
        }
        # The noisy input's scores describe the data, not the model: the run's alone.
        tracking.log_metrics({**{k: v for k, v in test_metrics.items() if k.endswith("_noisy")}, **facts,
                              "val_psnr_noisy": val_psnr_noisy})
        _log_figures(cfg, data, model, result.history, val_noisy, test_noisy)
        summary = report.summary("denoiser", cfg, test_metrics)
        tracking.set_description("\n\n".join(summary))
        tracking.log_report(report.render("denoiser", cfg, {**test_metrics, **facts}, result.history,
                                          tracking.logged_files("figures"), run.info.run_name, run.info.run_id))

        ref = tracking.log_selected_model(
            "denoiser", packed(), "denoiser", result.best_epoch, result.selected_validation_metrics(), datasets["val"],
            {k: v for k, v in test_metrics.items() if not k.endswith("_noisy")}, datasets["test"],
            cfg.registered_model_name if cfg.register else None)
        if ref.version:
            tracking.tag_model_version(cfg.registered_model_name, ref.version, {
                "dataset": cfg.dataset, "noise": cfg.noise, "noise_level": cfg.noise_level, "arch": cfg.arch,
                "test_psnr": round(test["psnr"], 3), "test_psnr_noisy": round(test["psnr_noisy"], 3),
                "test_ssim": round(test["ssim"], 4), "run_id": run.info.run_id,
            })
        outcome = {**test_metrics, **facts, **result.selected_validation_metrics(), "val_psnr_noisy": val_psnr_noisy,
                   "run_id": run.info.run_id, "model_id": ref.model_id, "model_uri": ref.model_uri,
                   "registered_version": ref.version, "promotion": None}
        if ref.version:
            outcome["promotion"] = str(CHAMPION.promote(cfg.registered_model_name, ref.version, cfg, outcome,
                                                        cfg.promote))
        return outcome


def _log_figures(cfg: AEConfig, data: DataSplits, model, history, val_noisy, test_noisy) -> None:
    n = N_FIGURE_IMAGES
    tracking.log_figure(
        figures.loss_curves(history, {"BCE loss": ["train_loss", "val_loss"], "validation PSNR (dB)": ["val_psnr"],
                                      "validation SSIM": ["val_ssim"]},
                            f"Denoising AE ({cfg.arch}) on {cfg.dataset}, {cfg.noise} {cfg.noise_level:g}"),
        "figures/loss_curves.png",
    )
    for split, clean, noisy in (("val", data.val.images, val_noisy), ("test", data.test.images, test_noisy)):
        denoised = batched(model, noisy[:n])
        captions = [f"{a:.1f}→{b:.1f} dB" for a, b in zip(psnr(noisy[:n], clean[:n]), psnr(denoised, clean[:n]))]
        tracking.log_figure(
            figures.image_rows({"noisy": noisy[:n], "clean": clean[:n], "denoised": denoised},
                               f"{split}: {cfg.noise} noise {cfg.noise_level:g} (PSNR noisy→denoised)", captions),
            f"figures/denoising_{split}.png",
        )
    sweep_clean = data.test.images[:SWEEP_IMAGES]
    sweep = psnr_versus_level(model, sweep_clean, cfg.noise, default_levels(cfg.noise), TEST_NOISE_SEED)
    tracking.log_figure(figures.psnr_versus_level(sweep, cfg.noise, cfg.noise_level), "figures/psnr_vs_noise_level.png")
    steps = iterate_denoiser(model, test_noisy[:SWEEP_IMAGES], cfg.iterations)
    psnrs = [psnr(s, sweep_clean[: s.shape[0]]).mean().item() for s in steps]
    for k, value in enumerate(psnrs):
        tracking.log_metrics({"iterative_psnr": value}, step=k)
    tracking.log_figure(figures.iterative_reconstruction([s[:6] for s in steps], psnrs),
                        "figures/iterative_reconstruction.png")
