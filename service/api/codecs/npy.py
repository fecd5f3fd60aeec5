"""Binary arrays: `.npy` files (`application/x-npy`) and raw little-endian float32
(`application/octet-stream` with the shape in the `X-Array-Shape` header).

The declared shape is checked against the body's length before any array is allocated, so a
few bytes cannot claim gigabytes.
"""

from __future__ import annotations

import io
import math

import numpy as np

from service.api.codecs.arrays import NUMERIC_KINDS, as_float32
from service.api.errors import invalid

NPY_MEDIA_TYPE = "application/x-npy"
RAW_MEDIA_TYPE = "application/octet-stream"
SHAPE_HEADER = "x-array-shape"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


_MAGIC = b"\x93NUMPY"
# Parsed headers by their exact bytes (magic to the end of the header). numpy parses a header
# with `ast.literal_eval`, a large share of a whole request; clients send the same few headers
# (one per shape) again and again. Bounded: cleared when full.
_HeaderInfo = tuple[tuple[int, ...], bool, np.dtype, int]
_parsed_headers: dict[bytes, _HeaderInfo] = {}
_MAX_CACHED_HEADERS = 1024
_LENGTH_BYTES = {1: 2, 2: 4}


def _cached_prefix(body: bytes) -> bytes | None:
    """The bytes from the magic to the end of the header, when the body holds them all."""
    if len(body) < 10 or not body.startswith(_MAGIC):
        return None
    width = _LENGTH_BYTES.get(body[6])
    if width is None or body[7] != 0 or len(body) < 8 + width:
        return None
    end = 8 + width + int.from_bytes(body[8 : 8 + width], "little")
    return body[:end] if end <= len(body) else None


def _parse_header(body: bytes, field: str) -> _HeaderInfo:
    prefix = _cached_prefix(body)
    if prefix is not None:
        cached = _parsed_headers.get(prefix)
        if cached is not None:
            return cached
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
        shape, fortran_order, dtype = reader(stream)
    except Exception:
        # numpy's message can quote the client's header, objects' reprs included: say what
        # is expected instead of echoing what arrived.
        raise invalid(
            field, "not a valid .npy file: expected a format 1.0 or 2.0 header as np.save writes"
        ) from None
    info = (shape, fortran_order, dtype, stream.tell())
    if prefix is not None and len(prefix) == stream.tell():
        if len(_parsed_headers) >= _MAX_CACHED_HEADERS:
            _parsed_headers.clear()
        _parsed_headers[prefix] = info
    return info


def read_npy(body: bytes, field: str) -> np.ndarray:
    """A `.npy` file (format 1.0 or 2.0) of a numeric dtype -> float32; never unpickles."""
    shape, fortran_order, dtype, offset = _parse_header(body, field)
    if dtype.kind not in NUMERIC_KINDS:
        raise invalid(field, f"the .npy array has dtype {dtype}, not numbers; send float32")
    count = math.prod(shape)
    data = len(body) - offset
    if count * dtype.itemsize != data:
        raise invalid(
            field,
            f"the .npy header declares shape {list(shape)} of {dtype}; the data is {data} bytes",
        )
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return as_float32(arr.reshape(shape, order="F" if fortran_order else "C"))


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
    return as_float32(np.frombuffer(body, dtype="<f4").reshape(shape))


# The headers we write, by (dtype, shape): the same few shapes are answered again and again.
_written_headers: dict[tuple[str, tuple[int, ...]], bytes] = {}


def write_npy(arr: np.ndarray) -> bytes:
    """`arr` as a `.npy` file, byte for byte what `np.save` writes."""
    arr = np.ascontiguousarray(arr)
    key = (arr.dtype.str, arr.shape)
    header = _written_headers.get(key)
    if header is None:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
        header = buf.getvalue()
        if len(_written_headers) >= _MAX_CACHED_HEADERS:
            _written_headers.clear()
        _written_headers[key] = header
    return b"".join((header, arr.data))  # one copy of the data, not two
