"""The OIP v2 inference body in-process: the binary tensor data extension both ways, JSON
tensors flat and nested, the reserved parameters clients send, and every malformed request
answered 400 in the OIP dialect (`{"error": "..."}`) naming the tensor or header at fault."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tests.api.conftest import LATENT_DIM

INFER = "/v2/models/tiny-vae-encoder/infer"
DECODER_INFER = "/v2/models/tiny-vae-decoder/versions/1/infer"
IMAGES = np.random.default_rng(5).random((3, 784), dtype=np.float32)


def binary_request(header: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(header)
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def images_input(array: np.ndarray = IMAGES, **extra) -> dict:
    return {"name": "images", "datatype": "FP32", "shape": list(array.shape), **extra}


def split_binary(response) -> tuple[dict, bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


def test_binary_in_binary_out_without_a_content_type(client):
    body, headers = binary_request(
        {
            "id": "b-1",
            "inputs": [images_input(parameters={"binary_data_size": IMAGES.nbytes})],
            "outputs": [{"name": "sigma", "parameters": {"binary_data": True}}, {"name": "mu"}],
        },
        IMAGES.tobytes(),
    )
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, tail = split_binary(response)
    assert header["id"] == "b-1"
    sigma, mu = header["outputs"]
    assert sigma["parameters"]["binary_data_size"] == len(tail) == 3 * LATENT_DIM * 4
    assert "data" not in sigma
    assert len(mu["data"]) == 3 * LATENT_DIM  # not asked in binary: JSON
    reference = client.post("/encode", json={"images": IMAGES.tolist()}).json()
    np.testing.assert_allclose(
        np.frombuffer(tail, "<f4").reshape(3, LATENT_DIM), reference["sigma"], atol=1e-6
    )
    np.testing.assert_allclose(np.reshape(mu["data"], (3, LATENT_DIM)), reference["mu"], atol=1e-6)


def test_binary_data_output_makes_every_output_binary_and_reserved_parameters_are_ignored(
    client,
):
    z = np.zeros((2, LATENT_DIM), np.float32)
    body = {
        "inputs": [{"name": "z", "datatype": "FP32", "shape": [2, LATENT_DIM], "data": [0.0] * 8}],
        "parameters": {
            "binary_data_output": True,
            "priority": 0,
            "timeout": 1000,
            "sequence_id": 0,
            "sequence_start": False,
            "headers": {"x": "y"},
            "triton_enable_empty_final_response": False,
        },
    }
    response = client.post(DECODER_INFER, json=body)
    assert response.status_code == 200, response.text
    header, tail = split_binary(response)
    assert "id" not in header
    assert header["model_name"] == "tiny-vae-decoder"
    assert header["model_version"] == "1"
    images = np.frombuffer(tail, "<f4").reshape(2, 784)
    reference = client.post("/decode", json={"z": z.tolist()}).json()["images"]
    np.testing.assert_allclose(images, reference, atol=1e-6)


def test_json_data_may_be_nested(client):
    body = {"inputs": [images_input(data=IMAGES.tolist())]}
    flat = {"inputs": [images_input(data=IMAGES.ravel().tolist())]}
    nested_answer = client.post(INFER, json=body).json()
    assert nested_answer == client.post(INFER, json=flat).json()
    assert nested_answer["outputs"][0]["shape"] == [3, LATENT_DIM]


def bad(client, body: bytes, headers: dict[str, str] | None = None) -> str:
    response = client.post(INFER, content=body, headers=headers or {})
    assert response.status_code == 400, response.text
    error = response.json()
    assert list(error) == ["error"]
    assert isinstance(error["error"], str)
    return error["error"]


ONE = images_input(IMAGES[:1])
ONE_DATA = {**ONE, "data": [0.5] * 784}


@pytest.mark.parametrize(
    ("header", "tail", "length", "words"),
    [
        (
            {"inputs": [{**ONE, "parameters": {"binary_data_size": 100}}]},
            b"x" * 100,
            None,
            ["images", "binary_data_size", "3136"],
        ),
        (
            {"inputs": [{**ONE, "parameters": {"binary_data_size": 3136}}]},
            b"x" * 3000,
            None,
            ["images", "3000 bytes"],
        ),
        (
            {"inputs": [{**ONE, "parameters": {"binary_data_size": 3136}}]},
            b"x" * 3200,
            None,
            ["64 bytes", "beyond"],
        ),
        ({"inputs": [ONE]}, b"", "abc", ["Inference-Header-Content-Length", "abc"]),
        ({"inputs": [ONE]}, b"", "999999", ["Inference-Header-Content-Length"]),
    ],
    ids=["size-vs-shape", "short", "trailing", "length-nan", "length-past-body"],
)
def test_malformed_binary_requests(client, header, tail, length, words):
    body, headers = binary_request(header, tail)
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    message = bad(client, body, headers)
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        (b"[1, 2]", ["JSON object"]),
        (b"{not json", ["not valid JSON"]),
        (orjson.dumps({"inputs": []}), ["'inputs'", "non-empty"]),
        (orjson.dumps({"inputs": [ONE_DATA, ONE_DATA]}), ["twice"]),
        (orjson.dumps({"inputs": [{**ONE, "data": [0.5] * 700}]}), ["700 values", "784"]),
        (orjson.dumps({"inputs": [{**ONE, "data": ["a"] * 784}]}), ["numbers only"]),
        (orjson.dumps({"inputs": [{**ONE, "data": [[0.5], [0.5, 0.5]]}]}), ["regular"]),
        (orjson.dumps({"inputs": [{**ONE, "datatype": "INT8", "data": [0] * 784}]}), ["INT8"]),
        (orjson.dumps({"inputs": [{**ONE, "shape": [1, -784], "data": []}]}), ["shape"]),
        (
            orjson.dumps({"inputs": [{**ONE, "shape": [0, 2**62, 2**62], "data": []}]}),
            ["shape"],
        ),
        (
            orjson.dumps({"inputs": [{**ONE, "shape": [0, 2**31 - 1, 2**31 - 1], "data": []}]}),
            ["shape"],
        ),
        (orjson.dumps({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}), ["name"]),
        (orjson.dumps({"inputs": [{k: v for k, v in ONE.items()}]}), ["'data'"]),
        (orjson.dumps({"id": 7, "inputs": [ONE]}), ["'id'"]),
        (orjson.dumps({"inputs": [ONE_DATA], "outputs": {"name": "mu"}}), ["'outputs'"]),
        (
            orjson.dumps({"inputs": [ONE], "parameters": {"binary_data_output": "yes"}}),
            ["binary_data_output"],
        ),
    ],
    ids=[
        "not-object",
        "not-json",
        "no-inputs",
        "twice",
        "count",
        "strings",
        "ragged",
        "datatype",
        "negative-dim",
        "huge-dims",
        "impossible-shape",
        "no-name",
        "no-data",
        "id-type",
        "outputs-type",
        "binary-flag",
    ],
)
def test_malformed_json_requests(client, request_body, words):
    message = bad(client, request_body, {"Content-Type": "application/json"})
    for word in words:
        assert word in message, message


def test_long_client_strings_are_not_echoed_in_full(client):
    name = "x" * 10_000
    message = bad(client, orjson.dumps({"inputs": [{**ONE, "name": name, "data": []}]}))
    assert len(message) < 300


def test_oip_errors_outside_the_routes_use_the_oip_dialect_too(make_client):
    with make_client(max_body_bytes=1024, api_key="k") as client:
        assert client.get("/v2/health/live").status_code == 200  # probes stay open
        unauthorized = client.post(INFER, json={"inputs": [ONE]})
        assert unauthorized.status_code == 401
        assert list(unauthorized.json()) == ["error"]
        too_large = client.post(INFER, content=b"x" * 5000, headers={"X-API-Key": "k"})
        assert too_large.status_code == 413
        assert list(too_large.json()) == ["error"]
        missing = client.get("/v2/nothing-here", headers={"X-API-Key": "k"})
        assert missing.status_code == 404
        assert list(missing.json()) == ["error"]
