"""ONNX export with a parity check and the model manifest.

`encoder.onnx`: images [batch, H*W] -> mu, sigma [batch, d] (sigma computed inside the graph:
|sigma| or exp(logvar / 2)). `decoder.onnx`: z [batch, d] -> images [batch, H*W] in [0, 1]
(784 for 28x28).
Every export compares ONNX Runtime against PyTorch and fails if they differ by more than 1e-5.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from training.config import TrainConfig
from training.errors import TrainingError
from training.images import pad_images
from training.metrics import ACTIVE_UNIT_THRESHOLD, EVAL_SEED, evaluate_onnx
from training.model import VAE, ExportEncoder
from training.onnx_model import DECODER_FILE, ENCODER_FILE, OnnxVAE
from vae_manifest import DatasetSpec, GraphSpec, Metrics, ModelManifest, TensorSpec, sha256_file

OPSET = 18
PARITY_TOLERANCE = 1e-5
PARITY_SAMPLES = 512
BATCH_DIM = "batch"


class ExportError(TrainingError):
    """The exported graphs are invalid or disagree with the PyTorch model."""


@dataclass(frozen=True)
class ParityReport:
    samples: int
    encoder_max_abs_diff: float
    decoder_max_abs_diff: float


def _export_graph(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: list[str],
) -> None:
    module.eval()
    # The exporter is chatty (progress lines, deprecation notes); keep the CLI output readable.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=output_names,
            dynamic_shapes={input_name: {0: torch.export.Dim(BATCH_DIM)}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name}: onnx.checker failed: {exc}") from None
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [input_name] or outputs != output_names:
        raise ExportError(f"{path.name}: graph I/O {inputs} -> {outputs}, expected {output_names}")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.dim_param != BATCH_DIM:
        raise ExportError(f"{path.name}: batch axis is not dynamic")


def check_parity(model: VAE, vae: OnnxVAE, images: np.ndarray, seed: int = 0) -> ParityReport:
    """ONNX Runtime vs PyTorch on `images` plus as many uniform-noise images and N(0, I) codes."""
    rng = np.random.default_rng(seed)
    n = max(len(images), PARITY_SAMPLES // 2)
    enc_in = np.concatenate([images, rng.random((n, images.shape[1]), dtype=np.float32)])
    dec_in = rng.standard_normal((2 * n, model.latent_dim)).astype(np.float32)
    exporter = ExportEncoder(model).eval()
    with torch.no_grad():
        mu_t, sigma_t = (t.numpy() for t in exporter(torch.from_numpy(enc_in)))
        dec_t = model.decoder(torch.from_numpy(dec_in)).numpy()
    mu_o, sigma_o = vae.encode(enc_in)
    dec_o = vae.decode(dec_in)
    enc_diff = float(max(np.abs(mu_t - mu_o).max(), np.abs(sigma_t - sigma_o).max()))
    dec_diff = float(np.abs(dec_t - dec_o).max())
    report = ParityReport(len(enc_in), enc_diff, dec_diff)
    if not (enc_diff <= PARITY_TOLERANCE and dec_diff <= PARITY_TOLERANCE):
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree: encoder max |diff| {enc_diff:.3g}, "
            f"decoder {dec_diff:.3g} (tolerance {PARITY_TOLERANCE})"
        )
    if (sigma_o < 0).any():
        raise ExportError("exported sigma has negative values")
    return report


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _graph_spec(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> GraphSpec:
    opset = next(
        o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")
    )
    return GraphSpec(
        file=path.name, sha256=sha256_file(path), opset=opset, inputs=inputs, outputs=outputs
    )


def export_model(
    model: VAE,
    config: TrainConfig,
    *,
    model_dir: str | Path,
    dataset: dict[str, Any],
    test_images: np.ndarray,
    training_info: dict[str, Any] | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> ModelManifest:
    """Export both graphs, check them, measure the test set and write `model.json`.

    Everything is written to a temporary directory and moved into `model_dir` only after every
    check passed, so a failed export never leaves a half-updated model directory.
    """
    model = model.cpu().eval()
    test_images = pad_images(test_images, config.image_side)
    size, side = config.image_size, config.image_side
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    d = model.latent_dim
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        _export_graph(
            ExportEncoder(model), torch.rand(2, size), tmp / ENCODER_FILE, "images", ["mu", "sigma"]
        )
        _export_graph(model.decoder, torch.randn(2, d), tmp / DECODER_FILE, "z", ["images"])
        vae = OnnxVAE(tmp)
        parity = check_parity(model, vae, test_images[: PARITY_SAMPLES // 2])
        evaluation = evaluate_onnx(vae, test_images, config.reconstruction, EVAL_SEED)
        batch = BATCH_DIM
        manifest = ModelManifest(
            name=config.name,
            version=config.version,
            created_at=datetime.now(UTC).replace(microsecond=0),
            description=(
                f"VAE on MNIST{'' if side == 28 else f' digits centred on {side}x{side}'} "
                f"(tutorial architecture {size}-{config.encoder_hidden}-({d},{d}) / "
                f"{d}-{config.decoder_hidden}-{size}, {config.parameterization} "
                f"parameterisation, {config.reconstruction.upper()} + KL loss)"
            ),
            image_shape=(side, side),
            latent_dim=d,
            parameterization=config.parameterization,
            encoder=_graph_spec(
                tmp / ENCODER_FILE,
                [TensorSpec(name="images", shape=[batch, size])],
                [
                    TensorSpec(name="mu", shape=[batch, d]),
                    TensorSpec(name="sigma", shape=[batch, d]),
                ],
            ),
            decoder=_graph_spec(
                tmp / DECODER_FILE,
                [TensorSpec(name="z", shape=[batch, d])],
                [TensorSpec(name="images", shape=[batch, size])],
            ),
            dataset=DatasetSpec(**dataset),
            training={**config.to_dict(), "optimizer": "Adam", **(training_info or {})},
            libraries=library_versions(),
            metrics=Metrics(
                loss=evaluation.loss,
                reconstruction=evaluation.reconstruction,
                kl=evaluation.kl,
                kl_per_dim=evaluation.kl_per_dim,
                active_units=evaluation.active_units,
                reconstruction_kind=config.reconstruction,
                extra={
                    "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
                    "eval_seed": float(EVAL_SEED),
                    "parity_samples": float(parity.samples),
                    "parity_encoder_max_abs_diff": parity.encoder_max_abs_diff,
                    "parity_decoder_max_abs_diff": parity.decoder_max_abs_diff,
                    **(extra_metrics or {}),
                },
            ),
        )
        manifest_file = manifest.write(tmp).name
        # The manifest last: a reader never sees a model.json naming files not yet in place.
        for name in (ENCODER_FILE, DECODER_FILE, manifest_file):
            os.replace(tmp / name, model_dir / name)
    return manifest
