"""The report's anomaly section: the anomaly score (`vae_manifest.scoring`, as `POST /score`
computes it) of the MNIST test digits against five kinds of images that are not MNIST digits,
and how well it separates them (AUROC: the chance that an image of the other kind scores higher
than a test digit; 0.5 is chance, 1.0 perfect)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.calibrate import SAMPLES, SEED, score_images
from training.images import MNIST_SIDE, pad_images
from training.onnx_model import OnnxVAE
from vae_manifest import scoring

SHIFT_PIXELS = 6
NOISE_SEED = 1


def _square(images: np.ndarray) -> np.ndarray:
    return images.reshape(-1, MNIST_SIDE, MNIST_SIDE)


def _flat(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.float32)


def _shifted(images: np.ndarray) -> np.ndarray:
    out = np.zeros_like(_square(images))
    out[:, :, SHIFT_PIXELS:] = _square(images)[:, :, :-SHIFT_PIXELS]
    return _flat(out)


# Name -> how to make that kind of image from the test digits (28x28, in [0, 1]).
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uniform noise": lambda x: np.random.default_rng(NOISE_SEED).random(x.shape, np.float32),
    "inverted digits": lambda x: _flat(1.0 - x),
    "digits rotated 90 degrees": lambda x: _flat(np.rot90(_square(x), k=1, axes=(1, 2))),
    f"digits shifted {SHIFT_PIXELS} pixels right": _shifted,
    "mirrored digits": lambda x: _flat(_square(x)[:, :, ::-1]),
}


@dataclass(frozen=True)
class AnomalyResult:
    name: str
    scores: np.ndarray  # neg_elbo per image
    auroc: float | None  # None for the test digits themselves


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """P(outlier score > inlier score) + half the ties (the Mann-Whitney statistic)."""
    values = np.concatenate([inliers, outliers])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    # Average ranks over ties.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    n_in, n_out = len(inliers), len(outliers)
    rank_sum = ranks[n_in:].sum()
    return float((rank_sum - n_out * (n_out + 1) / 2) / (n_in * n_out))


def anomaly_results(
    model_dir_vae: OnnxVAE, images: np.ndarray, side: int, kind: scoring.ReconstructionKind
) -> list[AnomalyResult]:
    """The test digits' scores, then each transform's with its AUROC against them."""

    def score(x: np.ndarray) -> np.ndarray:
        neg_elbo, _ = score_images(model_dir_vae, pad_images(x, side), kind, SAMPLES, SEED)
        return neg_elbo

    digits = score(images)
    results = [AnomalyResult("MNIST test digits", digits, None)]
    for name, transform in TRANSFORMS.items():
        other = score(transform(images))
        results.append(AnomalyResult(name, other, auroc(digits, other)))
    return results
