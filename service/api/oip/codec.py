"""OIP v2 inference bodies: JSON tensors (flat or nested `data`) and the binary tensor data
extension in both directions. No HTTP framework and no model here.

Binary extension (Triton's): with an `Inference-Header-Content-Length: N` header, the first N
bytes of the body are the JSON header and the rest are the tensors whose JSON entry has
`parameters.binary_data_size`, concatenated in the JSON's order. An answer carries a tensor
in binary when its requested output says `parameters.binary_data: true`, or, for outputs not
named, when the request's `parameters.binary_data_output` is true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.api.echo import quoted

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
JSON_MEDIA_TYPE = "application/json"
# OIP datatype -> numpy dtype (little-endian, as the binary extension defines).
NUMPY_TYPES = {"FP32": np.dtype("<f4")}


class OIPError(Exception):
    """A malformed inference request: answered 400 with `{"error": message}`."""


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: as the request's binary_data_output says


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]  # by name, shaped as declared in the request
    outputs: tuple[RequestedOutput, ...] | None  # None: every output
    binary_output: bool  # the request's parameters.binary_data_output
    parameters: dict[str, Any]  # the request's parameters (a model may read its own)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OIPError(f"{what} must be a JSON object")
    return value


def _bool_parameter(parameters: dict[str, Any], key: str, what: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise OIPError(f"{what}: parameter {key!r} must be true or false")
    return value


MAX_DIMS = 8
MAX_DIM = 2**31 - 1


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_DIMS
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in value
        )
    ):
        raise OIPError(
            f"input {quoted(name)}: 'shape' must be a list of at most {MAX_DIMS} integers "
            f"from 0 to {MAX_DIM}"
        )
    return tuple(value)


def _json_tensor(data: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(data, list):
        raise OIPError(f"input {quoted(name)}: 'data' must be a list of numbers")
    try:
        array = np.asarray(data)
    except ValueError:  # ragged nesting
        raise OIPError(f"input {quoted(name)}: 'data' is not a regular array") from None
    if array.size and array.dtype.kind not in "fiu":
        raise OIPError(f"input {quoted(name)}: 'data' must hold numbers only")
    if array.size != math.prod(shape):
        raise OIPError(
            f"input {quoted(name)}: 'data' has {array.size} values, shape {list(shape)} "
            f"needs {math.prod(shape)}"
        )
    try:
        return array.astype(dtype, copy=False).reshape(shape)
    except ValueError:  # a shape numpy cannot make, even with no elements
        raise OIPError(f"input {quoted(name)}: shape {list(shape)} is not possible") from None


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request, each input as a numpy array of its declared shape and datatype."""
    if header_length is None:
        header, binary = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 < length <= len(body):
            raise OIPError(
                f"{HEADER_LENGTH} must be a length within the body ({len(body)} bytes), "
                f"got {quoted(header_length)}"
            )
        header, binary = body[:length], memoryview(body)[length:]
    try:
        request = _object(orjson.loads(header), "the inference request")
    except orjson.JSONDecodeError as exc:
        raise OIPError(f"the inference request is not valid JSON: {exc}") from None

    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OIPError("'id' must be a string")
    parameters = _object(request.get("parameters") or {}, "'parameters'")
    binary_output = bool(_bool_parameter(parameters, "binary_data_output", "request"))

    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise OIPError("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        tensor = _object(raw, "each input")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise OIPError("each input needs a 'name' string")
        if name in inputs:
            raise OIPError(f"input {quoted(name)} is given twice")
        datatype = tensor.get("datatype")
        dtype = NUMPY_TYPES.get(datatype) if isinstance(datatype, str) else None
        if dtype is None:
            raise OIPError(
                f"input {quoted(name)}: datatype {quoted(datatype)} is not supported "
                f"(expected one of {sorted(NUMPY_TYPES)})"
            )
        shape = _shape(tensor.get("shape"), name)
        params = _object(tensor.get("parameters") or {}, f"input {quoted(name)}: 'parameters'")
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise OIPError(f"input {quoted(name)}: needs 'data' or binary_data_size")
            inputs[name] = _json_tensor(tensor["data"], name, shape, dtype)
            continue
        expected = math.prod(shape) * dtype.itemsize
        if isinstance(size, bool) or not isinstance(size, int) or size != expected:
            raise OIPError(
                f"input {quoted(name)}: binary_data_size must be {expected} bytes for shape "
                f"{list(shape)} of {datatype}, got {quoted(size)}"
            )
        if offset + size > len(binary):
            raise OIPError(
                f"input {quoted(name)}: the body holds {len(binary) - offset} bytes of binary "
                f"data for it, binary_data_size says {size}"
            )
        chunk = binary[offset : offset + size]
        offset += size
        try:
            inputs[name] = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        except ValueError:
            raise OIPError(f"input {quoted(name)}: shape {list(shape)} is not possible") from None
    if offset != len(binary):
        raise OIPError(
            f"the body has {len(binary) - offset} bytes of binary data beyond the inputs'"
        )

    outputs = None
    raw_outputs = request.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise OIPError("'outputs' must be a list")
        requested = []
        for raw in raw_outputs:
            output = _object(raw, "each requested output")
            name = output.get("name")
            if not isinstance(name, str):
                raise OIPError("each requested output needs a 'name' string")
            params = _object(output.get("parameters") or {}, f"output {quoted(name)}")
            binary_flag = _bool_parameter(params, "binary_data", f"output {quoted(name)}")
            requested.append(RequestedOutput(name, binary_flag))
        outputs = tuple(requested)
    return InferRequest(request_id, inputs, outputs, binary_output, parameters)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    results: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The answer's body and, when it carries binary tensors, its JSON header's length."""
    wanted = request.outputs or tuple(RequestedOutput(name, None) for name in results)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in wanted:
        array = results[output.name]
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": "FP32",
            "shape": list(array.shape),
        }
        binary = request.binary_output if output.binary is None else output.binary
        if binary:
            blob = np.ascontiguousarray(array, dtype=NUMPY_TYPES["FP32"]).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = np.ascontiguousarray(array, dtype=np.float32).ravel()
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = entries
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
