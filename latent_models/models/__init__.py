"""What every model shares, whatever its kind: its config (`config.py`: kind, image shape,
hyper-parameters) and its files (`files.py`: `config.json` beside `weights.pt`). The models
themselves live in their kind's folder (`latent_models.kinds`). Pure PyTorch: nothing here knows
about MLflow or training.

The configs are free of torch and load with this package (the CLI needs them for its options
and validation, and its `--help` must not pay for torch); the functions that build, save and
load models are imported on first use (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib

from latent_models.models.config import ModelConfig, config_from_dict

# What needs torch: name -> the module defining it, imported when the name is first used.
_TORCH_NAMES = {
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


__all__ = ["ModelConfig", "build_model", "config_from_dict", "load_model_files", "save_model_files"]
