"""The digit classifier's config (the model itself: `model.py`); free of torch, like every
model's config, so the kinds load without it. No entry point trains it: `evaluate` does, on
first use (`recipe.py`)."""

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
