"""`python -m training export-triton`: each config.pbtxt parses with Triton's own `ModelConfig`
protobuf and agrees with its ONNX graph; the ONNX files are the model directory's, byte for
byte; torch is never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from vae_manifest import load_manifest, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[2]
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32}


@pytest.fixture(scope="module")
def repository(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    script = (
        "import sys; from training.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    command = [sys.executable, "-c", script, "export-triton"]
    command += ["--model-dir", str(default_model_dir), "--out", str(out), "--max-batch-size", "64"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def graph_tensors(values) -> list[tuple[str, int, list[int]]]:
    """(name, element type, dims without the batch axis) of each graph input or output."""
    out = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [d.dim_value for d in tensor.shape.dim[1:]]
        assert not tensor.shape.dim[0].HasField("dim_value"), "the batch axis must be dynamic"
        out.append((value.name, ONNX_TO_TRITON[tensor.elem_type], dims))
    return out


def config_tensors(tensors) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in tensors]


@pytest.mark.parametrize("graph", ["encoder", "decoder"])
def test_each_config_parses_as_triton_model_config_and_matches_its_graph(
    repository, default_model_dir, graph
):
    manifest = load_manifest(default_model_dir)
    name = f"{manifest.name}-{graph}"
    config = text_format.Parse(
        (repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert config.HasField("dynamic_batching")
    model_file = repository / name / "1" / "model.onnx"
    spec = getattr(manifest, graph)
    assert sha256_file(model_file) == spec.sha256  # byte-identical to the model directory's
    assert model_file.read_bytes() == (default_model_dir / spec.file).read_bytes()
    onnx_graph = onnx.load(str(model_file)).graph
    initializers = {i.name for i in onnx_graph.initializer}
    inputs = [v for v in onnx_graph.input if v.name not in initializers]
    assert config_tensors(config.input) == graph_tensors(inputs)
    assert config_tensors(config.output) == graph_tensors(onnx_graph.output)


def test_the_repository_holds_exactly_the_two_models(repository, default_model_dir):
    name = load_manifest(default_model_dir).name
    files = sorted(str(p.relative_to(repository)) for p in repository.rglob("*") if p.is_file())
    assert files == [
        f"{name}-decoder/1/model.onnx",
        f"{name}-decoder/config.pbtxt",
        f"{name}-encoder/1/model.onnx",
        f"{name}-encoder/config.pbtxt",
    ]
