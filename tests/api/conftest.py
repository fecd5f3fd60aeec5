"""In-process app fixtures: the real app on the real tiny ONNX model (latent_dim 4)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

LATENT_DIM = 4

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(scope="session")
def make_client(tiny_model_dir: Path) -> ClientFactory:
    """`with make_client(max_n=3) as client:` a started app with these settings overrides."""

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        settings = Settings(model_dir=tiny_model_dir, workers=1, access_log=False, **overrides)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client

    return factory


@pytest.fixture(scope="module")
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


def http_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An ASGI scope for `POST path`, for tests that drive the app's receive/send directly
    (TestClient buffers request bodies, so it cannot send them in pieces or vanish midway)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
