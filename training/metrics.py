"""Test-set metrics of an exported model: the numbers in the manifest and the report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import ReconstructionKind
from training.onnx_model import OnnxVAE

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


def kl_per_element(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(N(mu, sigma^2) || N(0, 1)) per element, in float64."""
    mu, var = mu.astype(np.float64), np.square(sigma.astype(np.float64))
    return 0.5 * (np.square(mu) + var - 1.0 - np.log(np.maximum(var, 1e-300)))


def reconstruction_per_image(
    reconstructions: np.ndarray, images: np.ndarray, kind: ReconstructionKind
) -> np.ndarray:
    x, r = images.astype(np.float64), reconstructions.astype(np.float64)
    if kind == "bce":
        # Clamped like torch's binary_cross_entropy (log clamped at -100).
        log_r = np.maximum(np.log(np.maximum(r, 1e-300)), -100.0)
        log_1r = np.maximum(np.log(np.maximum(1.0 - r, 1e-300)), -100.0)
        return -(x * log_r + (1.0 - x) * log_1r).sum(axis=1)
    return np.square(r - x).sum(axis=1)


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
