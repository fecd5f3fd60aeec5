"""Images in (flat, nested, base64 PNG of any size/mode) and out (PNG, animated GIF)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import LATENT_DIM
from tests.api.images import b64, decode_png, digit, png_bytes


def _mu(client, image) -> np.ndarray:
    response = client.post("/encode", json={"images": [image], "seed": 0})
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["mu"][0])


def test_flat_nested_and_base64_png_forms_encode_identically(client):
    pixels = digit(7)
    flat = _mu(client, pixels.reshape(-1).tolist())
    np.testing.assert_allclose(_mu(client, pixels.tolist()), flat, atol=1e-6)
    np.testing.assert_allclose(_mu(client, b64(png_bytes(pixels))), flat, atol=1e-6)
    data_url = "data:image/png;base64," + b64(png_bytes(pixels))
    np.testing.assert_allclose(_mu(client, data_url), flat, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1"])
def test_png_of_any_mode_is_accepted(client, mode):
    assert _mu(client, b64(png_bytes(digit(1), mode=mode))).shape == (LATENT_DIM,)


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(client):
    pixels = digit(5)
    wide = Image.fromarray((pixels * 65535).round().astype(np.uint16))
    assert wide.mode == "I;16"
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    np.testing.assert_allclose(
        _mu(client, b64(buf.getvalue())), _mu(client, b64(png_bytes(pixels))), atol=1e-5
    )


def test_images_of_one_request_share_a_pixel_budget(client):
    """Four 2048x2048 images fit the 4096x4096 budget together; a fifth is refused by name."""
    big = b64(png_bytes(np.zeros((2048, 2048), np.float32)))
    response = client.post("/encode", json={"images": [big] * 5})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "images[4]"
    assert "pixels together" in response.json()["error"]["message"]


def test_png_of_another_size_is_resized_to_28x28(client):
    big = np.kron(digit(3), np.ones((4, 4), dtype=np.float32))  # 112x112, same picture
    small = _mu(client, b64(png_bytes(digit(3))))
    resized = _mu(client, b64(png_bytes(big)))
    np.testing.assert_allclose(resized, small, atol=1e-5)


def test_mixed_formats_in_one_request(client):
    pixels = digit(8)
    response = client.post(
        "/encode",
        json={"images": [pixels.tolist(), b64(png_bytes(pixels)), pixels.reshape(-1).tolist()]},
    )
    mu = np.asarray(response.json()["mu"])
    np.testing.assert_allclose(mu[0], mu[1], atol=1e-6)
    np.testing.assert_allclose(mu[0], mu[2], atol=1e-6)


def test_repeated_accept_headers_are_read_as_one_list(client):
    z = {"z": [[0.0] * LATENT_DIM]}
    accept = [("Accept", "application/json;q=0.2"), ("Accept", "image/png")]
    assert client.post("/decode", json=z, headers=accept).headers["content-type"] == "image/png"
    accept = [("Accept", "image/png"), ("Accept", "application/json;q=0.2")]
    assert client.post("/decode", json=z, headers=accept).headers["content-type"] == "image/png"


def test_decode_png_single_image_is_upscaled_28x28(client):
    response = client.post(
        "/decode", json={"z": [[0.0] * LATENT_DIM]}, headers={"Accept": "image/png"}
    )
    assert response.headers["content-type"] == "image/png"
    im = decode_png(response.content)
    assert im.size == (112, 112)
    assert im.mode == "L"


def test_decode_png_pixels_match_the_json_answer(client):
    z = [[0.3, -0.2, 1.0, 0.0]]
    images = np.asarray(client.post("/decode", json={"z": z}).json()["images"][0]).reshape(28, 28)
    im = decode_png(client.post("/decode", json={"z": z}, headers={"Accept": "image/png"}).content)
    expected = np.round(images * 255).astype(np.uint8)
    got = np.asarray(im)[::4, ::4]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_sample_png_is_a_grid(client):
    response = client.post("/sample", json={"n": 5, "seed": 0}, headers={"Accept": "image/png"})
    im = decode_png(response.content)
    # 5 images -> 3 columns x 2 rows of 28 px tiles with 2 px padding, upscaled 4x
    assert im.size == ((3 * 30 + 2) * 4, (2 * 30 + 2) * 4)
    assert response.headers["x-seed"] == "0"


def test_interpolate_png_is_a_strip_of_every_step(client):
    response = client.post(
        "/interpolate",
        json={"start_z": [0.0] * LATENT_DIM, "end_z": [1.0] * LATENT_DIM, "steps": 7},
        headers={"Accept": "image/png"},
    )
    assert decode_png(response.content).size == ((7 * 30 + 2) * 4, (30 + 2) * 4)


@pytest.mark.parametrize("steps", [2, 5, 12])
def test_interpolate_gif_has_one_frame_per_step(client, steps):
    response = client.post(
        "/interpolate",
        json={"start_z": [0.0] * LATENT_DIM, "end_z": [0.0] * LATENT_DIM, "steps": steps},
        headers={"Accept": "image/gif"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    im = Image.open(io.BytesIO(response.content))
    assert im.format == "GIF"
    assert im.n_frames == steps  # identical frames (start == end) are still separate frames
    assert im.size[0] == 112


def test_gif_is_only_offered_by_interpolate(client):
    response = client.post(
        "/decode", json={"z": [[0.0] * LATENT_DIM]}, headers={"Accept": "image/gif"}
    )
    assert response.status_code == 406
    assert response.json()["error"]["field"] == "Accept"


def test_wildcard_accept_gets_json(client):
    response = client.post("/decode", json={"z": [[0.0] * LATENT_DIM]}, headers={"Accept": "*/*"})
    assert response.headers["content-type"] == "application/json"
    response = client.post(
        "/decode",
        json={"z": [[0.0] * LATENT_DIM]},
        headers={"Accept": "image/png;q=0.5, application/json;q=0.9"},
    )
    assert response.headers["content-type"] == "application/json"
