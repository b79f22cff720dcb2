"""The denoising autoencoder's part of the one training pipeline (`training.pipeline`): fresh noise every
batch, PSNR/SSIM on fixed-noise validation and test images, and its figures."""

from __future__ import annotations

import torch

from latent_models import tracking
from latent_models.data import DataSplits
from latent_models.evaluation import figures
from latent_models.evaluation.metrics import psnr
from latent_models.evaluation.scores import TEST_SEED, VAL_SEED, batched
from latent_models.kinds.denoiser import KIND
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.model import at_level, reconstruction_loss
from latent_models.kinds.denoiser.scores import default_levels, evaluate_denoiser, iterate_denoiser, psnr_by_level
from latent_models.noise import add_gaussian_noise, add_noise, fixed_noise
from latent_models.training.loop import EpochHook
from latent_models.training.pipeline import Recipe, input_example, run_pipeline

N_FIGURE_IMAGES = 10
SWEEP_IMAGES = 2000


def denoising_loss(noise: str, level: float, sigma_max: float = 0.0):
    """Fresh noise every batch; the loss of the model's head (BCE on logits, or the residual
    head's MSE). The noise is drawn for the whole batch; the loss is computed on `rows` of it.
    `sigma_max` > 0 (a noise-map model): each image's σ is drawn uniformly from [0, sigma_max]
    and the model is told it."""

    def loss_fn(model, clean, generator, progress, rows=slice(None)):
        if not sigma_max:
            noisy = add_noise(clean, noise, level, generator)[rows]
            return reconstruction_loss(model, noisy, clean[rows]), {}
        sigma = torch.rand(len(clean), generator=generator, device=clean.device) * sigma_max
        noisy = add_gaussian_noise(clean, sigma.view(-1, 1, 1, 1).to(clean.dtype), generator)[rows]
        return reconstruction_loss(at_level(model, sigma[rows]), noisy, clean[rows]), {}

    return loss_fn


class DenoiserRecipe(Recipe):
    kind = KIND
    # Champion: higher validation PSNR at the same dataset, noise model and level, and above the
    # noisy input's own (a denoiser below it is worse than no denoiser).
    champion = tracking.ChampionRule(
        "val_psnr", True, ("dataset", "noise", "noise_level"), "val_psnr_noisy", "the noisy input's val_psnr"
    )

    def __init__(self, cfg: AEConfig, data: DataSplits):
        super().__init__(cfg, data)
        self.val_noisy = fixed_noise(data.val.images, cfg.noise, cfg.noise_level, VAL_SEED)
        self.test_noisy = fixed_noise(data.test.images, cfg.noise, cfg.noise_level, TEST_SEED)

    def tags(self) -> dict:
        return {"noise": self.cfg.noise, "noise_level": self.cfg.noise_level}

    def loss_fn(self):
        return denoising_loss(self.cfg.noise, self.cfg.noise_level, self.cfg.sigma_max)

    def told(self, model):
        """The model as it denoises the run's noise level (a noise-map model: told it)."""
        return at_level(model, self.cfg.noise_level)

    def validate(self, model) -> dict[str, float]:
        model = self.told(model)
        metrics = evaluate_denoiser(model, self.data.val.images, self.val_noisy)
        metrics["loss"] = (
            batched(
                lambda x, y: reconstruction_loss(model, x, y, reduction="none").flatten(1).mean(1),
                self.val_noisy,
                self.data.val.images,
                device=next(model.parameters()).device,
            )
            .mean()
            .item()
        )
        return {f"val_{k}": metrics[k] for k in ("loss", "psnr", "ssim")}

    def example(self):
        return input_example(self.test_noisy)

    def test(self, model):
        model = self.told(model)
        test = {f"test_{k}": v for k, v in evaluate_denoiser(model, self.data.test.images, self.test_noisy).items()}
        # The noisy input's scores describe the data, not the model: the run's alone. Its
        # validation PSNR is doing nothing: the floor for champion.
        run_only = {k: v for k, v in test.items() if k.endswith("_noisy")}
        run_only["val_psnr_noisy"] = psnr(self.val_noisy, self.data.val.images).mean().item()
        return {k: v for k, v in test.items() if k not in run_only}, run_only

    def version_tags(self, measured):
        cfg = self.cfg
        return {
            "dataset": self.data.identity,
            "noise": cfg.noise,
            "noise_level": cfg.noise_level,
            "arch": cfg.arch,
            "test_psnr": round(measured["test_psnr"], 3),
            "test_psnr_noisy": round(measured["test_psnr_noisy"], 3),
            "test_ssim": round(measured["test_ssim"], 4),
        }

    def log_figures(self, model, history) -> None:
        cfg, data, n = self.cfg, self.data, N_FIGURE_IMAGES
        tracking.log_figure(
            figures.loss_curves(
                history,
                {
                    "MSE loss" if cfg.residual else "BCE loss": ["train_loss", "val_loss"],
                    "validation PSNR (dB)": ["val_psnr"],
                    "validation SSIM": ["val_ssim"],
                },
                f"Denoising AE ({cfg.arch}) on {cfg.dataset}, {cfg.noise} {cfg.noise_level:g}",
            ),
            figures.LOSS_CURVES,
        )
        for split, clean, noisy in (
            ("val", data.val.images, self.val_noisy),
            ("test", data.test.images, self.test_noisy),
        ):
            denoised = batched(self.told(model), noisy[:n])
            captions = [f"{a:.1f}→{b:.1f} dB" for a, b in zip(psnr(noisy[:n], clean[:n]), psnr(denoised, clean[:n]))]
            tracking.log_figure(
                figures.image_rows(
                    {"noisy": noisy[:n], "clean": clean[:n], "denoised": denoised},
                    f"{split}: {cfg.noise} noise {cfg.noise_level:g} (PSNR noisy→denoised)",
                    captions,
                ),
                figures.DENOISING[split],
            )
        sweep_clean = data.test.images[:SWEEP_IMAGES]
        sweep = psnr_by_level(model, sweep_clean, cfg.noise, default_levels(cfg.noise), TEST_SEED)  # told each
        tracking.log_figure(figures.psnr_versus_level(sweep, cfg.noise, cfg.noise_level), figures.PSNR_VERSUS_LEVEL)
        steps = iterate_denoiser(self.told(model), self.test_noisy[:SWEEP_IMAGES], cfg.iterations)
        psnrs = [psnr(s, sweep_clean[: s.shape[0]]).mean().item() for s in steps]
        for k, value in enumerate(psnrs):
            tracking.log_metrics({"iterative_psnr": value}, step=k)
        tracking.log_figure(
            figures.iterative_reconstruction([s[:6] for s in steps], psnrs), figures.ITERATIVE_RECONSTRUCTION
        )


RECIPE = DenoiserRecipe


def run_ae(
    cfg: AEConfig, parent_run_id: str | None = None, data: DataSplits | None = None, epoch_hook: EpochHook | None = None
) -> dict:
    """The `ae` entry point (see `training.pipeline.run_pipeline`)."""
    return run_pipeline(DenoiserRecipe, cfg, parent_run_id, data, epoch_hook)
