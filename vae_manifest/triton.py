"""A model as Triton Inference Server and the Open Inference Protocol (OIP v2) see it, derived
from the manifest alone: each VAE is two OIP models, `<name>-encoder` and `<name>-decoder`,
whose tensors are the ONNX graphs' own.

One declaration for both sides: the service answers `/v2/models/...` metadata and
`/v2/models/.../config` from these functions, and `training export-triton` writes the same
configuration as `config.pbtxt` (Triton's text format of its `ModelConfig` protobuf).
"""

from __future__ import annotations

from typing import Any, Literal

from vae_manifest import GraphSpec, ModelManifest, TensorSpec

Graph = Literal["encoder", "decoder"]
GRAPHS: tuple[Graph, ...] = ("encoder", "decoder")
# The one version of each OIP model (Triton's repository layout: `<model>/1/model.onnx`).
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
# manifest dtype -> (OIP datatype, Triton config data_type)
DATATYPES = {"float32": ("FP32", "TYPE_FP32")}
# Fields of Triton's config whose values are enum names (unquoted in the text format).
_ENUM_FIELDS = frozenset({"data_type"})


def model_name(manifest: ModelManifest, graph: Graph) -> str:
    return f"{manifest.name}-{graph}"


def graph_spec(manifest: ModelManifest, graph: Graph) -> GraphSpec:
    return manifest.encoder if graph == "encoder" else manifest.decoder


def oip_shape(tensor: TensorSpec) -> list[int]:
    """The shape with -1 for every symbolic (batch) dimension."""
    return [dim if isinstance(dim, int) else -1 for dim in tensor.shape]


def tensor_metadata(tensor: TensorSpec) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": DATATYPES[tensor.dtype][0], "shape": oip_shape(tensor)}


def model_metadata(manifest: ModelManifest, graph: Graph) -> dict[str, Any]:
    """OIP v2 model metadata (`GET /v2/models/{name}`)."""
    spec = graph_spec(manifest, graph)
    return {
        "name": model_name(manifest, graph),
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(t) for t in spec.inputs],
        "outputs": [tensor_metadata(t) for t in spec.outputs],
    }


def _config_tensor(tensor: TensorSpec) -> dict[str, Any]:
    # With max_batch_size > 0 Triton's dims leave out the batch axis (the first).
    return {
        "name": tensor.name,
        "data_type": DATATYPES[tensor.dtype][1],
        "dims": oip_shape(tensor)[1:],
    }


def model_config(manifest: ModelManifest, graph: Graph, max_batch_size: int) -> dict[str, Any]:
    """Triton's model configuration, in its JSON form (`GET /v2/models/{name}/config`)."""
    spec = graph_spec(manifest, graph)
    return {
        "name": model_name(manifest, graph),
        "platform": PLATFORM,
        "max_batch_size": max_batch_size,
        "input": [_config_tensor(t) for t in spec.inputs],
        "output": [_config_tensor(t) for t in spec.outputs],
        "dynamic_batching": {},
    }


def config_pbtxt(config: dict[str, Any]) -> str:
    """`model_config`'s dict in protobuf text format (what Triton reads as config.pbtxt)."""
    return "".join(_pbtxt_fields(config, 0))


def _pbtxt_fields(message: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for key, value in message.items():
        values = value if isinstance(value, list) and not _is_scalar_list(value) else [value]
        for item in values:
            if isinstance(item, dict):
                lines.append(f"{pad}{key} {{\n")
                lines += _pbtxt_fields(item, depth + 1)
                lines.append(f"{pad}}}\n")
            else:
                lines.append(f"{pad}{key}: {_pbtxt_scalar(key, item)}\n")
    return lines


def _is_scalar_list(value: list[Any]) -> bool:
    return all(not isinstance(item, dict) for item in value)


def _pbtxt_scalar(key: str, value: Any) -> str:
    if isinstance(value, list):
        return "[ " + ", ".join(_pbtxt_scalar(key, v) for v in value) + " ]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if key in _ENUM_FIELDS:
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
