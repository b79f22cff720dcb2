"""The digit classifier's config (the model itself: `classifier.py`); free of torch, like
every model's config, so that `models.MODEL_CONFIGS` loads without it."""

from __future__ import annotations

from dataclasses import dataclass

from latent_models.models.config import ModelConfig


@dataclass(frozen=True)
class ClassifierConfig(ModelConfig):
    kind = "classifier"
    max_side = 256
    classes: int = 10
    width: int = 32
    feature_dim: int = 128
