"""The words of the classifier's registry page (it has no run report of its own)."""

from __future__ import annotations

TITLE = "Digit classifier"
METRIC_MEANINGS: dict[str, str] = {}
FIGURE_CAPTIONS: dict[str, str] = {}
EXPLANATIONS: list = []

REGISTERED_MODEL_DESCRIPTION = (
    "A small convolutional digit classifier, trained by `evaluate` on first use: its features give the "
    "FID and class entropy of a VAE's samples. It returns class probabilities (N, classes). "
    "Docs: docs/evaluate-sweep-search.md in the latent-models repository."
)
