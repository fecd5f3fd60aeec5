"""Writes small MNIST-format IDX files for tests (no network, no real data needed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from training.mnist.idx import IDX_FILES, IMAGES_MAGIC, LABELS_MAGIC


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def digit_like_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 28, 28] images: a bright bar whose position depends on the label, plus noise."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 4 + 2 * int(label)
        images[i, row : row + 3, 6:22] = 255
    return images, labels.astype(np.uint8)


def write_idx_dir(directory: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = digit_like_images(n, rng)
        write_gz(directory / IDX_FILES[f"{split}_images"], idx_bytes(images, IMAGES_MAGIC))
        write_gz(directory / IDX_FILES[f"{split}_labels"], idx_bytes(labels, LABELS_MAGIC))
    return directory
