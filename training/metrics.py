"""Test-set metrics of an exported model: the numbers in the manifest and the report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import ReconstructionKind
from training.onnx_model import OnnxVAE
from vae_manifest.scoring import kl_per_element, reconstruction_per_image

ACTIVE_UNIT_THRESHOLD = 0.01
"""A latent dimension is active when Cov_x(E[z|x]) > this (Burda et al., 2016)."""

EVAL_SEED = 0


@dataclass(frozen=True)
class Evaluation:
    """Per-image means over the test set (z sampled once) and the arrays behind them."""

    loss: float
    reconstruction: float
    kl: float
    kl_per_dim: list[float]
    active_units: int
    mu_variance: list[float]
    mu: np.ndarray
    z: np.ndarray


def evaluate_onnx(
    vae: OnnxVAE, images: np.ndarray, kind: ReconstructionKind = "sse", seed: int = EVAL_SEED
) -> Evaluation:
    """Encode the images, sample z once (seeded), decode, and measure."""
    mu, sigma = vae.encode(images)
    eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(np.float32)
    z = mu + sigma * eps
    rec = reconstruction_per_image(vae.decode(z), images, kind)
    kl = kl_per_element(mu, sigma)
    mu_variance = mu.astype(np.float64).var(axis=0)
    return Evaluation(
        loss=float((rec + kl.sum(axis=1)).mean()),
        reconstruction=float(rec.mean()),
        kl=float(kl.sum(axis=1).mean()),
        kl_per_dim=[float(v) for v in kl.mean(axis=0)],
        active_units=int((mu_variance > ACTIVE_UNIT_THRESHOLD).sum()),
        mu_variance=[float(v) for v in mu_variance],
        mu=mu,
        z=z,
    )
