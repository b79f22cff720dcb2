"""Model definitions. Pure PyTorch: nothing here knows about MLflow or training.

Every model is built from its config (`model.config`) and saved as that config beside its
weights; `build_model`, `save_model_files` and `load_model_files` (`files.py`) are the one
path for all.

The configs are free of torch and load with this package (the CLI needs them for its
options and validation, and its `--help` must not pay for torch); the models and the
functions that build, save and load them are imported on first use (PEP 562 `__getattr__`),
so `from latent_models.models import build_model` loads torch and nothing else changes.
"""

from __future__ import annotations

import importlib

from latent_models.models.classifier_config import ClassifierConfig
from latent_models.models.config import ModelConfig, config_from_dict
from latent_models.models.denoiser_config import DenoiserConfig
from latent_models.models.vae_config import VAEModelConfig

MODEL_CONFIGS = {c.kind: c for c in (DenoiserConfig, VAEModelConfig, ClassifierConfig)}

# What needs torch: name -> the module defining it, imported when the name is first used.
_TORCH_NAMES = {
    "ConvAutoencoder": "latent_models.models.denoiser",
    "UNetDenoiser": "latent_models.models.denoiser",
    "ConvVAE": "latent_models.models.vae",
    "DigitClassifier": "latent_models.models.classifier",
    "build_model": "latent_models.models.files",
    "save_model_files": "latent_models.models.files",
    "load_model_files": "latent_models.models.files",
}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        value = getattr(importlib.import_module(_TORCH_NAMES[name]), name)
        globals()[name] = value  # found here from now on, without this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_TORCH_NAMES})


__all__ = [
    "ClassifierConfig",
    "ConvAutoencoder",
    "ConvVAE",
    "DenoiserConfig",
    "DigitClassifier",
    "ModelConfig",
    "UNetDenoiser",
    "VAEModelConfig",
    "build_model",
    "config_from_dict",
    "load_model_files",
    "save_model_files",
]
