"""Request parsing and validation: everything a caller sends, checked before the model runs.

Each function turns one accepted form into tensors of the model's image shape, or raises
`InvalidInput` (HTTP 400) naming the problem; `from_model_output` answers in the form and
layout the question came in.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from latent_models.models.config import MNIST_SHAPE
from latent_models.serving.png import IMAGE_COLUMN, BadImage, decode_png, describe, encode_png, to_pixels

MAX_BATCH = 1024  # images per request (sum of `n` when sampling), and latents per request
SAMPLE_FIELDS = ("n", "seed", "temperature")
PNG = "png"  # the layout marker of the base64-PNG form


class InvalidInput(MlflowException):
    """A request the caller can fix; MLflow's server answers it with HTTP 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def float_layouts(image_shape: tuple[int, int, int]) -> str:
    """The float-tensor layouts a model of this image shape accepts, as a user reads them."""
    channels, height, width = image_shape
    flat = f"(N, {channels * height * width})"
    if channels == 1:
        return f"(N, {height}, {width}), (N, 1, {height}, {width}) or {flat}"
    return f"(N, {channels}, {height}, {width}) or {flat}"


def input_forms(image_shape: tuple[int, int, int]) -> str:
    return (f"float32 {float_layouts(image_shape)} in [0, 1] ('inputs' or 'instances'), or a column "
            f"'{IMAGE_COLUMN}' of base64 {describe(image_shape)}; answered in the same form")


# --- images in -------------------------------------------------------------------------


def to_model_input(images, clip: bool = False, image_shape: tuple[int, int, int] = MNIST_SHAPE
                   ) -> tuple[torch.Tensor, tuple[int, ...] | str]:
    """Any accepted image form -> ((N, C, H, W) float32 in [0, 1], the caller's layout).

    The layout is the input's shape for float tensors, or `PNG` for base64 PNGs, so that
    `from_model_output` answers in the same form. `clip=True` clips float values into
    [0, 1] instead of rejecting them (NaN and infinity are rejected either way).
    """
    pngs = _png_column(images, image_shape)
    if pngs is not None:
        return _decode_pngs(pngs, image_shape), PNG
    if isinstance(images, pd.DataFrame):  # one column per pixel
        images = images.to_numpy()
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"images must be numbers in [0, 1]: {exc}") from None
    shape = array.shape
    _check_count(0 if array.ndim == 0 else shape[0], "images")
    if image_shape[0] == 1 and shape[1:] == image_shape[1:]:
        array = array[:, None]
    elif shape[1:] == (math.prod(image_shape),):
        array = array.reshape(-1, *image_shape)
    elif shape[1:] != image_shape:
        raise InvalidInput(f"images have shape {shape}; expected {float_layouts(image_shape)}")
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


def _png_column(images, image_shape: tuple[int, int, int]) -> list | None:
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
                    f"{float_layouts(image_shape)}; got columns {columns[:5]}{'...' if len(columns) > 5 else ''}"
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
                f"expected a field {IMAGE_COLUMN!r} of base64 PNGs or a float tensor {float_layouts(image_shape)}; "
                f"got fields {keys}{hint}"
            )
        _only(keys, (IMAGE_COLUMN,))
        return np.atleast_1d(np.asarray(images[IMAGE_COLUMN], dtype=object)).ravel().tolist()
    return None


def _only(fields, allowed) -> None:
    extra = [f for f in fields if f not in allowed]
    if extra:
        raise InvalidInput(f"unknown fields {extra}; expected only {list(allowed)}")


def _decode_pngs(items: list, image_shape: tuple[int, int, int]) -> torch.Tensor:
    _check_count(len(items), "images")
    channels, height, width = image_shape
    pixels = np.empty((len(items), height, width, channels), dtype=np.uint8)
    try:
        for i, item in enumerate(items):
            pixels[i] = decode_png(item, i, image_shape).reshape(height, width, channels)
    except BadImage as exc:
        raise InvalidInput(str(exc)) from None
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def from_model_output(images: torch.Tensor, layout: tuple[int, ...] | str):
    """(N, C, H, W) in [0, 1] -> float32 array in `layout`, or a DataFrame of base64 PNGs."""
    array = images.detach().cpu().numpy().astype(np.float32, copy=False)
    if layout == PNG:
        return pd.DataFrame({IMAGE_COLUMN: [encode_png(p) for p in to_pixels(array)]})
    return array.reshape((images.shape[0], *layout[1:]))


def generated_layout(image_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The layout of images a model makes up (samples, decoded latents): (N, H, W) for grey
    images, as MNIST users expect, else (N, C, H, W)."""
    return (0, *image_shape[1:]) if image_shape[0] == 1 else (0, *image_shape)


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


