"""Request parsing and validation: everything a caller sends, checked before the model runs.

Each function turns one accepted form into tensors of the model's image shape (or, for a
model that takes any size, `AnySize`, of the sizes sent), or raises `InvalidInput` (HTTP 400)
naming the problem; `from_model_output` answers in the form and layout the question came in.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import torch

from latent_models.models.config import MNIST_SHAPE
from latent_models.serving.numbers import checked_numbers
from latent_models.serving.png import (
    CHANNEL_WORDS,
    IMAGE_COLUMN,
    AnySize,
    BadImage,
    checked_size,
    decode_png,
    describe,
    encode_png,
    shape_words,
    takes,
    takes_any,
    to_pixels,
)
from latent_models.serving.refusal import MAX_BATCH, InvalidInput, check_count

CHUNK = 1024  # images per forward pass: in-process and file prediction take any N in bounded memory
SAMPLE_FIELDS = ("n", "seed", "temperature")  # a VAE's sampling rows: named in the hints of image errors
PNG = "png"  # the layout marker of the base64-PNG form
# Decimals of a float answer behind the REST server: within 1e-8 of the float32 value (a
# 400,000th of an 8-bit level). A float32 written in full takes 17 digits (0.7843137383460999):
# MLflow's JSON writer took 1.16 ms for a 28x28 answer so, 0.97 ms at 8 decimals.
JSON_DECIMALS = 8
SPARK_COLUMN = "0"  # the name spark_udf gives one unnamed column (a model without input schema)
# MLflow's REST scoring app: uvicorn imports this module (which loads the model) in each
# worker of `mlflow models serve`, and nothing else does: not `mlflow models predict`, not
# `mlflow.pyfunc.load_model`, not spark_udf with env_manager="local".
REST_SERVER_MODULE = "mlflow.pyfunc.scoring_server.app"
AUTO = "auto"  # the batch limit of where predict runs: MAX_BATCH behind the REST server, else none


def behind_rest_server() -> bool:
    """True in a worker of MLflow's REST scoring server (`mlflow models serve`).

    Read from the process's own modules rather than an environment variable: MLflow sets
    its serving flag (`_MLFLOW_IS_IN_SERVING_ENVIRONMENT`) for `mlflow models predict` too,
    and a variable is inherited by whatever the server's process starts.
    """
    return REST_SERVER_MODULE in sys.modules


def batch_limit(limit: int | None | str = AUTO) -> int | None:
    """`limit` as given, or for AUTO: MAX_BATCH behind the REST server, none elsewhere."""
    if limit == AUTO:
        return MAX_BATCH if behind_rest_server() else None
    return limit


def float_layouts(image_shape: tuple[int, int, int]) -> str:
    """The float-tensor layouts a model of this image shape accepts, as a user reads them."""
    channels, height, width = image_shape
    flat = f"(N, {channels * height * width})"
    if channels == 1:
        return f"(N, {height}, {width}), (N, 1, {height}, {width}) or {flat}"
    return f"(N, {channels}, {height}, {width}) or {flat}"


def any_size_layouts(image_shape: tuple[int, int, int], sizes: AnySize) -> str:
    """The float-tensor layouts a model taking any size accepts, as a user reads them."""
    channels, height, width = image_shape
    flat = f"(N, {channels * height * width}) ({width}x{height} flattened)"
    grey = "(N, H, W), " if channels == 1 else ""
    return f"{grey}(N, {channels}, H, W) {sizes.words()}, or {flat}"


def input_forms(image_shape: tuple[int, int, int], sizes: AnySize | None = None) -> str:
    if sizes is not None:
        return (
            f"float32 {any_size_layouts(image_shape, sizes)} in [0, 1] ('inputs' or 'instances'), all of one "
            f"size; or a column '{IMAGE_COLUMN}' of base64 {describe(image_shape, sizes)}, each its own size; "
            "answered in the same form and sizes"
        )
    return (
        f"float32 {float_layouts(image_shape)} in [0, 1] ('inputs' or 'instances'), or a column "
        f"'{IMAGE_COLUMN}' of base64 {describe(image_shape)}; answered in the same form"
    )


# --- images in -------------------------------------------------------------------------


def to_model_input(
    images,
    clip: bool = False,
    image_shape: tuple[int, int, int] = MNIST_SHAPE,
    limit: int | None | str = AUTO,
    sizes: AnySize | None = None,
) -> tuple[torch.Tensor | list[torch.Tensor], tuple[int, ...] | str]:
    """Any accepted image form -> ((N, C, H, W) float32 in [0, 1], the caller's layout).

    `sizes`: the model takes any size (else only `image_shape`'s): a float tensor of one size
    within it, or PNGs each of its own size; PNGs of different sizes come back as a list of
    (1, C, H, W) tensors. Sizes are checked from the shape or the PNG headers, before any pixel
    is converted or decoded.

    The layout is the input's shape for float tensors, or `PNG` for base64 PNGs, so that
    `from_model_output` answers in the same form. `clip=True` clips float values into
    [0, 1] instead of rejecting them (NaN and infinity are rejected either way). `limit`:
    the most images accepted (see `batch_limit`). Anything that is not numbers is refused
    before it is converted, so a hostile request costs milliseconds.
    """
    limit = batch_limit(limit)
    pngs = _png_column(images, image_shape, sizes)
    if pngs is not None:
        if sizes is not None:
            return _decode_pngs_any_size(pngs, image_shape, sizes, limit), PNG
        return _decode_pngs(pngs, image_shape, limit), PNG
    if isinstance(images, pd.DataFrame):  # one column per pixel, or one column of flattened images
        images = _frame_values(images, image_shape)
    if sizes is not None:
        return _any_size_tensor(images, clip, image_shape, sizes, limit)
    array = checked_numbers(images, "images", math.prod(image_shape), limit)
    shape = array.shape
    if image_shape[0] == 1 and shape[1:] == image_shape[1:]:
        array = array[:, None]
    elif shape[1:] == (math.prod(image_shape),):
        array = array.reshape(-1, *image_shape)
    elif shape[1:] != image_shape:
        raise InvalidInput(
            f"images have shape {shape}; expected {float_layouts(image_shape)} — "
            f"{takes(image_shape, _tensor_words(shape))}"
        )
    return _pixel_values(array, clip), shape


def _pixel_values(array: np.ndarray, clip: bool) -> torch.Tensor:
    """Finite values in [0, 1] (clipped into it when asked) as a tensor."""
    if not np.isfinite(array).all():
        raise InvalidInput("images contain NaN or infinite values")
    if clip:
        array = np.clip(array, 0.0, 1.0)
    else:
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InvalidInput(
                f"pixel values must lie in [0, 1]; got min {low:g}, max {high:g} "
                '(scale 8-bit pixels by 1/255, or pass params {"clip": true} to clip)'
            )
    return torch.from_numpy(np.ascontiguousarray(array))


def _declared_shape(value) -> tuple[int, ...] | None:
    """The shape of an array, or of nested lists read along their first items, without converting."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return tuple(value.shape)
    if not isinstance(value, (list, tuple)):
        return None
    shape, node = [], value
    while isinstance(node, (list, tuple)) and node:
        shape.append(len(node))
        node = node[0]
    return tuple(shape)


def _any_size_tensor(images, clip: bool, image_shape: tuple[int, int, int], sizes: AnySize, limit: int | None):
    """A float tensor of one size, of the model's channels, any size it takes: refused over the
    budget or under the minimum from its shape, before its values are converted."""
    channels = image_shape[0]
    declared = _declared_shape(images)
    if declared is not None:
        _check_tensor_size(declared, image_shape, sizes)
    array = checked_numbers(images, "images", channels * sizes.max_pixels, limit)
    shape = array.shape
    if array.ndim == 3 and channels == 1:
        array = array[:, None]
    elif array.ndim == 2 and shape[1] == math.prod(image_shape):
        array = array.reshape(-1, *image_shape)
    elif not (array.ndim == 4 and shape[1] == channels):
        raise InvalidInput(
            f"images have shape {shape}; expected {any_size_layouts(image_shape, sizes)} — "
            f"{takes_any(channels, sizes, _tensor_words(shape))}"
        )
    _check_tensor_size(shape, image_shape, sizes)
    return _pixel_values(array, clip), shape


def _check_tensor_size(shape: tuple[int, ...], image_shape: tuple[int, int, int], sizes: AnySize) -> None:
    """Refuse (N, H, W) or (N, C, H, W) images of a size the model does not take (other
    layouts are named by the layout check)."""
    if len(shape) == 3 or (len(shape) == 4 and shape[1] == image_shape[0]):
        height, width = shape[-2:]
        why = sizes.refusal(width, height, image_shape)
        if why:
            raise InvalidInput(f"images are {width}x{height}{why}")


def _tensor_words(shape: tuple[int, ...]) -> str | None:
    """What images a float tensor of this shape holds, in `shape_words`' words (None: not
    images): (N, H, W) grey, (N, C, H, W), or (N, H, W, C) channels last."""
    if len(shape) == 3:
        return shape_words(1, *shape[1:])
    if len(shape) == 4:
        if shape[1] not in CHANNEL_WORDS and shape[3] in CHANNEL_WORDS:
            return f"{shape[1]}x{shape[2]}x{shape[3]} ({CHANNEL_WORDS[shape[3]]}, channels last: send (N, C, H, W))"
        return shape_words(*shape[1:])
    if len(shape) == 2:
        return f"{shape[1]} values per image"
    return None


def _frame_values(frame: pd.DataFrame, image_shape: tuple[int, int, int]):
    """A DataFrame of pixels -> its values: one column per pixel, or one column holding a
    flattened image per row (as `mlflow.pyfunc.spark_udf` passes an array column)."""
    if frame.shape[1] == 1 and len(frame) and isinstance(frame.iloc[0, 0], (list, tuple, np.ndarray)):
        rows = frame.iloc[:, 0].tolist()
        sizes = {np.size(r) for r in rows}
        if sizes != {math.prod(image_shape)}:
            raise InvalidInput(
                f"a column of flattened images needs {math.prod(image_shape)} numbers per row; got {sorted(sizes)[:5]}"
            )
        return rows
    kinds = frame.dtypes.apply(lambda t: t.kind)
    if (kinds == "b").any():
        raise InvalidInput("images must be numbers; got booleans (true/false are not pixel values)")
    return frame.to_numpy()


def _png_column(images, image_shape: tuple[int, int, int], sizes: AnySize | None = None) -> list | None:
    """The base64 PNGs of an `image` column (DataFrame) or key (dict), else None."""
    if isinstance(images, pd.DataFrame):
        columns = [str(c) for c in images.columns]
        if columns == [SPARK_COLUMN] and len(images) and isinstance(images.iloc[0, 0], (str, bytes)):
            return images.iloc[:, 0].tolist()  # spark_udf's name for one unnamed string column
        if IMAGE_COLUMN not in columns:
            if any(c in SAMPLE_FIELDS for c in columns):
                raise InvalidInput(
                    f'got fields {columns}: rows with `n` are sampling requests; pass params {{"mode": "sample"}}'
                )
            if len(columns) == 1 and len(images) and isinstance(images.iloc[0, 0], (list, tuple, np.ndarray)):
                return None  # one column of flattened images (spark_udf's array column)
            if images.dtypes.apply(lambda t: t.kind not in "biuf").any():
                raise InvalidInput(
                    f"expected a column {IMAGE_COLUMN!r} of base64 PNGs or a float tensor "
                    f"{_layouts(image_shape, sizes)}; got columns {columns[:5]}{'...' if len(columns) > 5 else ''}"
                )
            return None
        check_fields(columns, (IMAGE_COLUMN,))
        return images[IMAGE_COLUMN].tolist()
    if isinstance(images, dict):
        keys = [str(k) for k in images]
        if IMAGE_COLUMN not in images:
            hint = (
                ' (rows with `n` are sampling requests; pass params {"mode": "sample"})'
                if any(k in SAMPLE_FIELDS for k in keys)
                else ""
            )
            raise InvalidInput(
                f"expected a field {IMAGE_COLUMN!r} of base64 PNGs or a float tensor {_layouts(image_shape, sizes)}; "
                f"got fields {keys}{hint}"
            )
        check_fields(keys, (IMAGE_COLUMN,))
        return np.atleast_1d(np.asarray(images[IMAGE_COLUMN], dtype=object)).ravel().tolist()
    return None


def _layouts(image_shape: tuple[int, int, int], sizes: AnySize | None) -> str:
    return float_layouts(image_shape) if sizes is None else any_size_layouts(image_shape, sizes)


def check_fields(fields, allowed) -> None:
    extra = [f for f in fields if f not in allowed]
    if extra:
        raise InvalidInput(f"unknown fields {extra}; expected only {list(allowed)}")


def _decode_pngs(items: list, image_shape: tuple[int, int, int], limit: int | None = MAX_BATCH) -> torch.Tensor:
    check_count(len(items), "images", limit)
    channels, height, width = image_shape
    pixels = np.empty((len(items), height, width, channels), dtype=np.uint8)
    try:
        for i, item in enumerate(items):
            pixels[i] = decode_png(item, i, image_shape).reshape(height, width, channels)
    except BadImage as exc:
        raise InvalidInput(str(exc)) from None
    return _floats(pixels)


def _floats(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) 8-bit pixels -> (N, C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _decode_pngs_any_size(
    items: list, image_shape: tuple[int, int, int], sizes: AnySize, limit: int | None = MAX_BATCH
) -> torch.Tensor | list[torch.Tensor]:
    """PNGs each of its own size: every header is checked before any image is decoded (an
    image over the budget is refused in milliseconds wherever it is in the column). One
    (N, C, H, W) tensor when all have one size, else a list of (1, C, H, W)."""
    check_count(len(items), "images", limit)
    channels = image_shape[0]
    try:
        for i, item in enumerate(items):
            checked_size(item, i, image_shape, sizes)
        decoded = [decode_png(item, i, image_shape, sizes) for i, item in enumerate(items)]
    except BadImage as exc:
        raise InvalidInput(str(exc)) from None
    if len({p.shape for p in decoded}) == 1:
        return _floats(np.stack(decoded).reshape(len(decoded), *decoded[0].shape[:2], channels))
    return [_floats(np.array(p).reshape(1, *p.shape[:2], channels)) for p in decoded]  # a writable copy


def from_model_output(images: torch.Tensor | np.ndarray | list, layout: tuple[int, ...] | str):
    """(N, C, H, W) in [0, 1] -> float32 array in `layout` (behind the REST server, float64 to
    JSON_DECIMALS), or a DataFrame of base64 PNGs (from a list of (C, H, W) images of different
    sizes too). Never NaN or infinity: a non-finite answer is refused (bare `NaN` in JSON)."""
    if isinstance(images, list):  # PNGs each of its own size
        for image in images:
            check_finite(np.asarray(image))
        return _png_answer([encode_png(to_pixels(np.asarray(i)[None])[0]) for i in images])
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    array = array.astype(np.float32, copy=False)
    check_finite(array)
    if layout == PNG:
        return _png_answer([encode_png(p) for p in to_pixels(array)])
    array = array.reshape((images.shape[0], *layout[1:]))
    if behind_rest_server():  # written as JSON text: the decimals a pixel value needs
        return array.astype(np.float64).round(JSON_DECIMALS)
    return array


def _png_answer(pngs: list[str]):
    """The PNG form's answer: a DataFrame with one column `image`. Behind the REST server, the
    records MLflow writes from that frame (`[{"image": ...}]`, the same JSON), without building
    a frame only for MLflow to take it apart again (pandas' string column costs more than the
    PNG of a 28x28 image)."""
    if behind_rest_server():
        return [{IMAGE_COLUMN: png} for png in pngs]
    return pd.DataFrame({IMAGE_COLUMN: pngs})


def check_finite(array: np.ndarray) -> None:
    """Refuse an answer that is not finite: JSON would carry a bare NaN."""
    if not np.isfinite(array).all():
        raise InvalidInput(
            "the model's answer to this request is not finite (NaN or infinity); "
            "check that the inputs lie in the ranges the model takes"
        )


def generated_layout(image_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The layout of images a model makes up (samples, decoded latents): (N, H, W) for grey
    images, as MNIST users expect, else (N, C, H, W)."""
    return (0, *image_shape[1:]) if image_shape[0] == 1 else (0, *image_shape)
