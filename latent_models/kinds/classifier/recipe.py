"""How the digit classifier behind FID and class entropy is trained: once per dataset,
registered, and found again in the registry next time (matched on the dataset digest and
size). Trained on first use as a child run of the evaluation that needed it (the VAE's
`evaluation.py`)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from latent_models import tracking
from latent_models.data import DataSplits
from latent_models.device import resolve_device
from latent_models.evaluation import report
from latent_models.evaluation.scores import batched
from latent_models.kinds.classifier import KIND
from latent_models.kinds.classifier.config import ClassifierConfig
from latent_models.kinds.classifier.model import DigitClassifier
from latent_models.serving.logged_model import model_saver
from latent_models.serving.pyfunc import load_torch_model
from latent_models.training.loop import Checkpointing, FitResult, Objective, Settings, fit, seed_everything


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (batched(model, images).argmax(1) == labels).double().mean().item()


def train_classifier(
    data: DataSplits, epochs: int, seed: int, device: torch.device | str = "cpu"
) -> tuple[DigitClassifier, FitResult, dict]:
    """A few epochs of AdamW + one-cycle; ~99.2% on MNIST after 3 (fp32, on `device`). Returns
    the model (best epoch on validation), the fit and the test accuracy."""
    generator = seed_everything(seed, device)
    model = DigitClassifier(ClassifierConfig(image_shape=data.image_shape)).to(device)
    images, labels = data.train.images.to(device), data.train.labels.to(device)

    # `fit` batches whatever tensor it is given: here the row indices, so labels come along.
    def loss_fn(m, idx, gen, progress, rows=slice(None)):
        idx = idx[rows]
        return F.cross_entropy(m(images[idx]), labels[idx]), {}

    objective = Objective(
        loss_fn, lambda m: {"val_accuracy": accuracy(m, data.val.images, data.val.labels)}, KIND.monitor, KIND.mode
    )
    result = fit(
        model,
        torch.arange(len(images)),
        objective,
        Settings(epochs=epochs, batch_size=128, lr=3e-3, weight_decay=1e-4),
        generator,
        Checkpointing(on_epoch=lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch)),
    )
    model.eval()
    return model, result, {"test_accuracy": accuracy(model, data.test.images, data.test.labels)}


def classifier_for(
    data: DataSplits, name: str, epochs: int, seed: int, parent_run_id: str, device: str = "cpu"
) -> tuple[DigitClassifier, dict]:
    """The registered classifier for exactly this data, or a new one trained and registered
    (in a child run of `parent_run_id`). Returns it and its registry facts."""
    tags = {"dataset_digest": data.digest, "train_images": str(len(data.train))}
    version = tracking.find_model_version(name, tags)
    if version is None:
        with tracking.training_run("", f"classifier-{data.name}", parent_run_id=parent_run_id):
            tracking.log_params({"dataset": data.name, "epochs": epochs, "seed": seed})
            datasets = tracking.log_dataset(data.name, data.root, data.digest, data.as_numpy())
            tracking.set_tags({"model_type": KIND.name, **tags})
            model, result, test = train_classifier(data, epochs, seed, resolve_device(device))
            tracking.log_metrics({"best_epoch": result.best_epoch})
            version = tracking.log_selected_model(
                KIND.name,
                model_saver(model, data.test.images[:2].numpy()),
                KIND.name,
                result.best_epoch,
                result.selected_validation_metrics(),
                datasets["val"],
                test,
                datasets["test"],
                name,
                description=report.model_description(
                    [f"A digit classifier trained on {data.name} ({len(data.train)} images) for {epochs} epochs."],
                    result.selected_validation_metrics(),
                    test,
                ),
                registered_model_description=report.registered_model_description(KIND.name, name),
            ).version
            tracking.tag_model_version(name, version, {**tags, "test_accuracy": round(test["test_accuracy"], 5)})
    model, _ = load_torch_model(f"models:/{name}/{version}", resolve_device(device))
    facts = tracking.model_version_tags(name, version)
    return model, {"classifier_version": int(version), "classifier_test_accuracy": float(facts["test_accuracy"])}
