"""Binary arrays: `.npy` files (`application/x-npy`) and raw little-endian float32
(`application/octet-stream` with the shape in the `X-Array-Shape` header)."""

from __future__ import annotations

import io

import numpy as np

from service.api.errors import invalid

NPY_MEDIA_TYPE = "application/x-npy"
RAW_MEDIA_TYPE = "application/octet-stream"
SHAPE_HEADER = "x-array-shape"
_NUMERIC_KINDS = "fiu"


def read_npy(body: bytes, field: str) -> np.ndarray:
    """A `.npy` file -> float32 array; pickled (object) arrays are refused."""
    try:
        arr = np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:
        raise invalid(field, f"not a valid .npy file: {exc}") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise invalid(field, f"dtype {arr.dtype} is not numeric; send float32")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def read_raw(body: bytes, shape_header: str | None, field: str) -> np.ndarray:
    """Raw little-endian float32 bytes shaped by the `X-Array-Shape: n,784` header."""
    if not shape_header:
        raise invalid(
            "X-Array-Shape", "header required with application/octet-stream, e.g. '1,784'"
        )
    try:
        shape = tuple(int(part) for part in shape_header.split(","))
    except ValueError:
        raise invalid("X-Array-Shape", "must be comma-separated integers, e.g. '1,784'") from None
    if not shape or any(dim < 1 for dim in shape):
        raise invalid("X-Array-Shape", "dimensions must be positive integers")
    expected = 4 * int(np.prod(shape, dtype=np.int64))
    if expected != len(body):
        raise invalid(
            field, f"body has {len(body)} bytes but shape {list(shape)} of float32 needs {expected}"
        )
    return np.frombuffer(body, dtype="<f4").reshape(shape).astype(np.float32, copy=False)


def write_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
