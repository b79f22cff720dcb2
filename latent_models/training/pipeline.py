"""The one training pipeline every model runs, top to bottom:

validate -> device -> resume? -> data -> seed -> model from its config -> fit -> test ->
figures and report -> log the selected model -> tag and promote its version.

A `Recipe` supplies only what differs between models (pythae's split between the trainer
and the model): the loss, the validation metrics, the test metrics, the figures, what is
served beside the weights, and the registry's champion rule.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from latent_models import tracking
from latent_models.data import DataSplits, load_data
from latent_models.device import check as check_device
from latent_models.device import device_tags
from latent_models.evaluation import report
from latent_models.kinds.kind import Kind
from latent_models.models import build_model
from latent_models.options import with_logged_params
from latent_models.serving.logged_model import model_saver
from latent_models.tracking import check_resumable_data, checkpointing
from latent_models.training import distributed
from latent_models.training.loop import EpochHook, LossFn, Objective, Settings, fit, images_per_second, seed_everything


class Recipe:
    """One model kind's part of the pipeline (its folder's `recipe.py`); made once the data is
    loaded, before the model."""

    kind: Kind  # its name is the logged model's name, the `model_type` tag and the report's kind;
    # its first validation metric selects the epoch
    champion: tracking.ChampionRule

    def __init__(self, cfg, data: DataSplits):
        self.cfg, self.data = cfg, data

    def tags(self) -> dict:
        """Run tags beside `model_type` and the device's."""
        raise NotImplementedError

    def loss_fn(self) -> LossFn:
        raise NotImplementedError

    def validate(self, model: nn.Module) -> dict[str, float]:
        """`val_*` metrics of one epoch."""
        raise NotImplementedError

    def example(self) -> np.ndarray:
        """A few input images for the logged model's input example."""
        raise NotImplementedError

    def test(self, model: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
        """(the model's test metrics, metrics of the run alone: baselines, floors, timings)."""
        raise NotImplementedError

    def log_figures(self, model: nn.Module, history: list[dict]) -> None:
        raise NotImplementedError

    def served_with(self, model: nn.Module) -> dict:
        """What the logged model ships beside its weights and config: artifact name -> a state_dict
        (`model_saver`'s `extras`)."""
        return {}

    def version_tags(self, measured: dict[str, float]) -> dict:
        """Tags of the registered version, from the test metrics and the run's own."""
        raise NotImplementedError


def run_pipeline(
    recipe_class: type[Recipe],
    cfg,
    parent_run_id: str | None = None,
    data: DataSplits | None = None,
    epoch_hook: EpochHook | None = None,
) -> dict:
    """A training run of the recipe's kind: returns test metrics, the selected epoch's validation metrics, run
    id, model id and URI, registered version and promotion ({} on torchrun ranks other than
    0, which only train). `epoch_hook(epoch, metrics)` sees each finished epoch and may raise
    to stop."""
    device, precision = check_device(cfg.device, cfg.precision)
    rank = distributed.setup(device)
    kind = recipe_class.kind.name
    resumed = tracking.find_resumable_run(cfg.resume, cfg.experiment_name, kind) if cfg.resume else None
    if resumed:  # the run's own settings, not the command line's defaults
        cfg = with_logged_params(cfg, resumed.data.params)
    data = data or load_data(cfg)
    if resumed:
        check_resumable_data(resumed, data.digest)
    recipe = recipe_class(cfg, data)
    generator = seed_everything(cfg.seed, device)
    model = build_model(cfg.model_config(data.image_shape)).to(device)
    objective = Objective(recipe.loss_fn(), recipe.validate, recipe_class.kind.monitor, recipe_class.kind.mode)
    settings = Settings.of(cfg, precision)
    if rank != 0:  # a DDP worker: trains in step with rank 0, which logs, evaluates and registers
        fit(model, data.train_batches or data.train.images, objective, settings, generator)
        return {}

    tags = {"model_type": kind, **recipe.tags(), **device_tags(device, precision)}
    with tracking.pipeline_run(cfg, data, parent_run_id, resumed, tags) as (run, datasets):
        saver = lambda: model_saver(model, recipe.example())  # noqa: E731 (the weights as they are when called)
        checkpoints = tracking.checkpoint_models(kind, kind, saver, datasets["val"]) if cfg.log_checkpoints else None
        started = time.perf_counter()
        result = fit(
            model,
            data.train_batches or data.train.images,
            objective,
            settings,
            generator,
            checkpointing(run.info.run_id, cfg, resumed, checkpoints, epoch_hook),
        )
        train_seconds = time.perf_counter() - started
        model.eval()

        test, run_only = recipe.test(model)
        facts = {
            **run_only,
            "best_epoch": result.best_epoch,
            "train_seconds": train_seconds,
            "train_images_per_second": images_per_second(cfg.epochs, len(data.train), cfg.batch_size, train_seconds),
        }
        tracking.log_metrics(facts)  # the run's alone: MLflow links none of them to the model
        recipe.log_figures(model, result.history)
        summary = report.summary(kind, cfg, {**test, **facts})
        tracking.set_description("\n\n".join(summary))
        tracking.log_report(
            report.render(
                kind,
                cfg,
                {**test, **facts},
                result.history,
                tracking.logged_files("figures"),
                run.info.run_name,
                run.info.run_id,
            )
        )
        validation = result.selected_validation_metrics()
        ref = tracking.log_selected_model(
            kind,
            model_saver(model, recipe.example(), recipe.served_with(model)),
            kind,
            result.best_epoch,
            validation,
            datasets["val"],
            test,
            datasets["test"],
            cfg.registered_model_name if cfg.register else None,
            description=report.model_description(summary, validation, test),
            registered_model_description=report.registered_model_description(kind, cfg.registered_model_name),
        )
        if ref.version:
            tracking.tag_model_version(
                cfg.registered_model_name,
                ref.version,
                {**recipe.version_tags({**test, **run_only}), "run_id": run.info.run_id},
            )
        outcome = {
            "dataset": data.identity,  # what the champion rule compares (a folder: by its digest)
            **test,
            **facts,
            **validation,
            "run_id": run.info.run_id,
            "model_id": ref.model_id,
            "model_uri": ref.model_uri,
            "registered_version": ref.version,
            "promotion": None,
        }
        if ref.version:
            outcome["promotion"] = str(
                recipe.champion.promote(cfg.registered_model_name, ref.version, cfg, outcome, cfg.promote)
            )
        return outcome


def input_example(images: torch.Tensor) -> np.ndarray:
    """Two images in the layout users send: (N, H, W) for grey images, else (N, C, H, W)."""
    return (images[:2, 0] if images.shape[1] == 1 else images[:2]).numpy()
