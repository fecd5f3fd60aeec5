"""Every client error is a 4xx JSON body naming the field and the problem; never a 500."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.config import Settings
from tests.api.conftest import LATENT_DIM, http_scope
from tests.api.images import b64, digit, png_bytes, png_declaring

IMG = [0.5] * 784
Z = [0.0] * LATENT_DIM


def assert_error(response, status: int, field: str | None, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert words.lower() in error["message"].lower(), error
    assert error["code"]
    assert "x-error-code" not in response.headers  # internal to the metrics


@pytest.mark.parametrize(
    ("route", "body", "field", "words"),
    [
        ("/encode", {"images": [[0.5] * 783]}, "images[0]", "784"),
        # 784 items, one of them a list: a parser that flattens rows would take it
        ("/encode", {"images": [[[0.5], *IMG[1:]]]}, "images[0]", "numbers"),
        ("/decode", {"z": [[[0.0], *Z[1:]]]}, "z[0]", ""),
        ("/encode", {"images": [IMG, [0.5] * 785]}, "images[1]", "784"),
        ("/encode", {"images": [[[0.5] * 28] * 27]}, "images[0]", "28x28"),
        ("/encode", {"images": [[[0.5] * 27] * 28]}, "images[0]", "28x28"),
        ("/encode", {"images": [[*IMG[:-1], 1.5]]}, "images[0]", "[0, 1]"),
        ("/encode", {"images": [IMG, [*IMG[:-1], -0.1]]}, "images[1]", "[0, 1]"),
        ("/encode", {"images": [[*IMG[:-1], 1e39]]}, "images[0]", "finite"),
        ("/encode", {"images": [[*IMG[:-1], "0.5"]]}, "images[0]", "numbers"),
        ("/encode", {"images": [[*IMG[:-1], None]]}, "images[0]", "numbers"),
        ("/encode", {"images": [[True] * 784]}, "images[0]", "booleans"),
        ("/encode", {"images": [IMG, [True, *IMG[1:]]]}, "images[1]", "booleans"),
        ("/encode", {"images": [[[False] + [0.5] * 27] * 28]}, "images[0]", "booleans"),
        ("/decode", {"z": [Z, [*Z[:-1], True]]}, "z[1]", "booleans"),
        ("/interpolate", {"start_z": [True, *Z[1:]], "end_z": Z}, "start_z", "booleans"),
        ("/encode", {"images": [{"a": 1}]}, "images[0]", "image"),
        ("/encode", {"images": []}, "images", "empty"),
        ("/encode", {"images": "x"}, "images", "list"),
        ("/encode", {}, "images", "required"),
        ("/encode", {"images": [IMG], "seed": -1}, "seed", ">= 0"),
        ("/encode", {"images": [IMG], "seed": 1.5}, "seed", "integer"),
        ("/encode", {"images": [IMG], "extra": 1}, "extra", "unknown"),
        ("/encode", {"images": ["not base64!!"]}, "images[0]", "base64"),
        ("/encode", {"images": [b64(b"hello, not an image")]}, "images[0]", "not an image"),
        ("/encode", {"images": [b64(png_bytes(digit(0))[:60])]}, "images[0]", "truncated"),
        ("/encode", {"images": [b64(png_declaring(100_000, 100_000))]}, "images[0]", "4096"),
        ("/encode", {"images": [b64(png_declaring(5000, 10))]}, "images[0]", "4096"),
        ("/decode", {"z": [[0.0] * (LATENT_DIM + 1)]}, "z[0]", f"{LATENT_DIM} numbers"),
        ("/decode", {"z": [Z, [0.0] * 2]}, "z[1]", f"{LATENT_DIM} numbers"),
        ("/decode", {"z": [Z, [*Z[:-1], 1e39]]}, "z[1]", "finite"),
        ("/decode", {"z": [[*Z[:-1], "a"]]}, "z[0]", "numbers"),
        ("/decode", {"z": []}, "z", "empty"),
        ("/decode", {"z": [0.0] * LATENT_DIM}, "z[0]", "list"),
        ("/sample", {"n": 0}, "n", ">= 1"),
        ("/sample", {"n": None}, "n", "integer"),
        ("/sample", {"n": 10**30}, "n", "integer from 1 to 256"),
        ("/sample", {"n": 1, "seed": 2**64}, "seed", f"integer from 0 to {2**64 - 1}"),
        ("/sample", {"n": True}, "n", "got a boolean"),
        ("/sample", {"n": 100_000}, "n", "<= 256"),
        ("/sample", {"n": "3"}, "n", "integer"),
        ("/sample", {"n": 2, "temperature": -1}, "temperature", "between"),
        ("/sample", {"n": 2, "temperature": "hot"}, "temperature", "number"),
        (
            "/interpolate",
            {"start_z": Z, "end_z": Z, "steps": 2, "method": "cubic"},
            "method",
            "unknown",
        ),
        ("/interpolate", {"start_z": Z, "end_z": Z, "steps": 1}, "steps", ">= 2"),
        ("/interpolate", {"start_z": Z, "end_z": Z, "steps": None}, "steps", "integer"),
        ("/interpolate", {"start_z": Z, "end_z": Z, "steps": 10_000}, "steps", "<= 64"),
        ("/interpolate", {"start": IMG, "start_z": Z, "end_z": Z}, "start", "both"),
        ("/interpolate", {"end_z": Z}, "start", "neither"),
        ("/interpolate", {"start_z": Z}, "end", "neither"),
        ("/interpolate", {"start_z": [0.0] * 3, "end_z": Z}, "start_z", f"{LATENT_DIM} numbers"),
        ("/interpolate", {"start_z": Z, "end": [2.0] * 784}, "end", "[0, 1]"),
    ],
)
def test_bad_json_values_are_422_naming_the_field(client, route, body, field, words):
    assert_error(client.post(route, json=body), 422, field, words)


def test_error_messages_quote_only_a_short_piece_of_the_value(client):
    for body in ({"n": "x" * 100_000}, {"n": 1, "y" * 100_000: 1}):
        response = client.post("/sample", json=body)
        assert response.status_code == 422
        assert len(response.content) < 300, response.text


def test_too_many_images_is_refused(make_client):
    with make_client(max_images=2) as client:
        response = client.post("/encode", json={"images": [IMG] * 3})
    assert_error(response, 422, "images", "at most 2")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"images": [NaN]}', "NaN"),
        (b'{"z": [[Infinity, 0, 0, 0]]}', "Infinity"),
        (b'{"images": [', "malformed"),
        (b"", "empty"),
        (b"[1, 2]", "object"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_malformed_json_is_400(client, raw, words):
    response = client.post("/decode", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, None, words)


def test_wrong_content_type_is_415(client):
    response = client.post("/sample", content=b"n=3", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, "Content-Type", "text/plain")
    response = client.post(
        "/sample", content=b"\x93NUMPY", headers={"Content-Type": "application/x-npy"}
    )
    assert response.status_code == 415


def test_unknown_http_method_and_path(client):
    for response in (client.put("/encode"), client.get("/sample")):
        assert_error(response, 405, None, "not allowed")
        assert response.headers["allow"] == "POST"
    head = client.head("/decode")
    assert (head.status_code, head.headers["content-type"]) == (405, "application/json")
    assert_error(client.get("/nope"), 404, None, "not found")


def test_body_over_the_limit_is_413_from_content_length(make_client):
    with make_client(max_body_bytes=2048) as client:
        response = client.post(
            "/decode", content=b"x" * 4096, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, None, "2048")
        assert client.get("/readyz").status_code == 200  # and the server carries on
        metrics = client.get("/metrics").text
    # refused before routing, yet counted under its route
    assert 'vae_http_errors_total{code="body_too_large",route="/decode"} 1.0' in metrics


@pytest.mark.parametrize(
    ("http_version", "framing"),
    [
        ("1.1", [(b"transfer-encoding", b"chunked")]),
        ("1.1", [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")]),
        ("1.1", [(b"content-length", b"abc")]),
        ("1.1", [(b"content-length", b"-5")]),
        ("1.1", [(b"content-length", b"10"), (b"content-length", b"10")]),
        ("2", []),
    ],
    ids=["chunked", "length-and-chunked", "bad-length", "negative", "two-lengths", "http2"],
)
def test_streamed_body_over_the_limit_is_413_without_reading_it_all(
    tiny_model_dir, http_version, framing
):
    """A body of undeclared length: refused once the count passes the limit.

    Driven at the ASGI level because TestClient buffers request bodies before sending them."""
    app = create_app(Settings(model_dir=tiny_model_dir, workers=1, max_body_bytes=2048))
    chunks_read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b" " * 1024, "more_body": chunks_read < 1000}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = http_scope("/decode", [(b"content-type", b"application/json"), *framing])
    scope["http_version"] = http_version
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    # The rest of the body is never read, so the connection cannot be reused.
    assert (b"connection", b"close") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "body_too_large"
    assert chunks_read == 3


def test_a_client_gone_before_its_body_arrived_is_counted_not_answered(client):
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = http_scope("/encode", [(b"content-type", b"application/x-npy")])
    asyncio.run(client.app(scope, receive, send))
    assert sent == []
    metrics = client.get("/metrics").text
    assert 'vae_http_requests_total{method="POST",route="/encode",status="499"} 1.0' in metrics
    assert 'vae_http_errors_total{code="client_disconnected",route="/encode"} 1.0' in metrics


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = st.sampled_from(
    [
        "images",
        "z",
        "n",
        "seed",
        "temperature",
        "start",
        "start_z",
        "end",
        "end_z",
        "steps",
        "method",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(["/encode", "/decode", "/sample", "/interpolate"]),
    body=st.dictionaries(FIELDS, JSON_VALUES, max_size=4) | JSON_VALUES,
)
def test_fuzzed_json_bodies_never_cause_a_500(client, route, body):
    response = client.post(
        route, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_fuzzed_bytes_never_cause_a_500(client, raw):
    for route, content_type in [
        ("/encode", "application/json"),
        ("/encode", "application/x-npy"),
        ("/decode", "application/json"),
    ]:
        response = client.post(route, content=raw, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500, response.text
    response = client.post("/encode", json={"images": [b64(raw)]})
    assert 400 <= response.status_code < 500, response.text
