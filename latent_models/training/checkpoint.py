"""What `fit` saves after each epoch and reads back to resume: one type for both directions,
so the file's layout is defined once.

The file is a `torch.save`d dict of plain values (tensors, numbers, lists, dicts), loadable
with `weights_only=True`. Files without `model_config`, `device` or `scaler` (written before
those were saved) still load, with the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass(kw_only=True)
class CheckpointState:
    """Everything needed to continue a fit bit for bit after `epoch` (0-based)."""

    epoch: int
    model: dict  # the model's state_dict
    model_config: dict | None = None  # the model's own config (models/config.py), when it has one
    optimizer: dict
    scheduler: dict
    generator: torch.Tensor  # the state of the generator that draws batches and noise
    torch_rng: torch.Tensor
    python_rng: tuple
    device: str = "cpu"  # where it was written: a CPU and a CUDA generator keep different states
    scaler: dict = field(default_factory=dict)  # fp16's gradient scaler ({} without one)
    best_epoch: int
    best_value: float
    best_score: float  # best_value signed so that higher is better
    best_state: dict  # the weights of best_epoch
    history: list[dict]  # each finished epoch's metrics

    def save(self, path: str | Path) -> Path:
        """torch.save to a temporary file in the same folder, then rename: never half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            torch.save(self.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CheckpointState":
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it would deep-copy every tensor.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, saved: dict) -> "CheckpointState":
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})

    def check_holds(self, model: nn.Module, path: str | Path) -> None:
        """Refuse to resume another model than the one saved (a file without its config passes)."""
        if self.model_config and self.model_config != model_config(model):
            raise ValueError(
                f"checkpoint {path} holds a different model ({self.model_config}) than "
                f"the one to resume ({model_config(model)})"
            )


def model_config(model: nn.Module) -> dict | None:
    """The model's own config (models/config.py), so a checkpoint says what it holds (nanoGPT's model_args)."""
    config = getattr(model, "config", None)
    return config.to_dict() if config is not None else None
