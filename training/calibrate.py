"""`python -m training calibrate`: the anomaly score (`vae_manifest.scoring`) of held-out real
digits, its percentiles written into the model's manifest (what `POST /score` places a served
image's score against). `all` runs it after the export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.images import pad_images
from training.onnx_model import OnnxVAE
from vae_manifest import Calibration, ModelManifest, load_manifest, scoring

SAMPLES = scoring.DEFAULT_SAMPLES
SEED = 0


def score_images(
    vae: OnnxVAE,
    images: np.ndarray,
    kind: scoring.ReconstructionKind,
    samples: int = SAMPLES,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """(neg_elbo, iwae) per image, with the draws the service makes for this seed:
    `default_rng(seed).standard_normal((samples, n, d))`."""
    mu, sigma = vae.encode(images)
    n, d = mu.shape
    eps = np.random.default_rng(seed).standard_normal((samples, n, d))
    z = (mu[None] + sigma[None] * eps.astype(np.float32)).astype(np.float32)
    reconstructions = vae.decode(z.reshape(samples * n, d)).reshape(samples, n, -1)
    return scoring.scores(images, mu, sigma, eps, reconstructions, kind)


def calibrate_model_dir(
    model_dir: str | Path,
    images: np.ndarray,
    data: str,
    samples: int = SAMPLES,
    seed: int = SEED,
) -> ModelManifest:
    """Score `images` (28x28 digits, placed on the model's canvas) and store the percentiles."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    images = pad_images(images, manifest.image_shape[0])
    kind = manifest.metrics.reconstruction_kind
    neg_elbo, _ = score_images(OnnxVAE(model_dir), images, kind, samples, seed)
    calibration = Calibration(
        samples=samples,
        seed=seed,
        data=data,
        size=len(images),
        quantiles=[float(q) for q in np.percentile(neg_elbo, scoring.PERCENTILES)],
    )
    updated = manifest.model_copy(update={"calibration": calibration})
    updated.write(model_dir)
    return updated
