"""Train, evaluate, log and register the VAE. Read top to bottom."""

from __future__ import annotations

import time

import torch

from latent_models import tracking
from latent_models.training import distributed
from latent_models.evaluation import figures
from latent_models.evaluation import report
from latent_models.config import VAEConfig, with_logged_params
from latent_models.data import DataSplits, load_splits
from latent_models.device import check as check_device, device_tags, module_device
from latent_models.evaluation.scores import evaluate_vae, importance_weighted_nll, latent_means, mean_image_nll
from latent_models.models import ConvVAE, build_model
from latent_models.models.prior import check_components, fit_gaussian_mixture
from latent_models.serving.logged_model import model_saver
from latent_models.tracking import check_resumable_data, checkpointing
from latent_models.training.loop import EpochHook, fit, images_per_second, seed_everything

VAL_SEED, TEST_SEED, FIGURE_SEED = 1_000_001, 2_000_002, 3_000_003
# Champion: lower validation -ELBO on the same dataset, likelihood and binarization, and below
# that of independent pixels around the training mean.
CHAMPION = tracking.ChampionRule("val_neg_elbo", False, ("dataset", "likelihood", "binarize"),
                                 "val_neg_elbo_mean_image", "the mean-image model's val_neg_elbo")


def binarized(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed Bernoulli draw of the intensities: the binarized-MNIST evaluation set."""
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))


def kl_weight(beta: float, warmup_epochs: float, progress: float) -> float:
    """Linear warm-up from 0 to beta over `warmup_epochs` (progress counts epochs)."""
    return beta if warmup_epochs <= 0 else beta * min(1.0, progress / warmup_epochs)


def latent_prior(model: ConvVAE, train_images: torch.Tensor, binarize: bool, components: int, seed: int):
    """The Gaussian mixture on the training-set latent means (of the binarized digits for a
    binarize=true model): the `fitted` sampler, in training and in evaluate alike."""
    check_components(components, len(train_images))
    train_x = binarized(train_images, VAL_SEED) if binarize else train_images
    return fit_gaussian_mixture(latent_means(model, train_x), components, seed)


def held_out_likelihood(model: ConvVAE, test_x: torch.Tensor, iw_samples: int, iw_images: int) -> tuple[dict, float]:
    """The test -ELBO terms and the IW-NLL on the first `iw_images` (0: all), in training and
    in evaluate alike; also the seconds the IW-NLL took."""
    test = {f"test_{k}": v for k, v in evaluate_vae(model, test_x, TEST_SEED).items()}
    iw_x = test_x[:iw_images] if iw_images else test_x
    started = time.perf_counter()
    test["test_iw_nll"], test["test_iw_nll_stderr"] = importance_weighted_nll(model, iw_x, iw_samples, TEST_SEED)
    return test, time.perf_counter() - started


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


def run_vae(cfg: VAEConfig, parent_run_id: str | None = None, data: DataSplits | None = None,
           epoch_hook: EpochHook | None = None) -> dict:
    """The `vae` entry point: returns test metrics, run id and registered version ({} on
    torchrun ranks other than 0, which only train). The selected epoch's validation metrics come
    back too; `epoch_hook(epoch, metrics)` sees each finished epoch and may raise to stop."""
    device, precision = check_device(cfg.device, cfg.precision)
    rank = distributed.setup(device)
    resumed = tracking.find_resumable_run(cfg.resume, cfg.experiment_name, "vae") if cfg.resume else None
    if resumed:  # the run's own settings, not the command line's defaults
        cfg = with_logged_params(cfg, resumed.data.params)
    data = data or load_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.download,
                               cfg.limit_train, cfg.limit_test)
    if resumed:
        check_resumable_data(resumed, data.digest)
    if cfg.prior_components:  # found now, not after training
        check_components(cfg.prior_components, len(data.train), "prior_components")
    generator = seed_everything(cfg.seed, device)
    model = build_model(cfg.model_config(data.image_shape)).to(device)
    val_x = binarized(data.val.images, VAL_SEED) if cfg.binarize else data.val.images
    test_x = binarized(data.test.images, TEST_SEED) if cfg.binarize else data.test.images
    # Doing nothing: independent pixels around the training mean. The floor for champion.
    val_floor = mean_image_nll(data.train.images, val_x, cfg.likelihood)

    def evaluate(m):
        return {f"val_{k}": v for k, v in evaluate_vae(m, val_x, VAL_SEED).items()}

    training = dict(
        loss_fn=elbo_loss(cfg), evaluate_fn=evaluate, monitor="val_neg_elbo", mode="min",
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, adam_beta2=cfg.adam_beta2,
        schedule=cfg.schedule, generator=generator, precision=precision, compile=cfg.compile,
    )
    if rank != 0:  # a DDP worker: trains in step with rank 0, which logs, evaluates and registers
        fit(model, data.train.images, **training)
        return {}

    tags = {"model_type": "vae", "likelihood": cfg.likelihood, "binarize": cfg.binarize, **device_tags(device, precision)}
    with tracking.pipeline_run(cfg, data, parent_run_id, resumed, tags) as (run, datasets):
        example = data.test.images[:2].numpy()
        checkpoints = (tracking.checkpoint_models("vae", "vae", lambda: model_saver(model, example),
                                                  datasets["val"]) if cfg.log_checkpoints else None)
        started = time.perf_counter()
        result = fit(model, data.train.images, **training,
                     **checkpointing(run.info.run_id, cfg, resumed, checkpoints, epoch_hook))
        train_seconds = time.perf_counter() - started
        model.eval()

        test, iw_seconds = held_out_likelihood(model, test_x, cfg.iw_samples, cfg.iw_images)
        facts = {
            "iw_nll_seconds": iw_seconds,
            "best_epoch": result.best_epoch,
            "train_seconds": train_seconds,
            "train_images_per_second": images_per_second(cfg.epochs, len(data.train), cfg.batch_size, train_seconds),
            "val_neg_elbo_mean_image": val_floor,
        }
        tracking.log_metrics(facts)
        _log_figures(cfg, data, model, result.history, test_x)

        # The mixture over the training latents: served as sampler=fitted (see evaluate for FID).
        prior = (latent_prior(model, data.train.images, cfg.binarize, cfg.prior_components, cfg.seed)
                 if cfg.prior_components else None)
        _log_prior_samples(model, prior)
        tracking.set_description("\n\n".join(report.summary("vae", cfg, test)))
        tracking.log_report(report.render("vae", cfg, {**test, **facts}, result.history,
                                          tracking.logged_files("figures"), run.info.run_name, run.info.run_id))
        ref = tracking.log_selected_model(
            "vae", model_saver(model, example, prior), "vae", result.best_epoch,
            result.selected_validation_metrics(), datasets["val"], test, datasets["test"],
            cfg.registered_model_name if cfg.register else None)
        if ref.version:
            tracking.tag_model_version(cfg.registered_model_name, ref.version, {
                "dataset": cfg.dataset, "latent_dim": cfg.latent_dim, "likelihood": cfg.likelihood,
                "binarize": cfg.binarize, "test_neg_elbo": round(test["test_neg_elbo"], 3),
                "test_iw_nll": round(test["test_iw_nll"], 3), "test_kl": round(test["test_kl"], 3),
                "run_id": run.info.run_id,
            })
        outcome = {**test, **facts, **result.selected_validation_metrics(), "run_id": run.info.run_id,
                   "model_id": ref.model_id, "model_uri": ref.model_uri, "registered_version": ref.version, "promotion": None}
        if ref.version:
            outcome["promotion"] = str(CHAMPION.promote(cfg.registered_model_name, ref.version, cfg, outcome,
                                                        cfg.promote))
        return outcome


def _log_figures(cfg: VAEConfig, data: DataSplits, model: ConvVAE, history, test_x) -> None:
    gen = torch.Generator().manual_seed(FIGURE_SEED)
    tracking.log_figure(
        figures.loss_curves(history, {
            "-ELBO (nats/image)": ["train_neg_elbo", "val_neg_elbo"],
            "reconstruction (nats)": ["val_recon"],
            "KL (nats)": ["val_kl"],
            "active latent units": ["val_active_units"],
        }, f"VAE (latent {cfg.latent_dim}, {cfg.likelihood}) on {cfg.dataset}"),
        "figures/loss_curves.png",
    )
    device = module_device(model)
    with torch.inference_mode():
        x = test_x[:10].to(device)
        recon = model.decode(model.encode(x)[0])
        tracking.log_figure(figures.image_rows({"test": x, "reconstruction": recon}, "VAE reconstructions (posterior mean)"),
                            "figures/reconstructions.png")
        tracking.log_figure(figures.image_grid(model.sample(100, generator=gen), "100 samples, z ~ N(0, I)"),
                            "figures/samples.png")
        # Interpolate between two test digits of different classes.
        labels = data.test.labels
        a = 0
        b = int((labels != labels[a]).nonzero()[0])
        mu = model.encode(test_x[[a, b]].to(device))[0]
        t = torch.linspace(0, 1, 10, device=device)[:, None]
        path = model.decode((1 - t) * mu[0] + t * mu[1])
        tracking.log_figure(
            figures.image_rows({"": path}, f"Latent interpolation: a {int(labels[a])} to a {int(labels[b])}"),
            "figures/interpolation.png",
        )
    mu = latent_means(model, test_x[:5000])
    centred = mu - mu.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ v[:2].T
    tracking.log_figure(
        figures.latent_map(points, data.test.labels[: mu.shape[0]], ("PC 1", "PC 2"),
                           "Test-set latent means (PCA), coloured by class"),
        "figures/latent_map.png",
    )


def _log_prior_samples(model: ConvVAE, prior) -> None:
    if prior is None:
        return
    with torch.inference_mode():
        images = model.decode(prior.sample(100, generator=torch.Generator().manual_seed(FIGURE_SEED))
                              .to(module_device(model)))
    tracking.log_figure(figures.image_grid(images, f"100 samples, z ~ the {prior.components}-component mixture "
                                                   "fitted to the training latents"),
                        "figures/samples_fitted_prior.png")
