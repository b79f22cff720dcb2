"""The digit classifier whose features give a VAE's samples their FID: trained by `evaluate` on
first use, registered, and served like any model (see `kind.py` for the folder)."""

from latent_models.kinds.classifier.config import ClassifierConfig
from latent_models.kinds.kind import Kind

KIND = Kind(
    name="classifier",
    title="the digit classifier",
    model_config=ClassifierConfig,
    validation_metrics={"val_accuracy": True},
)
