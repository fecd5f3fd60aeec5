"""A deliberately naive FastAPI + ONNX Runtime app: the baseline of the benchmark.

Written the way a first hand-made service usually is: pydantic `list[list[float]]` bodies
(every float validated one by one), `.tolist()` into FastAPI's default JSON response, default
ONNX Runtime session options, sync endpoints in FastAPI's thread pool, one uvicorn worker.
Same routes and request bodies as the real service for the benchmark scenarios. Run it with
plain uvicorn: `VAE_MODEL_DIR=models/mnist-vae uvicorn benchmarks.naive_app:app`.
Not hardened: do not serve it to anyone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_DIR = Path(os.environ.get("VAE_MODEL_DIR", "models/mnist-vae"))

encoder = ort.InferenceSession(str(MODEL_DIR / "encoder.onnx"))
decoder = ort.InferenceSession(str(MODEL_DIR / "decoder.onnx"))
latent_dim = decoder.get_inputs()[0].shape[1]

app = FastAPI(title="naive VAE baseline")


class EncodeRequest(BaseModel):
    images: list[list[float]]
    seed: int | None = None


class DecodeRequest(BaseModel):
    z: list[list[float]]


class SampleRequest(BaseModel):
    n: int = 16
    seed: int | None = None
    temperature: float = 1.0


class InterpolateRequest(BaseModel):
    start_z: list[float]
    end_z: list[float]
    steps: int = 10
    method: str = "linear"


# Endpoints carry no return annotations on purpose, as in most hand-written apps (an annotation
# would make FastAPI add a response model, a different kind of naive).


def decode(z: np.ndarray) -> np.ndarray:
    return decoder.run(None, {"z": z.astype(np.float32)})[0]


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.post("/encode")
def encode(request: EncodeRequest):
    images = np.array(request.images, dtype=np.float32)
    mu, sigma = encoder.run(None, {"images": images})
    rng = np.random.default_rng(request.seed)
    z = mu + sigma * rng.standard_normal(mu.shape).astype(np.float32)
    return {"mu": mu.tolist(), "sigma": sigma.tolist(), "z": z.tolist()}


@app.post("/decode")
def decode_route(request: DecodeRequest):
    return {"images": decode(np.array(request.z, dtype=np.float32)).tolist()}


@app.post("/sample")
def sample(request: SampleRequest):
    rng = np.random.default_rng(request.seed)
    z = rng.standard_normal((request.n, latent_dim)) * request.temperature
    return {"z": z.tolist(), "images": decode(z).tolist()}


@app.post("/interpolate")
def interpolate(request: InterpolateRequest):
    a, b = np.array(request.start_z), np.array(request.end_z)
    t = np.linspace(0.0, 1.0, request.steps)[:, None]
    if request.method == "slerp":
        omega = np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
        z = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    else:
        z = (1 - t) * a + t * b
    return {"z": z.tolist(), "images": decode(z).tolist()}
