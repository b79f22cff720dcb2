"""The pyfunc models: wrappers, their input/output handling, and `log_model`.

Models are logged "from code" (MLflow 3's models-from-code): MLflow stores the small
scripts in `pyfunc_code/` and this package (via `code_paths`), the weights as a
`state_dict` file and the architecture as JSON. Nothing is pickled; loading runs
`torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from latent_models.models import ConvVAE, build_denoiser

# Our wrappers validate inputs themselves and carry explicit TensorSpec signatures.
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGE_SHAPE = (28, 28)
MAX_BATCH = 1024
VAE_MODES = ("reconstruct", "sample", "decode")


class InvalidInput(MlflowException):
    """A request the caller can fix; MLflow's server answers it with HTTP 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def to_model_input(images) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(N, 28, 28), (N, 1, 28, 28) or (N, 784) floats in [0, 1] -> (N, 1, 28, 28) float32.

    Returns the tensor and the caller's layout, so answers come back in the same shape.
    """
    if hasattr(images, "to_numpy"):  # a DataFrame with one column per pixel
        images = images.to_numpy()
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"images must be numbers in [0, 1]: {exc}") from None
    shape = array.shape
    if array.ndim == 0 or shape[0] == 0:
        raise InvalidInput("empty batch: send at least one image")
    if shape[0] > MAX_BATCH:
        raise InvalidInput(f"batch of {shape[0]} images is over the limit of {MAX_BATCH}")
    if shape[1:] == IMAGE_SHAPE:
        tensor = torch.from_numpy(array).unsqueeze(1)
    elif shape[1:] == (1, *IMAGE_SHAPE):
        tensor = torch.from_numpy(array)
    elif shape[1:] == (IMAGE_SHAPE[0] * IMAGE_SHAPE[1],):
        tensor = torch.from_numpy(array).view(-1, 1, *IMAGE_SHAPE)
    else:
        raise InvalidInput(
            f"images have shape {shape}; expected (N, 28, 28), (N, 1, 28, 28) or (N, 784)"
        )
    if not np.isfinite(array).all():
        raise InvalidInput("images contain NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise InvalidInput(f"pixel values must lie in [0, 1]; got min {low:g}, max {high:g}")
    return tensor.contiguous(), shape


def from_model_output(images: torch.Tensor, layout: tuple[int, ...]) -> np.ndarray:
    return images.detach().cpu().numpy().astype(np.float32).reshape((images.shape[0], *layout[1:]))


def _load_weights(context, model: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _read_config(context) -> dict:
    return json.loads(Path(context.artifacts["config"]).read_text())


class DenoiserPyfunc(mlflow.pyfunc.PythonModel):
    """Noisy images in, denoised images out, in the caller's layout."""

    def load_context(self, context):
        cfg = _read_config(context)
        self.model = _load_weights(context, build_denoiser(cfg["arch"], cfg["latent_dim"], cfg["width"]))

    def predict(self, context, model_input, params=None):
        x, layout = to_model_input(model_input)
        with torch.inference_mode():
            return from_model_output(self.model(x), layout)


class VAEPyfunc(mlflow.pyfunc.PythonModel):
    """mode=reconstruct: images -> reconstructions; mode=sample: draw `n` new images
    (seed, temperature); mode=decode: latent vectors (N, latent_dim) -> images."""

    def load_context(self, context):
        cfg = _read_config(context)
        self.model = _load_weights(
            context, ConvVAE(latent_dim=cfg["latent_dim"], width=cfg["width"], likelihood=cfg["likelihood"])
        )

    def predict(self, context, model_input, params=None):
        params = {**vae_default_params(), **(params or {})}
        mode = params["mode"]
        if mode not in VAE_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(VAE_MODES)}; got {mode!r}")
        with torch.inference_mode():
            if mode == "reconstruct":
                x, layout = to_model_input(model_input)
                mu, _ = self.model.encode(x)
                return from_model_output(self.model.decode(mu), layout)
            if mode == "decode":
                z = self._latents(model_input)
                return from_model_output(self.model.decode(z), (0, *IMAGE_SHAPE))
            n, seed, temperature = int(params["n"]), int(params["seed"]), float(params["temperature"])
            if not 1 <= n <= MAX_BATCH:
                raise InvalidInput(f"n must be between 1 and {MAX_BATCH}; got {n}")
            if not temperature > 0:
                raise InvalidInput(f"temperature must be > 0; got {temperature}")
            gen = torch.Generator().manual_seed(seed) if seed >= 0 else None
            return from_model_output(self.model.sample(n, temperature, gen), (0, *IMAGE_SHAPE))

    def _latents(self, model_input) -> torch.Tensor:
        if hasattr(model_input, "to_numpy"):
            model_input = model_input.to_numpy()
        try:
            z = np.asarray(model_input, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"latents must be numbers: {exc}") from None
        d = self.model.latent_dim
        if z.ndim != 2 or z.shape[1] != d or z.shape[0] == 0:
            raise InvalidInput(f"latents have shape {z.shape}; expected (N, {d}) with N >= 1")
        if not np.isfinite(z).all():
            raise InvalidInput("latents contain NaN or infinite values")
        return torch.from_numpy(z)


def vae_default_params() -> dict:
    return {"mode": "reconstruct", "n": 16, "seed": -1, "temperature": 1.0}


def _image_signature(params: ParamSchema | None = None) -> ModelSignature:
    spec = TensorSpec(np.dtype(np.float32), (-1, *IMAGE_SHAPE))
    return ModelSignature(inputs=Schema([spec]), outputs=Schema([spec]), params=params)


def _pip_requirements() -> list[str]:
    import torchvision

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        "numpy",
    ]


def _log(kind: str, state_dict: dict, config: dict, signature, input_example, registered_model_name):
    with tempfile.TemporaryDirectory() as tmp:
        weights, cfg_file = Path(tmp) / "weights.pt", Path(tmp) / "config.json"
        torch.save(state_dict, weights)
        cfg_file.write_text(json.dumps(config, indent=2))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PACKAGE_DIR / "pyfunc_code" / f"{kind}.py"),
            artifacts={"weights": str(weights), "config": str(cfg_file)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=input_example,
            pip_requirements=_pip_requirements(),
            registered_model_name=registered_model_name or None,
        )


def log_denoiser(model, arch: str, latent_dim: int, width: int, example: np.ndarray,
                 registered_model_name: str | None = None):
    """Log (and optionally register) the denoiser; `example` is (N, 28, 28) float32 noisy images."""
    config = {"kind": "denoiser", "arch": arch, "latent_dim": latent_dim, "width": width}
    return _log("denoiser", model.state_dict(), config, _image_signature(), example, registered_model_name)


def log_vae(model, width: int, example: np.ndarray, registered_model_name: str | None = None):
    config = {"kind": "vae", "latent_dim": model.latent_dim, "width": width, "likelihood": model.likelihood}
    defaults = vae_default_params()
    params = ParamSchema([
        ParamSpec("mode", "string", defaults["mode"]),
        ParamSpec("n", "long", defaults["n"]),
        ParamSpec("seed", "long", defaults["seed"]),
        ParamSpec("temperature", "double", defaults["temperature"]),
    ])
    return _log("vae", model.state_dict(), config, _image_signature(params), example, registered_model_name)
