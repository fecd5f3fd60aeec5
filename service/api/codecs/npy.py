"""Binary arrays: `.npy` files (`application/x-npy`) and raw little-endian float32
(`application/octet-stream` with the shape in the `X-Array-Shape` header).

The declared shape is checked against the body's length before any array is allocated, so a
few bytes cannot claim gigabytes.
"""

from __future__ import annotations

import io
import math

import numpy as np

from service.api.errors import invalid

NPY_MEDIA_TYPE = "application/x-npy"
RAW_MEDIA_TYPE = "application/octet-stream"
SHAPE_HEADER = "x-array-shape"
_NUMERIC_KINDS = "fiu"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_npy(body: bytes, field: str) -> np.ndarray:
    """A `.npy` file (format 1.0 or 2.0) of a numeric dtype -> float32; never unpickles."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
        shape, fortran_order, dtype = reader(stream)
    except Exception as exc:
        raise invalid(field, f"not a valid .npy file: {exc}") from None
    if dtype.kind not in _NUMERIC_KINDS:
        raise invalid(field, f"the .npy array has dtype {dtype}, not numbers; send float32")
    count = math.prod(shape)
    data = len(body) - stream.tell()
    if count * dtype.itemsize != data:
        raise invalid(
            field,
            f"the .npy header declares shape {list(shape)} of {dtype}; the data is {data} bytes",
        )
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=stream.tell())
    return _float32(arr.reshape(shape, order="F" if fortran_order else "C"))


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
    if any(dim < 1 for dim in shape):
        raise invalid("X-Array-Shape", "dimensions must be positive integers")
    expected = 4 * math.prod(shape)
    if expected != len(body):
        raise invalid(
            field, f"body has {len(body)} bytes but shape {list(shape)} of float32 needs {expected}"
        )
    return _float32(np.frombuffer(body, dtype="<f4").reshape(shape))


def _float32(arr: np.ndarray) -> np.ndarray:
    # Values beyond float32 become +-inf, which the finiteness checks then name.
    with np.errstate(over="ignore"):
        return arr.astype(np.float32, order="C", copy=False)


def write_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
