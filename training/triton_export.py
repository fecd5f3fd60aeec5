"""`python -m training export-triton`: a model directory as a Triton Inference Server model
repository, one Triton model per graph (`<name>-encoder`, `<name>-decoder`), the same names
the service's OIP v2 routes use. The ONNX files are copied byte for byte (the manifest's
sha256 is checked on both ends); the configuration comes from `vae_manifest.triton`, as the
service's `/v2/models/{name}/config` does. Needs neither torch nor ONNX Runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

from vae_manifest import ManifestError, load_manifest, sha256_file
from vae_manifest import triton as tm

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"  # Triton's default file name for platform onnxruntime_onnx


def export_triton(model_dir: Path, out_dir: Path, max_batch_size: int) -> list[Path]:
    """Write `out_dir/<model>/config.pbtxt` and `out_dir/<model>/1/model.onnx` for each graph;
    the written model directories."""
    manifest = load_manifest(model_dir)  # verifies every graph's sha256
    written = []
    for graph in tm.GRAPHS:
        spec = tm.graph_spec(manifest, graph)
        target = out_dir / tm.model_name(manifest, graph)
        version_dir = target / tm.VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        copy = version_dir / MODEL_FILE
        shutil.copyfile(model_dir / spec.file, copy)
        if sha256_file(copy) != spec.sha256:
            raise ManifestError(f"{copy}: the copy does not match the manifest's sha256")
        config = tm.model_config(manifest, graph, max_batch_size)
        (target / CONFIG_FILE).write_text(tm.config_pbtxt(config), encoding="utf-8")
        written.append(target)
    return written
