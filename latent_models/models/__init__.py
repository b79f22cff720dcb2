"""Model definitions. Pure PyTorch: nothing here knows about MLflow or training.

Every model is built from its config (`model.config`) and saved as that config beside its
weights; `build_model`, `save_model_files` and `load_model_files` are the one path for all.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from latent_models.models.classifier import ClassifierConfig, DigitClassifier
from latent_models.models.config import ModelConfig, config_from_dict
from latent_models.models.denoiser import ConvAutoencoder, DenoiserConfig, UNetDenoiser, build_denoiser
from latent_models.models.vae import ConvVAE, VAEModelConfig

MODEL_CONFIGS = {c.kind: c for c in (DenoiserConfig, VAEModelConfig, ClassifierConfig)}
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"


def build_model(config: ModelConfig) -> nn.Module:
    if isinstance(config, DenoiserConfig):
        return build_denoiser(config)
    if isinstance(config, VAEModelConfig):
        return ConvVAE(config)
    if isinstance(config, ClassifierConfig):
        return DigitClassifier(config)
    raise TypeError(f"no model for {type(config).__name__}")


def save_model_files(model: nn.Module, folder: str | Path) -> dict[str, str]:
    """`config.json` and `weights.pt` (a state_dict, on the CPU) in `folder`: name -> path."""
    folder = Path(folder)
    paths = {"config": str(folder / CONFIG_FILE), "weights": str(folder / WEIGHTS_FILE)}
    Path(paths["config"]).write_text(json.dumps(model.config.to_dict(), indent=2))
    torch.save({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, paths["weights"])
    return paths


def load_model_files(
    config_path: str | Path, weights_path: str | Path, device: torch.device | str = "cpu"
) -> nn.Module:
    """The model `save_model_files` wrote, in eval mode on `device`, wherever it was trained."""
    model = build_model(config_from_dict(json.loads(Path(config_path).read_text())))
    model.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
    return model.to(device).eval()


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
