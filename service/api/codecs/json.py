"""JSON <-> numpy: orjson parsing straight into float32 arrays, vectorised validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from service.api.codecs import png
from service.api.errors import ApiError, invalid

IMAGE_SIDE = 28
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
_NUMERIC_KINDS = "fiu"


def parse_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not."""
    if not body:
        raise ApiError(400, "malformed_json", "request body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = " (NaN and Infinity are not valid JSON numbers)"
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc}{hint}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", "the JSON body must be an object")
    return value


def dumps(payload: dict[str, Any]) -> bytes:
    """Serialise a response; numpy arrays are written by orjson directly (no `tolist()`)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])


def _item(field: str, row: int, rows: bool) -> str:
    return f"{field}[{row}]" if rows else field


def check_finite(arr: np.ndarray, field: str, *, rows: bool = True) -> None:
    """`arr` rows are items; name the first item holding NaN or +-Infinity (`rows=False`:
    `arr` is one item, named `field` itself)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        raise invalid(_item(field, _first_bad_row(bad), rows), "values must be finite numbers")


def check_unit_range(arr: np.ndarray, field: str, *, rows: bool = True) -> None:
    check_finite(arr, field, rows=rows)
    bad = (arr < 0.0) | (arr > 1.0)
    if bad.any():
        row = _first_bad_row(bad)
        value = float(arr.reshape(arr.shape[0], -1)[row][bad.reshape(arr.shape[0], -1)[row]][0])
        raise invalid(_item(field, row, rows), f"pixel values must be in [0, 1]; found {value:g}")


def _numeric(value: Any, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise invalid(field, "must be a rectangular array of numbers") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        if arr.dtype.kind == "b":
            raise invalid(field, "must hold numbers, not booleans")
        raise invalid(field, "must hold numbers only")
    with np.errstate(over="ignore"):
        return arr.astype(np.float32, copy=False)


def _list_field(body: dict[str, Any], field: str, limit: int) -> list[Any]:
    if field not in body:
        raise invalid(field, "is required")
    value = body[field]
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    if not value:
        raise invalid(field, "must not be empty")
    if len(value) > limit:
        raise invalid(field, f"at most {limit} items per request; got {len(value)}")
    return value


def image_from_json(value: Any, field: str) -> np.ndarray:
    """One image: a flat 784 list, a nested 28x28 list, or a base64 PNG string -> (784,)."""
    if isinstance(value, str):
        return png.decode_base64_image(value, field)
    if not isinstance(value, list):
        raise invalid(field, "an image is a list of 784 numbers, a 28x28 list or a base64 PNG")
    arr = _numeric(value, field)
    if arr.shape not in ((IMAGE_SIZE,), (IMAGE_SIDE, IMAGE_SIDE)):
        raise invalid(
            field,
            f"an image must be 784 numbers or 28x28 nested lists; got shape {list(arr.shape)}",
        )
    flat = arr.reshape(1, IMAGE_SIZE)
    check_unit_range(flat, field, rows=False)
    return flat[0]


def images_from_json(body: dict[str, Any], field: str, limit: int) -> np.ndarray:
    """The list under `field` as (n, 784) float32 in [0, 1]."""
    items = _list_field(body, field, limit)
    if all(isinstance(item, list) for item in items):
        # Fast path: one numpy conversion for the whole batch, vectorised checks.
        try:
            arr = np.asarray(items)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.dtype.kind in _NUMERIC_KINDS:
            n = len(items)
            if arr.shape in ((n, IMAGE_SIZE), (n, IMAGE_SIDE, IMAGE_SIDE)):
                with np.errstate(over="ignore"):
                    out = arr.reshape(n, IMAGE_SIZE).astype(np.float32)
                check_unit_range(out, field)
                return out
    # Slow path: mixed formats, or an error to locate item by item.
    return np.stack([image_from_json(item, f"{field}[{i}]") for i, item in enumerate(items)])


def latents_from_json(body: dict[str, Any], field: str, latent_dim: int, limit: int) -> np.ndarray:
    """The list under `field` as (n, latent_dim) float32, finite."""
    items = _list_field(body, field, limit)
    try:
        arr = np.asarray(items)
    except (ValueError, TypeError):
        arr = None
    if (
        arr is not None
        and arr.dtype.kind in _NUMERIC_KINDS
        and arr.shape == (len(items), latent_dim)
    ):
        with np.errstate(over="ignore"):
            out = arr.astype(np.float32)
        check_finite(out, field)
        return out
    # Slow path: find the first bad item and say what is wrong with it.
    for i, item in enumerate(items):
        latent_from_json(item, f"{field}[{i}]", latent_dim)
    raise invalid(field, f"must be a list of lists of {latent_dim} numbers")


def latent_from_json(value: Any, field: str, latent_dim: int) -> np.ndarray:
    """One latent vector -> (latent_dim,)."""
    if not isinstance(value, list):
        raise invalid(field, f"must be a list of {latent_dim} numbers; got {type(value).__name__}")
    arr = _numeric(value, field)
    if arr.shape != (latent_dim,):
        raise invalid(field, f"must be a list of {latent_dim} numbers; got shape {list(arr.shape)}")
    check_finite(arr.reshape(1, -1), field, rows=False)
    return arr


def int_field(
    body: dict[str, Any], field: str, *, default: int | None, lo: int | None, hi: int | None
) -> int | None:
    """An optional integer with bounds; JSON floats like 3.0 are not integers here."""
    value = body.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "must be an integer")
    if lo is not None and value < lo:
        raise invalid(field, f"must be >= {lo}; got {value}")
    if hi is not None and value > hi:
        raise invalid(field, f"must be <= {hi}; got {value}")
    return value


def float_field(body: dict[str, Any], field: str, *, default: float, lo: float, hi: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, "must be a number")
    if not lo <= value <= hi:
        raise invalid(field, f"must be between {lo:g} and {hi:g}; got {value:g}")
    return float(value)


def reject_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(unknown[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")
