"""The exported VAE through ONNX Runtime: what the service will run, used for parity and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxVAE:
    """Encoder and decoder sessions over a model directory's two ONNX files."""

    def __init__(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        self.encoder = _session(model_dir / ENCODER_FILE)
        self.decoder = _session(model_dir / DECODER_FILE)

    def encode(self, images: np.ndarray, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """images float32 [n, H*W] -> (mu, sigma), each [n, d]."""
        parts = [
            self.encoder.run(["mu", "sigma"], {"images": images[i : i + batch_size]})
            for i in range(0, len(images), batch_size)
        ]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def decode(self, z: np.ndarray, batch_size: int = 2000) -> np.ndarray:
        """z float32 [n, d] -> images [n, H*W] in [0, 1]."""
        parts = [
            self.decoder.run(["images"], {"z": z[i : i + batch_size].astype(np.float32)})[0]
            for i in range(0, len(z), batch_size)
        ]
        return np.concatenate(parts)
