"""The `evaluate` entry point: one new run that says how good a logged model is, against
things a user can compare it with. Read top to bottom; what is measured is the model's kind's
(its folder's `evaluation.py`): a denoiser against classical baselines at every noise model
and level, a VAE's likelihood and sample quality.
"""

from __future__ import annotations

import dataclasses

from mlflow.exceptions import MlflowException

from latent_models import tracking
from latent_models.config import EvaluateConfig
from latent_models.data import load_data
from latent_models.device import device_tags, module_device, resolve_device
from latent_models.errors import ConfigError
from latent_models.kinds import KINDS
from latent_models.options import as_params
from latent_models.serving.pyfunc import load_torch_model

# The kinds evaluate knows: those whose folder has an evaluation.py.
EVALUATED = tuple(name for name, k in KINDS.items() if k.evaluate_options)


def run_evaluate(cfg: EvaluateConfig) -> dict:
    source, model_id = tracking.logged_model_run(cfg.model_uri)
    trained = source.data.params if source else {}
    try:
        model, wrapper = load_torch_model(cfg.model_uri, resolve_device(cfg.device))
    except (MlflowException, AttributeError, ImportError) as exc:
        raise ConfigError(f"{cfg.model_uri} is not a latent-models {' or '.join(EVALUATED)} ({exc})") from None
    # By its kind, not its class: a version whose packaged code differs from this process's
    # runs its own copy of the wrapper classes (serving.isolation).
    if getattr(wrapper, "kind", None) not in EVALUATED:
        raise ConfigError(
            f"{cfg.model_uri} is a {type(wrapper).__name__}, not a latent-models {' or '.join(EVALUATED)}"
        )
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
    kinds_part = KINDS[kind].module("evaluation")

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
        result = kinds_part.evaluate(cfg, model, wrapper, data, trained, run.info.run_id)
        _log_results(kinds_part.model_metrics(result, cfg), result, model_id, data)
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


def _log_results(model_metrics: list[tuple[int, list[str]]], result: dict, model_id: str | None, data) -> None:
    """The model's own metrics go to the run and to the evaluated logged model, each on the
    test images it used (so the model's page, and its registered version's, list them per
    dataset); the baselines', the classifier's and the references' go to the run alone."""
    test_images, test_labels = data.test.images.numpy(), data.test.labels.numpy()
    run_only = {k: v for k, v in result.items() if isinstance(v, float)}
    for first, keys in model_metrics:
        linked = {k: run_only.pop(k) for k in keys if k in run_only}
        if model_id and linked:
            dataset = tracking.split_dataset(data.name, data.root, data.digest, "test", test_images, test_labels, first)
            tracking.log_dataset_input(dataset, "evaluation")
            tracking.link_metrics(model_id, linked, dataset)
        else:
            run_only.update(linked)
    tracking.log_metrics(run_only)
