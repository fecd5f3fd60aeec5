"""Request bodies, generated once per run with a fixed seed and written to files for wrk.

Images are real-looking digits: random latents decoded by the model's own decoder, then
quantised to k/255 like MNIST bytes converted to floats (mostly exact zeros, as a real client
would send). Latents are standard normal float32, serialised the way a client's
`json.dumps(array.tolist())` would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

SEED = 20240501
IMAGE_SIZE = 784


def digit_images(decoder_path: Path, n: int, latent_dim: int, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    z = rng.standard_normal((n, latent_dim)).astype(np.float32)
    (images,) = session.run(None, {session.get_inputs()[0].name: z})
    return (np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def latents(n: int, latent_dim: int, seed: int = SEED + 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype="<f4"), allow_pickle=False)
    return buffer.getvalue()


def oip_binary_bytes(name: str, array: np.ndarray, outputs: tuple[str, ...]) -> bytes:
    """An OIP v2 inference request: JSON header, then the tensor in binary (as tritonclient
    sends it), every output asked in binary."""
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }
    return json_bytes(header) + data


def json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def build_bodies(model_dir: Path, latent_dim: int) -> dict[str, bytes]:
    """Every body a scenario names (see `benchmarks.scenarios`), keyed by file name."""
    images = digit_images(model_dir / "decoder.onnx", 64, latent_dim)
    z = latents(64, latent_dim)
    ends = latents(2, latent_dim, seed=SEED + 2)
    return {
        "encode-1.json": json_bytes({"images": images[:1].tolist(), "seed": 7}),
        "encode-64.json": json_bytes({"images": images.tolist(), "seed": 7}),
        "encode-64.npy": npy_bytes(images),
        "encode-64.oip": oip_binary_bytes("images", images, ("mu", "sigma")),
        "decode-1.json": json_bytes({"z": z[:1].tolist()}),
        "decode-64.json": json_bytes({"z": z.tolist()}),
        "decode-64.npy": npy_bytes(z),
        "sample-16.json": json_bytes({"n": 16, "seed": 7}),
        "interpolate-10.json": json_bytes(
            {
                "start_z": ends[0].tolist(),
                "end_z": ends[1].tolist(),
                "steps": 10,
                "method": "linear",
            }
        ),
    }


def write_bodies(model_dir: Path, latent_dim: int, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, body in build_bodies(model_dir, latent_dim).items():
        path = out_dir / name
        path.write_bytes(body)
        paths[name] = path
    return paths
