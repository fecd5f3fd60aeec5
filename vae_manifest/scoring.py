"""How unusual an image is for a model: one formula for training (the calibration stored in
the manifest, the report's anomaly section) and the service (`POST /score`), so a score and
the quantiles it is compared with always mean the same thing. numpy only.

For an image x (D pixels), the encoder's q(z|x) = N(mu, sigma^2), k draws
z_j = mu + sigma * eps_j, eps_j ~ N(0, I), and R(x, z) the model's own reconstruction loss of
x from the decoder's image at z (sum of squared errors, or binary cross-entropy):

- neg_elbo = (1/k) sum_j R(x, z_j) + KL(q(z|x) || N(0, I)): the training loss per image, a
  Monte-Carlo estimate whose KL term is exact.
- iwae = -log (1/k) sum_j exp(-R(x, z_j)) p(z_j) / q(z_j | x): the importance-weighted bound
  (Burda et al., 2016) with exp(-R) as the likelihood up to a constant (exact for
  cross-entropy; for squared error, a Gaussian of variance 1/2 without its normaliser, the
  units the model was trained in). It is at most neg_elbo in expectation and tightens as k grows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ReconstructionKind = Literal["sse", "bce"]
# Draws of z per image unless asked otherwise (the service's default, the calibration's).
DEFAULT_SAMPLES = 4
# The calibration keeps the score's percentiles 0, 1, ..., 100 on held-out digits.
PERCENTILES = np.arange(101, dtype=np.float64)


def kl_per_element(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(N(mu, sigma^2) || N(0, 1)) per element, in float64."""
    mu, var = mu.astype(np.float64), np.square(sigma.astype(np.float64))
    return 0.5 * (np.square(mu) + var - 1.0 - np.log(np.maximum(var, 1e-300)))


def reconstruction_per_image(
    reconstructions: np.ndarray, images: np.ndarray, kind: ReconstructionKind
) -> np.ndarray:
    """R(x, z) per image (over the last axis), in float64."""
    x, r = images.astype(np.float64), reconstructions.astype(np.float64)
    if kind == "bce":
        # Clamped like torch's binary_cross_entropy (log clamped at -100).
        log_r = np.maximum(np.log(np.maximum(r, 1e-300)), -100.0)
        log_1r = np.maximum(np.log(np.maximum(1.0 - r, 1e-300)), -100.0)
        return -(x * log_r + (1.0 - x) * log_1r).sum(axis=-1)
    return np.square(r - x).sum(axis=-1)


def scores(
    images: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    eps: np.ndarray,
    reconstructions: np.ndarray,
    kind: ReconstructionKind,
) -> tuple[np.ndarray, np.ndarray]:
    """(neg_elbo, iwae), each (n,), from images (n, D), mu and sigma (n, d), the draws eps
    (k, n, d) and the decoder's images at z = mu + sigma * eps, (k, n, D)."""
    k = eps.shape[0]
    rec = reconstruction_per_image(reconstructions, images[None], kind)  # (k, n)
    neg_elbo = rec.mean(axis=0) + kl_per_element(mu, sigma).sum(axis=-1)
    mu64, sigma64, eps64 = mu.astype(np.float64), sigma.astype(np.float64), eps.astype(np.float64)
    z = mu64 + sigma64 * eps64
    # log p(z) - log q(z|x) per draw; the 2*pi normalisers cancel.
    log_ratio = (
        -0.5 * np.square(z).sum(axis=-1)
        + 0.5 * np.square(eps64).sum(axis=-1)
        + np.log(np.maximum(sigma64, 1e-300)).sum(axis=-1)
    )
    log_w = -rec + log_ratio  # (k, n)
    top = log_w.max(axis=0)
    iwae = -(top + np.log(np.exp(log_w - top).sum(axis=0)) - np.log(k))
    return neg_elbo, iwae


def percentile_of(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Where each value falls in the calibration (0-100, linear between percentiles)."""
    return np.interp(values, quantiles, PERCENTILES)


def threshold_at(quantiles: np.ndarray, quantile: float) -> float:
    """The score at `quantile` (0-1) of the calibration."""
    return float(np.interp(quantile * 100.0, PERCENTILES, quantiles))
