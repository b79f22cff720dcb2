"""What the project knows of a model kind, declared once in its folder's `__init__.py`.

A kind's folder holds everything that makes a model that kind, one module per layer, each
imported only when needed (the declaration itself is free of torch and MLflow, so the CLI,
its `--help` and the configs load without them):

- `config.py`: the model's config (its hyper-parameters, declared once) and, for a kind an
  entry point trains, that entry point's config, derived from it (`options.model_options`);
- `model.py`: the `nn.Module`s, pure PyTorch; `build(config)` makes one;
- `recipe.py`: `RECIPE`, its part of the one training pipeline (loss, metrics, figures,
  champion rule and "doing nothing" floor), for a kind an entry point trains;
- `report.py`: the words of its run report and registry pages;
- `serving.py`: `PYFUNC`, the wrapper `mlflow models serve` runs, with its request params;
- `evaluation.py`: its part of `evaluate`, for a kind `evaluate` knows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Kind:
    name: str  # config.json's `kind`, the logged model's name, the runs' `model_type` tag
    model_config: type  # the model's config class (a models.config.ModelConfig)
    title: str  # what it is, in a few words: "the denoising autoencoder"
    entry_point: str = ""  # the MLproject entry point that trains it ("": trained by another, as the classifier)
    config: type | None = None  # that entry point's config
    # The validation metrics that may rank a sweep's children and a search's trials, and whether
    # higher is better; the first selects the epoch. Test metrics are reported, never chosen on.
    validation_metrics: dict[str, bool] = field(default_factory=dict)
    test_metric: str = ""  # reported for every child and trial beside the ranking metric
    evaluate_options: type | None = None  # `evaluate`'s options for this kind (None: evaluate does not know it)

    @property
    def package(self) -> str:
        return self.model_config.__module__.rsplit(".", 1)[0]

    @property
    def monitor(self) -> str:
        """The validation metric that selects the epoch (and by default ranks children)."""
        return next(iter(self.validation_metrics))

    @property
    def mode(self) -> str:
        return "max" if self.validation_metrics[self.monitor] else "min"

    def module(self, part: str) -> ModuleType:
        """One of the kind's modules (see above), imported now."""
        return importlib.import_module(f"{self.package}.{part}")

    def recipe(self):
        return self.module("recipe").RECIPE

    def pyfunc(self):
        return self.module("serving").PYFUNC

    def texts(self) -> ModuleType:
        return self.module("report")
