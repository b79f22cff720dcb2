"""The VAE's own requests: sampling rows (n, seed, temperature) and latent vectors to decode,
each checked into one line naming the problem (`serving.inputs` checks images, for every kind)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from latent_models.serving.inputs import (
    AUTO,
    SAMPLE_FIELDS,
    InvalidInput,
    batch_limit,
    check_fields,
)
from latent_models.serving.numbers import checked_numbers
from latent_models.serving.png import IMAGE_COLUMN

# The largest sampling temperature: z = temperature * N(0, I). At 1e3 the latents lie about a
# thousand standard deviations from where the decoder was trained, so its images are
# saturated noise already; far beyond (1e38) z overflows float32 and the images are NaN.
MAX_TEMPERATURE = 1e3
# The most importance samples a score request takes. The cost grows linearly in k (64 images at
# k = 100 take well under a second on two CPU cores; at 1,000 ten times that, and a full batch
# of 1,024 images minutes), while the estimate's gain flattens: its bias falls roughly as 1/k,
# and 1,000 is what the literature's test NLL and this project's benchmark use.
MAX_K = 1000


def sample_requests(model_input, params: dict, limit: int | None | str = AUTO) -> list[tuple[int, int | None, float]]:
    """(n, seed or None, temperature) per row of a sampling request.

    Rows come as a DataFrame / records / dict with fields n (1..MAX_BATCH), optional seed
    (an integer >= 0; none: random) and temperature (> 0, default 1). With no rows (None, or
    an array as in-process callers pass), the params n, seed, temperature are used.
    `limit` (see `batch_limit`) bounds the images of all rows together.
    """
    limit = batch_limit(limit)
    top = limit if limit is not None else 2**31 - 1
    if model_input is None or isinstance(model_input, np.ndarray) and model_input.dtype.kind in "biuf":
        seed = int(params["seed"])
        rows = [{"n": params["n"], "seed": seed if seed >= 0 else None, "temperature": params["temperature"]}]
    else:
        rows = _rows(model_input)
    requests, total = [], 0
    for i, row in enumerate(rows):
        where = f"row {i}: " if len(rows) > 1 else ""
        if _missing(row.get("n")):
            raise InvalidInput(f"{where}n is missing: how many images to draw (1..{top})")
        n = _whole(row["n"], f"{where}n", 1, top)
        seed = None if _missing(row.get("seed")) else _whole(row["seed"], f"{where}seed", 0, 2**63 - 1)
        temperature = 1.0 if _missing(row.get("temperature")) else _number(row["temperature"], f"{where}temperature")
        if not 0 < temperature <= MAX_TEMPERATURE:
            raise InvalidInput(f"{where}temperature must be > 0 and at most {MAX_TEMPERATURE:g}; got {temperature:g}")
        total += n
        requests.append((n, seed, temperature))
    if limit is not None and total > limit:
        raise InvalidInput(f"the rows ask for {total} images in all; the limit per request is {limit}")
    return requests


def importance_samples(value) -> int:
    """The `k` param of a score request: a whole number in 1..MAX_K."""
    return _whole(value, "k", 1, MAX_K)


def _rows(model_input) -> list[dict]:
    if isinstance(model_input, dict):
        try:
            model_input = pd.DataFrame(
                {k: np.atleast_1d(np.asarray(v, dtype=object)).ravel() for k, v in model_input.items()}
            )
        except ValueError as exc:
            raise InvalidInput(f"sampling fields must have one value per row: {exc}") from None
    if isinstance(model_input, list) and all(isinstance(r, dict) for r in model_input):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise InvalidInput(
            "sampling takes rows with fields n, seed, temperature, e.g. "
            '{"dataframe_records": [{"n": 8, "seed": 0}]}; '
            f"got {type(model_input).__name__}"
        )
    fields = [str(c) for c in model_input.columns]
    if IMAGE_COLUMN in fields and "n" not in fields:
        raise InvalidInput('got images, but mode is sample: pass params {"mode": "reconstruct"} to reconstruct them')
    check_fields(fields, SAMPLE_FIELDS)
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


def to_latents(model_input, latent_dim: int, limit: int | None | str = AUTO) -> torch.Tensor:
    """(N, latent_dim) numbers -> float32 tensor (at most `limit` vectors, see `batch_limit`)."""
    limit = batch_limit(limit)
    if isinstance(model_input, pd.DataFrame):
        if (model_input.dtypes.apply(lambda t: t.kind) == "b").any():
            raise InvalidInput("latents must be numbers; got booleans")
        model_input = model_input.to_numpy()
    z = checked_numbers(model_input, "latent vectors", latent_dim, limit)
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise InvalidInput(f"latents have shape {z.shape}; expected (N, {latent_dim}) with N >= 1")
    if not np.isfinite(z).all():
        raise InvalidInput("latents contain NaN or infinite values")
    return torch.from_numpy(z)
