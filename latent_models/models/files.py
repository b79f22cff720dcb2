"""A model from its config, and to and from its files: `config.json` beside `weights.pt`.

`build_model`, `save_model_files` and `load_model_files` are the one path for every model
kind (logging, loading, serving and resuming all go through them); import them from
`latent_models.models`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from latent_models.models.config import ModelConfig, config_from_dict

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"


def build_model(config: ModelConfig) -> nn.Module:
    """The model of `config`'s kind (its folder's `model.build`), freshly initialised."""
    from latent_models.kinds import kind

    return kind(config.kind).module("model").build(config)


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
