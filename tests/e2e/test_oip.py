"""The Open Inference Protocol v2 routes driven by Triton's own `tritonclient.http`, unchanged,
against a real server: health, metadata, the repository index, inference with binary and
JSON tensors (answers equal to `/encode`'s means and sigmas and to `/decode`), and every error
as a readable `InferenceServerException`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.conftest import Server

ENCODER, DECODER, SCORE = "tiny-vae-encoder", "tiny-vae-decoder", "tiny-vae-score"
RNG = np.random.default_rng(11)
IMAGES = RNG.random((5, 784), dtype=np.float32)
LATENT_DIM = 4


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    infer_input = triton.InferInput(name, list(array.shape), "FP32")
    infer_input.set_data_from_numpy(array, binary_data=binary)
    return infer_input


def rest(server: Server, path: str, body: dict) -> dict:
    response = httpx.post(f"{server.base_url}{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "vae-service"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_config_and_repository_index(client):
    assert client.is_model_ready(ENCODER)
    assert client.is_model_ready(DECODER, model_version="1")
    encoder = client.get_model_metadata(ENCODER)
    assert encoder["versions"] == ["1"]
    assert encoder["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 784]}]
    assert [o["name"] for o in encoder["outputs"]] == ["mu", "sigma"]
    assert {o["shape"][0] for o in encoder["outputs"]} == {-1}
    decoder = client.get_model_metadata(DECODER, model_version="1")
    assert decoder["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, LATENT_DIM]}]
    config = client.get_model_config(DECODER)
    assert config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "z", "data_type": "TYPE_FP32", "dims": [LATENT_DIM]}]
    index = client.get_model_repository_index()
    assert index == [
        {"name": DECODER, "version": "1", "state": "READY"},
        {"name": ENCODER, "version": "1", "state": "READY"},
        {"name": SCORE, "version": "1", "state": "READY"},
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_encoder_answers_as_encode_does(server, client, binary):
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("mu", "sigma")]
    result = client.infer(
        ENCODER,
        [tensor("images", IMAGES, binary=binary)],
        outputs=outputs,
        request_id="req-42",
        priority=1,
        timeout=10_000_000,
        parameters={"note": "ignored"},
    )
    reference = rest(server, "/encode", {"images": IMAGES.tolist(), "seed": 1})
    np.testing.assert_allclose(result.as_numpy("mu"), reference["mu"], atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("sigma"), reference["sigma"], atol=1e-5)
    assert result.as_numpy("mu").dtype == np.float32
    assert result.get_response()["id"] == "req-42"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_decoder_answers_as_decode_does(server, client, binary):
    z = RNG.standard_normal((3, LATENT_DIM)).astype(np.float32)
    result = client.infer(
        DECODER,
        [tensor("z", z, binary=binary)],
        outputs=[triton.InferRequestedOutput("images", binary_data=binary)],
        model_version="1",
    )
    reference = rest(server, "/decode", {"z": z.tolist()})
    np.testing.assert_allclose(result.as_numpy("images"), reference["images"], atol=1e-5)


def test_without_requested_outputs_every_output_is_answered(client):
    result = client.infer(ENCODER, [tensor("images", IMAGES[:2])])
    assert result.as_numpy("mu").shape == result.as_numpy("sigma").shape == (2, LATENT_DIM)


def test_a_large_binary_request_is_served(client):
    images = RNG.random((256, 784), dtype=np.float32)
    result = client.infer(ENCODER, [tensor("images", images)])
    assert result.as_numpy("mu").shape == (256, LATENT_DIM)


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("model", "inputs", "status", "words"),
    [
        ("nope", [tensor("images", IMAGES)], "404", ["unknown model", "nope"]),
        (ENCODER, [tensor("pixels", IMAGES)], "400", ["unknown input", "pixels"]),
        (ENCODER, [tensor("images", IMAGES[:, :700])], "400", ["images", "shape", "784"]),
        (ENCODER, [tensor("images", IMAGES * 3)], "400", ["images", "[0, 1]"]),
        (ENCODER, [tensor("images", np.full((1, 784), np.nan, np.float32))], "400", ["images"]),
        (
            ENCODER,
            [tensor("images", RNG.random((257, 784), dtype=np.float32))],
            "400",
            ["images", "at most 256"],
        ),
        (DECODER, [tensor("z", np.full((1, LATENT_DIM), 3.4e38, np.float32))], "400", ["z"]),
    ],
    ids=["model", "input-name", "shape", "range", "nan", "rows", "latent-bound"],
)
def test_errors_are_readable_exceptions_naming_the_problem(client, model, inputs, status, words):
    error = error_of(lambda: client.infer(model, inputs))
    assert error.status() == status
    for word in words:
        assert word in error.message(), error.message()


def test_a_wrong_datatype_version_or_output_is_refused(client):
    fp64 = triton.InferInput("images", [1, 784], "FP64")
    fp64.set_data_from_numpy(IMAGES[:1].astype(np.float64))
    error = error_of(lambda: client.infer(ENCODER, [fp64]))
    assert error.status() == "400"
    assert "FP64" in error.message()
    error = error_of(lambda: client.infer(ENCODER, [tensor("images", IMAGES)], model_version="2"))
    assert error.status() == "404"
    assert "version" in error.message()
    missing = [triton.InferRequestedOutput("logvar")]
    error = error_of(lambda: client.infer(ENCODER, [tensor("images", IMAGES)], outputs=missing))
    assert error.status() == "400"
    assert "logvar" in error.message()
    error = error_of(lambda: client.get_model_metadata("nope"))
    assert error.status() == "404"


def test_the_score_model_answers_as_the_score_route(server, client):
    result = client.infer(SCORE, [tensor("images", IMAGES)], parameters={"seed": 7, "samples": 3})
    reference = rest(server, "/score", {"images": IMAGES.tolist(), "seed": 7, "samples": 3})
    np.testing.assert_allclose(result.as_numpy("neg_elbo"), reference["neg_elbo"], rtol=1e-5)
    np.testing.assert_allclose(result.as_numpy("iwae"), reference["iwae"], rtol=1e-5)
    metadata = client.get_model_metadata(SCORE)
    assert [o["name"] for o in metadata["outputs"]] == ["neg_elbo", "iwae"]  # not calibrated
    assert client.get_model_config(SCORE)["input"][0]["dims"] == [784]
    error = error_of(
        lambda: client.infer(SCORE, [tensor("images", IMAGES)], parameters={"samples": 0})
    )
    assert error.status() == "400"
    assert "samples" in error.message()
