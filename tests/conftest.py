"""Fixtures shared by every test directory: real model directories on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from tests.fixtures.tiny_model import build_tiny_model

# Property-based tests draw the same examples on every run (and keep no local database), so a
# failure in CI reproduces anywhere.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "mnist-vae"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight VAE (latent_dim 4): real ONNX files, real manifest. Do not modify;
    copy it (or call build_tiny_model) to tamper with files."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vae"), latent_dim=4, seed=0)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The committed default model. It is part of the repository, so its absence is a failure,
    not a reason to skip."""
    assert (DEFAULT_MODEL_DIR / "model.json").is_file(), f"{DEFAULT_MODEL_DIR} is missing"
    return DEFAULT_MODEL_DIR
