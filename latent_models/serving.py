"""The pyfunc models: wrappers, their input/output handling, and `log_model`.

Models are logged "from code" (MLflow 3's models-from-code): MLflow stores the small
scripts in `pyfunc_code/` and this package (via `code_paths`), the weights as a
`state_dict` file and the architecture as JSON. Nothing is pickled; loading runs
`torch.load(..., weights_only=True)`.

Input forms (both models; the answer comes back in the form it came in):

- a float tensor (N, 28, 28), (N, 1, 28, 28) or (N, 784) with values in [0, 1] -- over
  REST `{"inputs": [...]}` or `{"instances": [...]}`;
- a column `image` of base64 PNGs (8-bit grayscale, 28x28) -- over REST
  `{"dataframe_split": {"columns": ["image"], "data": [["iVBOR..."]]}}` (or
  `dataframe_records`, or `{"inputs": {"image": [...]}}`); answered with a column `image`
  of base64 PNGs. Parsing a JSON float costs MLflow's server far more than a PNG.

MLflow enforces a TensorSpec input schema (exact number of dimensions) before `predict`
runs, so one schema cannot admit these forms, and the answer takes the question's form: the
models are logged with a params schema and no input or output schema, and `predict` checks
every input itself, answering a bad one with `InvalidInput` (HTTP 400) that names the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from latent_models.device import module_device, serving_device
from latent_models.models import ConvVAE, build_denoiser
from latent_models.models.classifier import DigitClassifier
from latent_models.models.prior import GaussianMixturePrior


PACKAGE_DIR = Path(__file__).resolve().parent
IMAGE_SHAPE = (28, 28)
MAX_BATCH = 1024  # images per request (sum of `n` when sampling), and latents per request
VAE_MODES = ("reconstruct", "sample", "decode")
SAMPLERS = ("normal", "fitted")  # z ~ N(0, I), or the mixture fitted to the training latents
IMAGE_COLUMN = "image"
SAMPLE_FIELDS = ("n", "seed", "temperature")
PNG = "png"  # the layout marker of the base64-PNG form
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FLOAT_LAYOUTS = "(N, 28, 28), (N, 1, 28, 28) or (N, 784)"
_PIL_MODES = {
    "1": "1-bit black and white",
    "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I": "32-bit integer grayscale",
    "F": "32-bit float grayscale",
    "LA": "grayscale with alpha (2 channels)",
    "P": "palette (indexed colour)",
    "RGB": "RGB (3 channels)",
    "RGBA": "RGBA (4 channels)",
}


class InvalidInput(MlflowException):
    """A request the caller can fix; MLflow's server answers it with HTTP 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


# --- images in -------------------------------------------------------------------------


def to_model_input(images, clip: bool = False) -> tuple[torch.Tensor, tuple[int, ...] | str]:
    """Any accepted image form -> ((N, 1, 28, 28) float32 in [0, 1], the caller's layout).

    The layout is the input's shape for float tensors, or `PNG` for base64 PNGs, so that
    `from_model_output` answers in the same form. `clip=True` clips float values into
    [0, 1] instead of rejecting them (NaN and infinity are rejected either way).
    """
    pngs = _png_column(images)
    if pngs is not None:
        return _decode_pngs(pngs), PNG
    if isinstance(images, pd.DataFrame):  # one column per pixel
        images = images.to_numpy()
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"images must be numbers in [0, 1]: {exc}") from None
    shape = array.shape
    _check_count(0 if array.ndim == 0 else shape[0], "images")
    if shape[1:] == IMAGE_SHAPE:
        array = array[:, None]
    elif shape[1:] == (IMAGE_SHAPE[0] * IMAGE_SHAPE[1],):
        array = array.reshape(-1, 1, *IMAGE_SHAPE)
    elif shape[1:] != (1, *IMAGE_SHAPE):
        raise InvalidInput(f"images have shape {shape}; expected {_FLOAT_LAYOUTS}")
    if not np.isfinite(array).all():
        raise InvalidInput("images contain NaN or infinite values")
    if clip:
        array = np.clip(array, 0.0, 1.0)
    else:
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InvalidInput(
                f"pixel values must lie in [0, 1]; got min {low:g}, max {high:g} "
                "(scale 8-bit pixels by 1/255, or pass params {\"clip\": true} to clip)"
            )
    return torch.from_numpy(np.ascontiguousarray(array)), shape


def _check_count(n: int, what: str) -> None:
    if n == 0:
        raise InvalidInput(f"empty batch: send at least one of the {what}")
    if n > MAX_BATCH:
        raise InvalidInput(f"batch of {n} {what} is over the limit of {MAX_BATCH}")


def _png_column(images) -> list | None:
    """The base64 PNGs of an `image` column (DataFrame) or key (dict), else None."""
    if isinstance(images, pd.DataFrame):
        columns = [str(c) for c in images.columns]
        if IMAGE_COLUMN not in columns:
            if any(c in SAMPLE_FIELDS for c in columns):
                raise InvalidInput(
                    f"got fields {columns}: rows with `n` are sampling requests; "
                    "pass params {\"mode\": \"sample\"}"
                )
            if images.dtypes.apply(lambda t: t.kind not in "biuf").any():
                raise InvalidInput(
                    f"expected a column {IMAGE_COLUMN!r} of base64 PNGs or a float tensor "
                    f"{_FLOAT_LAYOUTS}; got columns {columns[:5]}{'...' if len(columns) > 5 else ''}"
                )
            return None
        _only(columns, (IMAGE_COLUMN,))
        return images[IMAGE_COLUMN].tolist()
    if isinstance(images, dict):
        keys = [str(k) for k in images]
        if IMAGE_COLUMN not in images:
            hint = (" (rows with `n` are sampling requests; pass params {\"mode\": \"sample\"})"
                    if any(k in SAMPLE_FIELDS for k in keys) else "")
            raise InvalidInput(
                f"expected a field {IMAGE_COLUMN!r} of base64 PNGs or a float tensor {_FLOAT_LAYOUTS}; "
                f"got fields {keys}{hint}"
            )
        _only(keys, (IMAGE_COLUMN,))
        return np.atleast_1d(np.asarray(images[IMAGE_COLUMN], dtype=object)).ravel().tolist()
    return None


def _only(fields, allowed) -> None:
    extra = [f for f in fields if f not in allowed]
    if extra:
        raise InvalidInput(f"unknown fields {extra}; expected only {list(allowed)}")


def _decode_pngs(items: list) -> torch.Tensor:
    _check_count(len(items), "images")
    pixels = np.empty((len(items), *IMAGE_SHAPE), dtype=np.uint8)
    for i, item in enumerate(items):
        pixels[i] = decode_png(item, i)
    return torch.from_numpy(pixels).unsqueeze(1).float().div_(255.0)


def decode_png(item, index: int = 0) -> np.ndarray:
    """One base64 PNG (str, optionally a `data:` URL) or raw PNG bytes -> (28, 28) uint8."""
    from PIL import Image, UnidentifiedImageError

    where = f"image {index}"
    if isinstance(item, str):
        text = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"{where}: not valid base64 ({exc})") from None
    elif isinstance(item, (bytes, bytearray)):
        raw = bytes(item)
    else:
        got = "nothing" if item is None or (isinstance(item, float) and math.isnan(item)) else type(item).__name__
        raise InvalidInput(f"{where}: expected a base64 PNG string, got {got}")
    if not raw.startswith(PNG_SIGNATURE):
        raise InvalidInput(f"{where}: not a PNG ({_sniff(raw)}); send 8-bit grayscale 28x28 PNGs")
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{where}: unreadable PNG ({exc})") from None
    with image:
        if image.size != IMAGE_SHAPE[::-1]:
            raise InvalidInput(f"{where}: PNG is {image.size[0]}x{image.size[1]}; expected 28x28")
        if image.mode != "L":
            kind = _PIL_MODES.get(image.mode, f"mode {image.mode}")
            raise InvalidInput(f"{where}: PNG is {kind}; expected 8-bit grayscale")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(f"{where}: unreadable PNG ({exc})") from None
        return np.asarray(image, dtype=np.uint8)


def _sniff(raw: bytes) -> str:
    if not raw:
        return "empty"
    for magic, name in ((b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "RIFF/WebP"),
                        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if raw.startswith(magic):
            return f"looks like {name}"
    return f"{len(raw)} bytes starting {raw[:8]!r}"


# --- images out ------------------------------------------------------------------------


def from_model_output(images: torch.Tensor, layout: tuple[int, ...] | str):
    """(N, 1, 28, 28) in [0, 1] -> float32 array in `layout`, or a DataFrame of base64 PNGs."""
    array = images.detach().cpu().numpy().astype(np.float32, copy=False)
    if layout == PNG:
        pixels = np.rint(array.reshape(-1, *IMAGE_SHAPE) * 255.0).astype(np.uint8)
        return pd.DataFrame({IMAGE_COLUMN: [encode_png(p) for p in pixels]})
    return array.reshape((images.shape[0], *layout[1:]))


def encode_png(pixels: np.ndarray) -> str:
    """A (H, W) uint8 array -> base64 of an 8-bit grayscale PNG.

    Written directly (filter 0 on every row, zlib level 1): a third of the time Pillow takes
    for a 28x28 image, and any PNG reader decodes it.
    """
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)
    rows[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + _chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def images_to_png_frame(images: np.ndarray) -> pd.DataFrame:
    """(N, 28, 28) floats in [0, 1] -> the `image` column a client sends (for tests, benchmarks, docs)."""
    pixels = np.rint(np.clip(np.asarray(images, np.float32).reshape(-1, *IMAGE_SHAPE), 0, 1) * 255).astype(np.uint8)
    return pd.DataFrame({IMAGE_COLUMN: [encode_png(p) for p in pixels]})


def png_frame_to_images(frame) -> np.ndarray:
    """The inverse: a DataFrame / records / list of base64 PNGs -> (N, 28, 28) float32 in [0, 1]."""
    if isinstance(frame, pd.DataFrame):
        items = frame[IMAGE_COLUMN].tolist()
    else:
        items = [r[IMAGE_COLUMN] if isinstance(r, dict) else r for r in frame]
    return np.stack([decode_png(item, i) for i, item in enumerate(items)]).astype(np.float32) / 255.0


# --- sampling rows and latents ---------------------------------------------------------


def sample_requests(model_input, params: dict) -> list[tuple[int, int | None, float]]:
    """(n, seed or None, temperature) per row of a sampling request.

    Rows come as a DataFrame / records / dict with fields n (1..MAX_BATCH), optional seed
    (an integer >= 0; none: random) and temperature (> 0, default 1). With no rows (None, or
    an array as in-process callers pass), the params n, seed, temperature are used.
    """
    if model_input is None or isinstance(model_input, np.ndarray) and model_input.dtype.kind in "biuf":
        seed = int(params["seed"])
        rows = [{"n": params["n"], "seed": seed if seed >= 0 else None, "temperature": params["temperature"]}]
    else:
        rows = _rows(model_input)
    requests, total = [], 0
    for i, row in enumerate(rows):
        where = f"row {i}: " if len(rows) > 1 else ""
        if _missing(row.get("n")):
            raise InvalidInput(f"{where}n is missing: how many images to draw (1..{MAX_BATCH})")
        n = _whole(row["n"], f"{where}n", 1, MAX_BATCH)
        seed = None if _missing(row.get("seed")) else _whole(row["seed"], f"{where}seed", 0, 2**63 - 1)
        temperature = 1.0 if _missing(row.get("temperature")) else _number(row["temperature"], f"{where}temperature")
        if not temperature > 0:
            raise InvalidInput(f"{where}temperature must be > 0; got {temperature:g}")
        total += n
        requests.append((n, seed, temperature))
    if total > MAX_BATCH:
        raise InvalidInput(f"the rows ask for {total} images in all; the limit per request is {MAX_BATCH}")
    return requests


def _rows(model_input) -> list[dict]:
    if isinstance(model_input, dict):
        try:
            model_input = pd.DataFrame({k: np.atleast_1d(np.asarray(v, dtype=object)).ravel() for k, v in model_input.items()})
        except ValueError as exc:
            raise InvalidInput(f"sampling fields must have one value per row: {exc}") from None
    if isinstance(model_input, list) and all(isinstance(r, dict) for r in model_input):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise InvalidInput(
            "sampling takes rows with fields n, seed, temperature, e.g. "
            "{\"dataframe_records\": [{\"n\": 8, \"seed\": 0}]}; "
            f"got {type(model_input).__name__}"
        )
    fields = [str(c) for c in model_input.columns]
    if IMAGE_COLUMN in fields and "n" not in fields:
        raise InvalidInput("got images, but mode is sample: pass params {\"mode\": \"reconstruct\"} to reconstruct them")
    _only(fields, SAMPLE_FIELDS)
    if len(model_input) == 0:
        raise InvalidInput("empty batch: send at least one row with n")
    return model_input.to_dict("records")


def _missing(value) -> bool:
    return value is None or isinstance(value, float) and math.isnan(value)


def _number(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise InvalidInput(f"{name} must be a number; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be finite; got {number}")
    return number


def _whole(value, name: str, low: int, high: int) -> int:
    number = _number(value, name)
    if not number.is_integer():
        raise InvalidInput(f"{name} must be a whole number; got {number:g}")
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}; got {int(number)}")
    return int(number)


def to_latents(model_input, latent_dim: int) -> torch.Tensor:
    """(N, latent_dim) numbers -> float32 tensor."""
    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.to_numpy()
    try:
        z = np.asarray(model_input, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"latents must be numbers: {exc}") from None
    if z.ndim == 2:
        _check_count(z.shape[0], "latent vectors")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise InvalidInput(f"latents have shape {z.shape}; expected (N, {latent_dim}) with N >= 1")
    if not np.isfinite(z).all():
        raise InvalidInput("latents contain NaN or infinite values")
    return torch.from_numpy(z)


# --- the models ------------------------------------------------------------------------


def _load_weights(context, model: torch.nn.Module) -> torch.nn.Module:
    """The weights on $LATENT_MODELS_DEVICE (default auto), wherever they were logged."""
    device = serving_device()
    state = torch.load(context.artifacts["weights"], map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def _read_config(context) -> dict:
    return json.loads(Path(context.artifacts["config"]).read_text())


class DenoiserPyfunc(mlflow.pyfunc.PythonModel):
    """Noisy images in, denoised images out, in the caller's form and layout."""

    def load_context(self, context):
        cfg = _read_config(context)
        model = _load_weights(context, build_denoiser(cfg["arch"], cfg["latent_dim"], cfg["width"]))
        # Channels-last convolutions run about 1.5x faster on CPU, with the same results.
        self.model = model.to(memory_format=torch.channels_last)

    def predict(self, context, model_input, params=None):
        params = {**denoiser_default_params(), **(params or {})}
        x, layout = to_model_input(model_input, clip=bool(params["clip"]))
        with torch.inference_mode():
            x = x.to(module_device(self.model))
            return from_model_output(self.model(x.contiguous(memory_format=torch.channels_last)), layout)


class VAEPyfunc(mlflow.pyfunc.PythonModel):
    """mode=reconstruct: images -> reconstructions; mode=sample: rows (n, seed, temperature)
    -> n new images per row; mode=decode: latent vectors (N, latent_dim) -> images."""

    def load_context(self, context):
        cfg = _read_config(context)
        self.model = _load_weights(
            context, ConvVAE(latent_dim=cfg["latent_dim"], width=cfg["width"], likelihood=cfg["likelihood"])
        )
        prior = context.artifacts.get("prior")
        self.prior = (GaussianMixturePrior.from_state_dict(torch.load(prior, map_location="cpu", weights_only=True))
                      if prior else None)

    def predict(self, context, model_input, params=None):
        params = {**vae_default_params(), **(params or {})}
        mode = params["mode"]
        if mode not in VAE_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(VAE_MODES)}; got {mode!r}")
        with torch.inference_mode():
            if mode == "reconstruct":
                x, layout = to_model_input(model_input, clip=bool(params["clip"]))
                mu, _ = self.model.encode(x.to(module_device(self.model)))
                return from_model_output(self.model.decode(mu), layout)
            if mode == "decode":
                z = to_latents(model_input, self.model.latent_dim)
                return from_model_output(self.model.decode(z.to(module_device(self.model))), (0, *IMAGE_SHAPE))
            sampler = params["sampler"]
            if sampler not in SAMPLERS:
                raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
            if sampler == "fitted" and self.prior is None:
                raise InvalidInput("this model was logged without a fitted prior (prior_components=0); "
                                   "use sampler \"normal\"")
            images = []
            for n, seed, temperature in sample_requests(model_input, params):
                generator = None if seed is None else torch.Generator().manual_seed(seed)
                if sampler == "fitted":
                    images.append(self.model.decode(self.prior.sample(n, temperature, generator)
                                                    .to(module_device(self.model))))
                else:
                    images.append(self.model.sample(n, temperature, generator))
            return from_model_output(torch.cat(images), (0, *IMAGE_SHAPE))


class ClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """Images in, class probabilities (N, classes) out: the feature extractor behind the
    sample-quality metrics, served too so its predictions can be checked."""

    def load_context(self, context):
        cfg = _read_config(context)
        self.model = _load_weights(context, DigitClassifier(cfg["classes"], cfg["width"], cfg["feature_dim"]))

    def predict(self, context, model_input, params=None):
        x, _ = to_model_input(model_input)
        with torch.inference_mode():
            return self.model(x.to(module_device(self.model))).softmax(dim=1).cpu().numpy()


def denoiser_default_params() -> dict:
    return {"clip": False}


def vae_default_params() -> dict:
    return {"mode": "reconstruct", "clip": False, "n": 16, "seed": -1, "temperature": 1.0, "sampler": "normal"}


def _signature(params: ParamSchema | None, outputs: Schema | None = None) -> ModelSignature:
    """No input schema (MLflow would enforce one); explicit params. The denoiser and the VAE
    answer in the form and layout of the question (floats (N, 28, 28), (N, 1, 28, 28) or
    (N, 784), or a column of PNGs), so no single output schema is true of their answers; the
    classifier's always are (N, classes) probabilities."""
    return ModelSignature(inputs=None, outputs=outputs, params=params)


def _pip_requirements() -> list[str]:
    import PIL
    import torchvision

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"pillow=={PIL.__version__}",
        "numpy",
        "pandas",
    ]


INPUT_FORMS = {
    "images": f"float32 {_FLOAT_LAYOUTS} in [0, 1] ('inputs' or 'instances'), or a column "
              f"'{IMAGE_COLUMN}' of base64 8-bit grayscale 28x28 PNGs; answered in the same form",
    "max_batch": MAX_BATCH,
}


# A model's folder: `save(path, mlflow_model)` writes it (tracking.log_model logs it).
SaveModel = Callable[[str, Model], None]


def _saver(kind: str, state_dict: dict, config: dict, signature, input_example, metadata,
           tensors: dict[str, dict] | None = None) -> SaveModel:
    """`tensors`: more state dicts to ship beside the weights (artifact name -> tensors)."""
    state_dict = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}  # these weights, not later ones

    def save(path: str, mlflow_model: Model) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            weights, cfg_file = Path(tmp) / "weights.pt", Path(tmp) / "config.json"
            torch.save(state_dict, weights)
            cfg_file.write_text(json.dumps(config, indent=2))
            artifacts = {"weights": str(weights), "config": str(cfg_file)}
            for name, state in (tensors or {}).items():
                artifacts[name] = str(Path(tmp) / f"{name}.pt")
                torch.save(state, artifacts[name])
            mlflow.pyfunc.save_model(
                path,
                python_model=str(PACKAGE_DIR / "pyfunc_code" / f"{kind}.py"),
                artifacts=artifacts,
                code_paths=[str(PACKAGE_DIR)],
                signature=signature,
                input_example=input_example,
                pip_requirements=_pip_requirements(),
                metadata=metadata,
                mlflow_model=mlflow_model,
            )

    return save


def denoiser_model(model, arch: str, latent_dim: int, width: int, example: np.ndarray) -> SaveModel:
    """The denoiser as a pyfunc model; `example` is (N, 28, 28) float32 noisy images."""
    config = {"kind": "denoiser", "arch": arch, "latent_dim": latent_dim, "width": width}
    params = ParamSchema([ParamSpec("clip", "boolean", False)])
    return _saver("denoiser", model.state_dict(), config, _signature(params), example, {"inputs": INPUT_FORMS})


def vae_model(model, width: int, example: np.ndarray, prior: GaussianMixturePrior | None = None) -> SaveModel:
    """`prior`: the mixture fitted to the training latents, served as sampler=fitted."""
    config = {"kind": "vae", "latent_dim": model.latent_dim, "width": width, "likelihood": model.likelihood,
              "prior_components": prior.components if prior else 0}
    defaults = vae_default_params()
    params = ParamSchema([
        ParamSpec("mode", "string", defaults["mode"]),
        ParamSpec("clip", "boolean", defaults["clip"]),
        ParamSpec("n", "long", defaults["n"]),
        ParamSpec("seed", "long", defaults["seed"]),
        ParamSpec("temperature", "double", defaults["temperature"]),
        ParamSpec("sampler", "string", defaults["sampler"]),
    ])
    metadata = {"inputs": {
        "reconstruct": INPUT_FORMS["images"],
        "sample": f"rows with n (1..{MAX_BATCH}), optional seed (>= 0) and temperature (> 0, default 1); "
                  "n images per row, in row order",
        "decode": f"float32 (N, {model.latent_dim}) latent vectors",
        "samplers": "normal: z ~ N(0, I); fitted: the Gaussian mixture fitted to the training latent means"
                    + ("" if prior else " (not in this model)"),
        "max_batch": MAX_BATCH,
    }}
    tensors = {"prior": prior.state_dict()} if prior else None
    return _saver("vae", model.state_dict(), config, _signature(params), example, metadata, tensors)


def classifier_model(model: DigitClassifier, example: np.ndarray) -> SaveModel:
    classes = model.head[-1].out_features
    config = {"kind": "classifier", "classes": classes, "width": model.body[0].out_channels,
              "feature_dim": model.head[-1].in_features}
    probabilities = Schema([TensorSpec(np.dtype(np.float32), (-1, classes))])
    return _saver("classifier", model.state_dict(), config, _signature(None, probabilities), example,
                  {"inputs": INPUT_FORMS, "outputs": f"class probabilities (N, {classes})"})


def load_torch_model(model_uri: str, device: torch.device | None = None):
    """(the torch module, its pyfunc wrapper) behind a logged model: for evaluation, on
    `device` (default: the serving device)."""
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if device is not None:
        wrapper.model.to(device)
    return wrapper.model, wrapper
