"""The VAE's part of the pipeline (`training.pipeline`): the ELBO with a KL warm-up, -ELBO
and IW-NLL on held-out images, the mixture prior served beside the weights, and its figures."""

from __future__ import annotations

import torch

from latent_models import tracking
from latent_models.data import DataSplits, binarized
from latent_models.device import module_device
from latent_models.evaluation import figures
from latent_models.evaluation.scores import FIGURE_SEED, TEST_SEED, VAL_SEED
from latent_models.kinds.vae import KIND
from latent_models.kinds.vae.config import VAEConfig, check_components
from latent_models.kinds.vae.model import ConvVAE
from latent_models.kinds.vae.scores import evaluate_vae, held_out_likelihood, latent_means, latent_prior, mean_image_nll
from latent_models.training.loop import EpochHook
from latent_models.training.pipeline import Recipe, input_example, run_pipeline


def kl_weight(beta: float, warmup_epochs: float, progress: float) -> float:
    """Linear warm-up from 0 to beta over `warmup_epochs` (progress counts epochs)."""
    return beta if warmup_epochs <= 0 else beta * min(1.0, progress / warmup_epochs)


def elbo_loss(cfg: VAEConfig):
    def loss_fn(model, x, generator, progress, rows=slice(None)):
        # Random draws for the whole batch, in a fixed order; the loss on `rows` of it.
        if cfg.binarize:
            x = torch.bernoulli(x, generator=generator)
        eps = torch.randn((x.shape[0], model.latent_dim), generator=generator, dtype=x.dtype, device=x.device)
        ll, kl, _, _ = model(x[rows], eps=eps[rows])
        weight = kl_weight(cfg.beta, cfg.kl_warmup_epochs, progress)
        loss = (-ll + weight * kl).mean()
        return loss, {"train_neg_elbo": (-ll + kl).mean().item(), "kl_weight": weight}

    return loss_fn


class VAERecipe(Recipe):
    kind = KIND
    # Champion: lower validation -ELBO on the same dataset, likelihood and binarization, and below
    # that of independent pixels around the training mean.
    champion = tracking.ChampionRule(
        "val_neg_elbo",
        False,
        ("dataset", "likelihood", "binarize"),
        "val_neg_elbo_mean_image",
        "the mean-image model's val_neg_elbo",
    )
    # The figures' words: what the model is called and where its samples' codes come from.
    short_name = "VAE"
    samples_title = "100 samples, z ~ N(0, I)"

    def __init__(self, cfg: VAEConfig, data: DataSplits):
        super().__init__(cfg, data)
        if cfg.prior_components:  # found now, not after training
            check_components(cfg.prior_components, len(data.train), "prior_components")
        self.val_x = binarized(data.val.images, VAL_SEED) if cfg.binarize else data.val.images
        self.test_x = binarized(data.test.images, TEST_SEED) if cfg.binarize else data.test.images
        self.prior = None

    def tags(self) -> dict:
        return {"likelihood": self.cfg.likelihood, "binarize": self.cfg.binarize}

    def loss_fn(self):
        return elbo_loss(self.cfg)

    def validate(self, model) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate_vae(model, self.val_x, VAL_SEED).items()}

    def example(self):
        return input_example(self.data.test.images)

    def test(self, model):
        cfg = self.cfg
        test, iw_seconds = held_out_likelihood(model, self.test_x, cfg.iw_samples, cfg.iw_images)
        # Doing nothing: independent pixels around the training mean. The floor for champion.
        floor = mean_image_nll(self.data.train.images, self.val_x, cfg.likelihood)
        return test, {"iw_nll_seconds": iw_seconds, "val_neg_elbo_mean_image": floor}

    def version_tags(self, measured):
        cfg = self.cfg
        return {
            "dataset": self.data.identity,
            "latent_dim": cfg.latent_dim,
            "likelihood": cfg.likelihood,
            "binarize": cfg.binarize,
            "test_neg_elbo": round(measured["test_neg_elbo"], 3),
            "test_iw_nll": round(measured["test_iw_nll"], 3),
            "test_kl": round(measured["test_kl"], 3),
        }

    def log_figures(self, model: ConvVAE, history) -> None:
        cfg, data, test_x = self.cfg, self.data, self.test_x
        gen = torch.Generator().manual_seed(FIGURE_SEED)
        tracking.log_figure(
            figures.loss_curves(
                history,
                {
                    "-ELBO (nats/image)": ["train_neg_elbo", "val_neg_elbo"],
                    "reconstruction (nats)": ["val_recon"],
                    "KL (nats)": ["val_kl"],
                    "active latent units": ["val_active_units"],
                },
                f"{self.short_name} (latent {cfg.latent_dim}, {cfg.likelihood}) on {cfg.dataset}",
            ),
            figures.LOSS_CURVES,
        )
        device = module_device(model)
        with torch.inference_mode():
            x = test_x[:10].to(device)
            recon = model.decode(model.encode(x)[0])
            tracking.log_figure(
                figures.image_rows(
                    {"test": x, "reconstruction": recon}, f"{self.short_name} reconstructions (posterior mean)"
                ),
                figures.RECONSTRUCTIONS,
            )
            tracking.log_figure(
                figures.image_grid(model.sample(100, generator=gen), self.samples_title), figures.SAMPLES
            )
            # Interpolate between two test images of different classes (a folder's classes: its
            # sub-folders; with one class, between the first two images).
            labels = data.test.labels
            a, other = 0, (labels != labels[0]).nonzero()
            b = int(other[0]) if len(other) else min(1, len(labels) - 1)
            mu = model.encode(test_x[[a, b]].to(device))[0]
            t = torch.linspace(0, 1, 10, device=device)[:, None]
            path = model.decode((1 - t) * mu[0] + t * mu[1])
            between = f"a {int(labels[a])} to a {int(labels[b])}" if len(other) else "between two test images"
            tracking.log_figure(
                figures.image_rows({"": path}, f"Latent interpolation: {between}"), figures.INTERPOLATION
            )
        mu = latent_means(model, test_x[:5000])
        centred = mu - mu.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ v[:2].T
        tracking.log_figure(
            figures.latent_map(
                points,
                data.test.labels[: mu.shape[0]],
                ("PC 1", "PC 2"),
                "Test-set latent means (PCA), coloured by class",
            ),
            figures.LATENT_MAP,
        )
        prior = self.fitted_prior(model)
        if prior is not None:
            with torch.inference_mode():
                images = model.decode(
                    prior.sample(100, generator=torch.Generator().manual_seed(FIGURE_SEED)).to(device)
                )
            tracking.log_figure(
                figures.image_grid(
                    images,
                    f"100 samples, z ~ the {prior.components}-component mixture fitted to the training latents",
                ),
                figures.SAMPLES_FITTED_PRIOR,
            )

    def fitted_prior(self, model: ConvVAE):
        """The mixture over the training latents, served as sampler=fitted (see evaluate for FID):
        fitted once, by whichever asks first (the figures or the logged model); None with
        prior_components=0."""
        cfg = self.cfg
        if cfg.prior_components and self.prior is None:
            self.prior = latent_prior(model, self.data.train.images, cfg.binarize, cfg.prior_components, cfg.seed)
        return self.prior

    def served_with(self, model) -> dict:
        prior = self.fitted_prior(model)
        return {} if prior is None else {"prior": prior.state_dict()}


RECIPE = VAERecipe


def run_vae(
    cfg: VAEConfig,
    parent_run_id: str | None = None,
    data: DataSplits | None = None,
    epoch_hook: EpochHook | None = None,
) -> dict:
    """The `vae` entry point (see `training.pipeline.run_pipeline`)."""
    return run_pipeline(VAERecipe, cfg, parent_run_id, data, epoch_hook)
