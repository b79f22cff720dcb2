"""The model kinds, one line each: the CLI, the MLproject checks, tuning, evaluate, the report
and serving loop over these and never branch on a kind's name (see `kind.py` for what a
kind's folder holds). Adding a kind: its folder, and its line here."""

from __future__ import annotations

from latent_models.kinds.classifier import KIND as CLASSIFIER
from latent_models.kinds.denoiser import KIND as DENOISER
from latent_models.kinds.kind import Kind
from latent_models.kinds.vae import KIND as VAE
from latent_models.kinds.vamp import KIND as VAMP

KINDS: dict[str, Kind] = {k.name: k for k in (DENOISER, VAE, VAMP, CLASSIFIER)}


def kind(name: str) -> Kind:
    """The kind called `name` (a model's config.json `kind`, a run's `model_type`)."""
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; expected one of {', '.join(KINDS)}")
    return KINDS[name]


def trained() -> dict[str, Kind]:
    """entry point -> the kind it trains, for the kinds an entry point trains."""
    return {k.entry_point: k for k in KINDS.values() if k.entry_point}


def trained_by(entry_point: str) -> Kind:
    return trained()[entry_point]
