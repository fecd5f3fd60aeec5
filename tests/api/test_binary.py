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


def test_fortran_order_big_endian_and_float64_npy_equal_the_plain_one(client):
    images = np.stack([digit(i).reshape(-1) for i in range(3)])
    expected = client.post("/encode?seed=2", content=npy(images), headers={"Content-Type": NPY})
    for variant in (
        np.asfortranarray(images),
        images.astype(">f4"),
        images.astype(np.float64),
        images.reshape(3, 28, 28),
    ):
        response = client.post(
            "/encode?seed=2", content=npy(variant), headers={"Content-Type": NPY}
        )
        assert response.json() == expected.json()


def test_npy_whose_header_disagrees_with_its_data_is_refused_before_allocating(client):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 784)}
    )
    for body in (
        header.getvalue() + b"\0" * 16,  # declares 3 TB
        npy(np.zeros((1, 784), np.float32)) + b"\0" * 8,  # trailing bytes
        npy(np.zeros((1, 784), np.float32))[:-4],  # short data
    ):
        response = client.post("/encode", content=body, headers={"Content-Type": NPY})
        assert response.status_code == 422, response.text
        assert "declares shape" in response.json()["error"]["message"]


def test_raw_shape_header_too_big_for_any_body_is_422(client):
    response = client.post(
        "/decode",
        content=b"\0" * 8,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Array-Shape": "99999999999999999999,99999999999999999999",
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "z"


def test_wrong_binary_shape_is_named_as_sent(client):
    response = client.post(
        "/encode", content=npy(np.zeros((2, 1, 28, 28), np.float32)), headers={"Content-Type": NPY}
    )
    assert response.status_code == 422
    assert "got [2, 1, 28, 28]" in response.json()["error"]["message"]


def test_seed_in_the_query_also_serves_json_bodies_unless_the_body_has_one(client):
    body = {"images": [digit(0).reshape(-1).tolist()]}
    assert client.post("/encode?seed=11", json=body).json()["seed"] == 11
    assert client.post("/encode?seed=11", json={**body, "seed": 12}).json()["seed"] == 12


def test_bad_query_seeds_are_422_naming_the_seed(client):
    body = npy(digit(0).reshape(1, -1))
    for query, expected in (("abc", "'abc'"), ("-1", "got -1"), (str(2**64), str(2**64))):
        response = client.post(f"/encode?seed={query}", content=body, headers={"Content-Type": NPY})
        assert response.status_code == 422, query
        error = response.json()["error"]
        assert error["field"] == "seed"
        assert expected in error["message"]


def test_json_images_holding_strings_or_nulls_are_refused(client):
    row = digit(0).reshape(-1).tolist()
    for bad in ("0.5", None):
        response = client.post("/encode", json={"images": [[bad, *row[1:]]]})
        assert response.status_code == 422, bad
        assert response.json()["error"]["field"] == "images[0]"


def test_object_npy_is_refused_without_unpickling(client):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    response = client.post("/encode", content=buf.getvalue(), headers={"Content-Type": NPY})
    assert response.status_code == 422
    assert "npy" in response.json()["error"]["message"]
