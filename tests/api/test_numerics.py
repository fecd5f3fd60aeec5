"""Latents outside the declared bound are refused by name; no answer ever holds NaN or
infinity, in any format."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.api.schemas import LATENT_BOUND
from tests.api.conftest import LATENT_DIM

NPY = "application/x-npy"
FAR = [3.4e38, 1e38, -3.4e38, LATENT_BOUND * 1.01]


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert "within" in error["message"]


@pytest.mark.parametrize("value", FAR)
def test_decode_refuses_latents_beyond_the_bound_in_json(client, value):
    z = [[0.0] * LATENT_DIM, [0.0] * (LATENT_DIM - 1) + [value]]
    _refused(client.post("/decode", json={"z": z}), "z[1]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", FAR)
def test_decode_refuses_latents_beyond_the_bound_in_npy(client, dtype, value):
    z = np.zeros((2, LATENT_DIM), dtype)
    z[1, 3] = value
    response = client.post("/decode", content=_npy(z), headers={"Content-Type": NPY})
    _refused(response, "z[1]")


@pytest.mark.parametrize("side", ["start_z", "end_z"])
def test_interpolate_refuses_ends_beyond_the_bound(client, side):
    body = {"start_z": [0.0] * LATENT_DIM, "end_z": [0.0] * LATENT_DIM}
    body[side] = [3.4e38] * LATENT_DIM
    _refused(client.post("/interpolate", json=body), side)


@pytest.mark.parametrize("accept", ["application/json", "image/png", NPY])
def test_latents_at_the_bound_decode_to_finite_images_in_every_format(client, accept):
    z = np.array([[LATENT_BOUND] * LATENT_DIM, [-LATENT_BOUND] * LATENT_DIM])
    response = client.post("/decode", json={"z": z.tolist()}, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    if accept == NPY:
        images = np.load(io.BytesIO(response.content), allow_pickle=False)
    elif accept == "application/json":
        images = np.array(response.json()["images"], dtype=np.float64)
    else:
        assert response.content.startswith(b"\x89PNG")
        return
    assert np.isfinite(images).all()
    assert images.min() >= 0
    assert images.max() <= 1


def test_the_bound_is_in_the_openapi_document(client):
    doc = client.get("/openapi.json").json()
    items = doc["components"]["schemas"]["DecodeRequest"]["properties"]["z"]["items"]["items"]
    assert (items["minimum"], items["maximum"]) == (-LATENT_BOUND, LATENT_BOUND)
