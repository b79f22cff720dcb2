"""The numbers a request sends, checked before anything converts them: a boolean, a string, a
null or an object among pixel values is refused by name (never echoed: it may be megabytes),
and a batch is counted while it is scanned, so an oversized one is refused early."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from latent_models.serving.refusal import InvalidInput, check_count

# The number types `json.loads` builds (a boolean is its own type): a list holding only these is
# checked in one pass over its types, not a Python `isinstance` per leaf (0.9 ms per 784 leaves).
JSON_NUMBERS = frozenset({int, float})


def checked_numbers(value, what: str, per_item: int, limit: int | None) -> np.ndarray:
    """A batch of numbers -> float32 array, refusing before any conversion what is not one:
    booleans, strings, nulls and objects (named, never echoed), a bare number, an empty
    batch, and more than `limit` items (counted from the shape, or while scanning lists)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            _scan(value.ravel(), what, per_item, limit)
        else:
            _check_kind(value.dtype, what)
        if value.ndim == 0:
            raise InvalidInput(f"got a single number, not a batch of {what}: send a list, one entry per item")
        check_count(value.shape[0], what, limit)
    elif isinstance(value, (list, tuple)):
        _scan(value, what, per_item, limit)
        if len(value) == 0:
            check_count(0, what, limit)
    elif isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
        return checked_numbers(value, what, per_item, limit)
    elif isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        raise InvalidInput(
            f"got a single number ({float(value):g}), not a batch of {what}: send a list, one entry per item"
        )
    else:
        raise InvalidInput(f"{what} must be numbers; got {describe_value(value)}")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be numbers: {exc}") from None
    if array.ndim == 0:
        raise InvalidInput(f"got a single number, not a batch of {what}: send a list, one entry per item")
    check_count(array.shape[0], what, limit)
    return array


def describe_value(value) -> str:
    """What a non-number is, in a user's words, without echoing it (it may be megabytes)."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"a boolean ({str(bool(value)).lower()}); booleans are not pixel values"
    if isinstance(value, (str, bytes)):
        return f"a string of {len(value)} characters"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_kind(dtype: np.dtype, what: str) -> None:
    if dtype.kind == "b":
        raise InvalidInput(f"{what} must be numbers; got booleans (true/false are not pixel values)")
    if dtype.kind in "US":
        raise InvalidInput(f"{what} must be numbers; got strings")
    if dtype.kind not in "iuf":
        raise InvalidInput(f"{what} must be numbers; got {dtype}")


def _scan(value, what: str, per_item: int, limit: int | None) -> None:
    """Walk nested lists (or an object array) once, stopping at the first non-number and as
    soon as the count of numbers is over what `limit` items can hold."""
    cap = None if limit is None else limit * per_item
    count, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
            continue
        if isinstance(node, np.ndarray):
            if node.dtype.kind == "O":
                stack.extend(node.ravel().tolist())
                continue
            _check_kind(node.dtype, what)
            count += node.size
        elif isinstance(node, (bool, np.bool_)) or not isinstance(node, (Real, np.number)):
            raise InvalidInput(f"{what} must be numbers; got {describe_value(node)}")
        else:
            count += 1
        if cap is not None and count > cap:
            raise InvalidInput(f"more than {limit} {what}: over the limit of {limit} per request")


def check_json_tensor(data: dict) -> None:
    """A parsed JSON request's tensor form ({"inputs": [[...]]} or {"instances": [[...]]}),
    before MLflow turns it into one array: `np.array` reads `true` among numbers as 1.0, and
    builds a huge string array around one long string among numbers. Refuses a leaf that is
    not a number once numbers are seen (or the other way round), without converting
    anything; a tensor of one kind (all booleans, all strings) and other forms (columns,
    records) go on to `predict`, which names the problem for the mode asked.

    A `dataframe_split` whose column or index labels are not names (an object, a list) is
    refused too: pandas builds the frame, but MLflow's error message prints it, and printing
    such a frame raises, which MLflow answers with a bare 500."""
    split = data.get("dataframe_split") if isinstance(data, dict) else None
    for key in ("columns", "index"):
        labels = split.get(key) if isinstance(split, dict) else None
        for label in labels if isinstance(labels, list) else ():
            if isinstance(label, (dict, list)):
                raise InvalidInput(
                    f"dataframe_split {key} must be names (strings or numbers); found {describe_value(label)}"
                )
    for key in ("inputs", "instances"):
        value = data.get(key) if isinstance(data, dict) else None
        if not (isinstance(value, list) and value and isinstance(value[0], (list, Real))):
            continue
        numbers, other, stack = False, None, [value]
        while stack:
            node = stack.pop()
            if set(map(type, node)) <= JSON_NUMBERS:  # a row of numbers: no per-leaf Python work
                numbers = numbers or bool(node)
            else:
                for item in reversed(node):
                    if isinstance(item, list):
                        stack.append(item)
                    elif isinstance(item, Real) and not isinstance(item, bool):
                        numbers = True
                    elif other is None:
                        other = item
            if numbers and other is not None:
                found = f"a boolean ({str(other).lower()})" if isinstance(other, bool) else describe_value(other)
                raise InvalidInput(f"{key} must hold numbers only; found {found} among the numbers")
