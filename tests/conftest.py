"""Fixtures shared by every test directory: real model directories on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_model import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "mnist-vae"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight VAE (latent_dim 4): real ONNX files, real manifest. Do not modify;
    copy it (or call build_tiny_model) to tamper with files."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vae"), latent_dim=4, seed=0)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The committed default model; tests using it skip while it has not been trained yet."""
    if not (DEFAULT_MODEL_DIR / "model.json").is_file():
        pytest.skip(f"default model not present at {DEFAULT_MODEL_DIR}")
    return DEFAULT_MODEL_DIR
