"""What every model carries: its kind, its hyper-parameters and the image shape it takes.

A model's config travels with its weights (`config.json` beside `weights.pt`, as in
pythae; `model_args` in nanoGPT's checkpoints), so logging, loading, serving and resuming
rebuild any model the same way: `build_model(config_from_dict(json))`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import ClassVar

from latent_models.errors import ConfigError

# (channels, height, width) of MNIST-style images; a config made without a shape takes it.
MNIST_SHAPE = (1, 28, 28)
# Written into config.json by versions before the configs lived here; not the model's own.
LEGACY_KEYS = ("prior_components",)


def check_image_size(model: type[ModelConfig], *sides: int) -> None:
    """The sides a model's design takes: two stride-2 stages (so multiples of 4, at least 4),
    up to its `max_side` (its dense layers grow with the area)."""
    for side in sides:
        if side % 4 or not 4 <= side <= model.max_side:
            raise ConfigError(
                f"image_size {side} does not fit the {model.kind} model: it takes multiples of 4 from 4 to "
                f"{model.max_side} (e.g. {max(4, min(model.max_side, side - side % 4))})"
            )


@dataclass(frozen=True)
class ModelConfig:
    kind: ClassVar[str]
    max_side: ClassVar[int]  # the largest height or width (see check_image_size)
    image_shape: tuple[int, int, int] = MNIST_SHAPE  # (channels, height, width)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))
        channels, height, width = self.image_shape
        if channels not in (1, 3):
            raise ConfigError(f"image shape {self.image_shape} not supported: 1 or 3 channels")
        check_image_size(type(self), height, width)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


def config_from_dict(values: dict) -> ModelConfig:
    """A logged `config.json` back into its config; keys an older version did not write
    take their defaults (e.g. `image_shape`), keys this version does not know are refused."""
    from latent_models.kinds import KINDS

    values = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    kind = values.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    cls = KINDS[kind].model_config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{kind} config has unknown fields {unknown}; it was written by a newer version")
    hints = typing.get_type_hints(cls)
    return cls(**{k: tuple(v) if hints[k] == tuple[int, int, int] else v for k, v in values.items()})


def hyper_parameter(default, help: str):
    """A model config's field with the help text its entry point's option shows."""
    return dataclasses.field(default=default, metadata={"help": help})
