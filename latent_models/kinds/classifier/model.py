"""A small CNN digit classifier: the feature space for sample-quality metrics.

FID on MNIST is meaningless in Inception features (trained on photos); a classifier
trained on the dataset itself sees what makes a digit a digit. `features` is the
128-unit penultimate layer.
"""

from __future__ import annotations

import torch
from torch import nn

from latent_models.kinds.classifier.config import ClassifierConfig


class DigitClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w, (c, h, wd), feature_dim = config.width, config.image_shape, config.feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(2 * w * (h // 4) * (wd // 4), feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, config.classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.body(x))


def build(config: ClassifierConfig) -> DigitClassifier:
    return DigitClassifier(config)
