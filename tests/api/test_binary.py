"""The binary path: .npy and raw float32 bodies, `Accept: application/x-npy` answers."""

from __future__ import annotations

import io

import numpy as np

from tests.api.conftest import LATENT_DIM
from tests.api.images import digit

NPY = "application/x-npy"


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def test_encode_npy_in_npy_out_matches_json(client):
    images = np.stack([digit(i).reshape(-1) for i in range(3)])
    as_json = client.post("/encode", json={"images": images.tolist(), "seed": 5}).json()
    response = client.post(
        "/encode?seed=5", content=npy(images), headers={"Content-Type": NPY, "Accept": NPY}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-arrays"] == "mu,sigma,z"
    assert response.headers["x-seed"] == "5"
    stacked = load(response.content)
    assert stacked.shape == (3, 3, LATENT_DIM)
    assert stacked.dtype == np.float32
    for i, key in enumerate(("mu", "sigma", "z")):
        np.testing.assert_allclose(
            stacked[i], np.asarray(as_json[key], dtype=np.float32), rtol=1e-6
        )


def test_encode_accepts_28x28_npy_and_float64(client):
    images = np.stack([digit(1), digit(2)]).astype(np.float64)
    response = client.post("/encode", content=npy(images), headers={"Content-Type": NPY})
    assert np.asarray(response.json()["mu"]).shape == (2, LATENT_DIM)


def test_encode_raw_float32_with_shape_header(client):
    images = np.stack([digit(i).reshape(-1) for i in range(2)]).astype("<f4")
    raw = client.post(
        "/encode?seed=1",
        content=images.tobytes(),
        headers={"Content-Type": "application/octet-stream", "X-Array-Shape": "2,784"},
    ).json()
    as_json = client.post("/encode", json={"images": images.tolist(), "seed": 1}).json()
    assert raw == as_json


def test_decode_npy_round_trip(client):
    z = np.random.default_rng(1).standard_normal((4, LATENT_DIM)).astype(np.float32)
    response = client.post("/decode", content=npy(z), headers={"Content-Type": NPY, "Accept": NPY})
    images = load(response.content)
    expected = np.asarray(
        client.post("/decode", json={"z": z.tolist()}).json()["images"], dtype=np.float32
    )
    assert images.shape == (4, 784)
    np.testing.assert_array_equal(images, expected)


def test_sample_and_interpolate_answer_npy(client):
    images = load(client.post("/sample", json={"n": 3, "seed": 2}, headers={"Accept": NPY}).content)
    assert images.shape == (3, 784)
    path = load(
        client.post(
            "/interpolate",
            json={"start_z": [0.0] * LATENT_DIM, "end_z": [1.0] * LATENT_DIM, "steps": 4},
            headers={"Accept": NPY},
        ).content
    )
    assert path.shape == (4, 784)


def test_bad_binary_bodies_are_422_naming_the_problem(client):
    cases = [
        (b"not an npy file", {"Content-Type": NPY}, "images"),
        (npy(np.array(["a", "b"])), {"Content-Type": NPY}, "images"),
        (npy(np.zeros((2, 100), np.float32)), {"Content-Type": NPY}, "images"),
        (npy(np.full((1, 784), 2.0, np.float32)), {"Content-Type": NPY}, "images[0]"),
        (npy(np.zeros((0, 784), np.float32)), {"Content-Type": NPY}, "images"),
        (b"\x00" * 16, {"Content-Type": "application/octet-stream"}, "X-Array-Shape"),
        (
            b"\x00" * 16,
            {"Content-Type": "application/octet-stream", "X-Array-Shape": "a,b"},
            "X-Array-Shape",
        ),
        (
            b"\x00" * 16,
            {"Content-Type": "application/octet-stream", "X-Array-Shape": "1,784"},
            "images",
        ),
    ]
    for body, headers, field in cases:
        response = client.post("/encode", content=body, headers=headers)
        assert response.status_code == 422, (headers, response.text)
        assert response.json()["error"]["field"] == field, response.text


def test_object_npy_is_refused_without_unpickling(client):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    response = client.post("/encode", content=buf.getvalue(), headers={"Content-Type": NPY})
    assert response.status_code == 422
    assert "npy" in response.json()["error"]["message"]
