"""What a logged model's folder holds, and how training writes it (models-from-code).

MLflow stores a small entry script (`ENTRY_SCRIPT`) and this package (via `code_paths`), the
model's `config.json` and `weights.pt` (a state_dict; loading runs
`torch.load(..., weights_only=True)`), and any state its kind serves beside them (a VAE's fitted
prior). The wrapper is the kind's (its folder's `serving.py`). Nothing is pickled.
One function, `model_saver`, does this for every model, driven by the model's own config.
The folder is then sealed (`latent_models_seal.seal_folder`): a SHA-256 manifest of its files in
the MLmodel, and a loader that checks them before any of the model's code runs
(docs/write-once.md).

MLflow enforces a TensorSpec input schema (exact number of dimensions) before `predict`
runs, so one schema cannot admit the accepted forms, and the answer takes the question's
form: the denoiser and the VAE are logged with a params schema and no input schema, and
`predict` checks every input itself (`serving.inputs`). The classifier's answers are always
(N, classes) probabilities, so it has an output schema.

The denoiser's and the VAE's output schema is one string column `image` (the base64-PNG
form). MLflow does not enforce an output schema on answers (REST answers are as before: the
question's form); `mlflow.pyfunc.spark_udf` reads it as its default result type, and a
(-1, 28, 28) tensor spec there is refused ("Only 1D or 2D tensors are supported"). So a
Spark column of base64 PNGs scores with no `result_type`; a column of flattened floats
(N, C*H*W) with `result_type="array<float>"` (see docs/serving.md, Batch scoring).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import torch
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import ParamSchema, ParamSpec

from latent_models.kinds import KINDS
from latent_models.models import save_model_files
from latent_models_seal import seal_folder

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_PARAM_TYPES = {bool: "boolean", int: "long", float: "double", str: "string"}

# The models-from-code entry of every logged model, written per kind: MLflow runs it to build the
# wrapper. In the model's folder it builds it from the package the model shipped, even where
# another `latent_models` is already imported (see serving.isolation); when a model is being
# logged, from this checkout.
ENTRY_SCRIPT = '''"""Models-from-code entry of a latent-models {kind} (see latent_models.serving.isolation)."""

import runpy
from pathlib import Path

import mlflow

shipped = Path(__file__).resolve().parent / "code" / "latent_models" / "serving" / "isolation.py"
if shipped.is_file():
    own_model = runpy.run_path(str(shipped))["own_model"]
else:
    from latent_models.serving.isolation import own_model

mlflow.models.set_model(own_model(__file__, "{module}", "{wrapper}"))
'''

# A model's folder: `save(path, mlflow_model)` writes it (tracking.log_model logs it).
SaveModel = Callable[[str, Model], None]


def _pip_requirements(wrapper, config) -> list[str]:
    import PIL
    import torchvision

    return [
        *wrapper.requirements(config),
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"pillow=={PIL.__version__}",
        "numpy",
        "pandas",
    ]


def _signature(wrapper, config) -> ModelSignature:
    defaults = wrapper.DEFAULT_PARAMS
    params = ParamSchema([ParamSpec(k, _PARAM_TYPES[type(v)], v) for k, v in defaults.items()]) if defaults else None
    return ModelSignature(inputs=None, outputs=wrapper.output_schema(config), params=params)


def model_saver(
    model: torch.nn.Module,
    example: np.ndarray,
    extras: dict[str, dict] | None = None,
    settings: dict | None = None,
) -> SaveModel:
    """Any model as a pyfunc model of its kind, from its config: `example` is a few input images;
    `extras`: artifact name -> a state_dict served beside the weights (the VAE's fitted prior);
    `settings`: over its kind's SETTINGS (the denoiser's `max_pixels`), logged as MLflow's
    `model_config` and in its metadata. The weights are copied now: later training steps do
    not change what is saved."""
    config = model.config
    kind = config.kind
    wrapper = KINDS[kind].pyfunc()
    settings = wrapper.logged_settings(settings)
    with tempfile.TemporaryDirectory() as tmp:  # the weights as they are now, on the CPU
        files = save_model_files(model, tmp)
        config_text, state = Path(files["config"]).read_bytes(), torch.load(files["weights"], weights_only=True)
    extras = dict(extras or {})

    def save(path: str, mlflow_model: Model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = {"config": str(Path(tmp) / "config.json"), "weights": str(Path(tmp) / "weights.pt")}
            Path(artifacts["config"]).write_bytes(config_text)
            torch.save(state, artifacts["weights"])
            entry = Path(tmp) / f"{kind}.py"
            entry.write_text(ENTRY_SCRIPT.format(kind=kind, module=wrapper.__module__, wrapper=wrapper.__name__))
            for name, extra in extras.items():
                artifacts[name] = str(Path(tmp) / f"{name}.pt")
                torch.save(extra, artifacts[name])
            mlflow.pyfunc.save_model(
                path,
                python_model=str(entry),
                artifacts=artifacts,
                code_paths=[str(PACKAGE_DIR)],
                signature=_signature(wrapper, config),
                input_example=example,
                pip_requirements=_pip_requirements(wrapper, config),
                metadata=wrapper.metadata(config, set(extras), settings),
                model_config=settings or None,
                mlflow_model=mlflow_model,
            )
        seal_folder(path)  # the manifest, and the loader that checks it first (docs/write-once.md)

    return save
