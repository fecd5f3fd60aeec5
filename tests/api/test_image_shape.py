"""Nothing in the HTTP layer assumes 28x28: a model of 16x20 images (height 16, width 20,
non-square so that a swapped axis shows) is served in every format, JSON flat and nested,
base64 images (resized to its shape), `.npy` and raw bodies, PNG answers, grids and GIFs,
and the OIP metadata, all following its manifest's `image_shape`."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import LATENT_DIM
from tests.fixtures.tiny_model import build_tiny_model

HEIGHT, WIDTH = 16, 20
SIZE = HEIGHT * WIDTH
SCALE = 4  # answers are upscaled 4x
IMAGES = np.random.default_rng(3).random((3, HEIGHT, WIDTH), dtype=np.float32).round(3)


@pytest.fixture(scope="module")
def client(make_client_for, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    model_dir = build_tiny_model(
        tmp_path_factory.mktemp("wide"), image_shape=(HEIGHT, WIDTH), name="wide-vae"
    )
    with make_client_for(model_dir) as client:
        yield client


@pytest.fixture(scope="module")
def make_client_for():
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    @contextmanager
    def factory(model_dir: Path):
        settings = Settings(model_dir=model_dir, workers=1, access_log=False)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client

    return factory


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def mu_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["mu"])


def test_the_model_reports_its_shape(client):
    assert client.get("/model").json()["manifest"]["image_shape"] == [HEIGHT, WIDTH]
    metadata = client.get("/v2/models/wide-vae-encoder").json()
    assert metadata["inputs"][0]["shape"] == [-1, SIZE]


def test_every_image_format_follows_the_shape(client):
    flat = mu_of(client.post("/encode", json={"images": IMAGES.reshape(3, SIZE).tolist()}))
    assert flat.shape == (3, LATENT_DIM)
    nested = mu_of(client.post("/encode", json={"images": IMAGES.tolist()}))
    np.testing.assert_allclose(nested, flat, atol=1e-6)
    for body in (npy(IMAGES), npy(IMAGES.reshape(3, SIZE))):
        answer = client.post("/encode", content=body, headers={"Content-Type": "application/x-npy"})
        np.testing.assert_allclose(mu_of(answer), flat, atol=1e-6)
    raw = client.post(
        "/encode",
        content=IMAGES.astype("<f4").tobytes(),
        headers={"Content-Type": "application/octet-stream", "X-Array-Shape": f"3,{SIZE}"},
    )
    np.testing.assert_allclose(mu_of(raw), flat, atol=1e-6)
    # A PNG of the exact shape is its pixels; a larger one is resized to the shape.
    pixels = (IMAGES[0] * 255).round() / 255
    exact = mu_of(client.post("/encode", json={"images": [png_base64(pixels)]}))
    same = mu_of(client.post("/encode", json={"images": [pixels.tolist()]}))
    np.testing.assert_allclose(exact, same, atol=1e-5)
    large = np.kron(pixels, np.ones((2, 2)))  # 32x40: shrinks back to 16x20 exactly
    np.testing.assert_allclose(
        mu_of(client.post("/encode", json={"images": [png_base64(large)]})), same, atol=1e-5
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"images": [[0.5] * 784]}, [str(SIZE), f"{HEIGHT}x{WIDTH}"]),
        ({"images": np.zeros((1, WIDTH, HEIGHT)).tolist()}, [f"{HEIGHT}x{WIDTH}"]),
    ],
    ids=["mnist-sized", "transposed"],
)
def test_images_of_another_shape_are_refused_naming_the_models(client, body, words):
    answer = client.post("/encode", json=body)
    assert answer.status_code == 422
    for word in words:
        assert word in answer.json()["error"]["message"]


def test_a_transposed_npy_array_is_refused(client):
    answer = client.post(
        "/encode",
        content=npy(np.zeros((2, WIDTH, HEIGHT), np.float32)),
        headers={"Content-Type": "application/x-npy"},
    )
    assert answer.status_code == 422
    assert f"(n, {HEIGHT}, {WIDTH})" in answer.json()["error"]["message"]


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_png_and_gif_answers_have_the_models_proportions(client):
    z = np.zeros((1, LATENT_DIM)).tolist()
    one = picture(client.post("/decode", json={"z": z}, headers={"Accept": "image/png"}))
    assert one.size == (WIDTH * SCALE, HEIGHT * SCALE)  # Pillow: (width, height)
    decoded = client.post("/decode", json={"z": z}).json()["images"]
    assert len(decoded[0]) == SIZE
    strip = picture(
        client.post(
            "/interpolate",
            json={"start_z": [0.0] * LATENT_DIM, "end_z": [1.0] * LATENT_DIM, "steps": 3},
            headers={"Accept": "image/png"},
        )
    )
    padding = 2
    assert strip.size == (
        (3 * (WIDTH + padding) + padding) * SCALE,
        (HEIGHT + 2 * padding) * SCALE,
    )
    gif = picture(
        client.post(
            "/interpolate",
            json={"start_z": [0.0] * LATENT_DIM, "end_z": [1.0] * LATENT_DIM, "steps": 4},
            headers={"Accept": "image/gif"},
        )
    )
    assert gif.n_frames == 4
    assert gif.size[0] == WIDTH * SCALE
    assert gif.size[1] > HEIGHT * SCALE  # the frame plus its progress bar
    grid = picture(
        client.post("/sample", json={"n": 4, "seed": 1}, headers={"Accept": "image/png"})
    )
    assert grid.size == (
        (2 * (WIDTH + padding) + padding) * SCALE,
        (2 * (HEIGHT + padding) + padding) * SCALE,
    )
