"""Answers never reflect a client's input in bulk: no Python reprs, no echoed headers, no
redirects built from the Host header; and every route's documented media type is the one it
answers with."""

from __future__ import annotations

import numpy as np
import pytest

NPY = "application/x-npy"


def _npy_with_header(header: bytes) -> bytes:
    padded = header + b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + b"\0" * 16


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': object(), 'fortran_order': False, 'shape': (1, 784), }",
        b"{'descr': {'names': ['a'], 'formats': [object]}, 'fortran_order': False, 'shape': (4,)}",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 784), 'evil': '"
        + b"x" * 500
        + b"'}",
        b"[" * 2000,
        b"{'descr': '<f4', 'fortran_order': 'yes', 'shape': (1, -784), }",
    ],
    ids=["object-call", "object-dtype", "long-extra-key", "deep", "bad-values"],
)
def test_a_crafted_npy_header_is_refused_without_echoing_it(client, header):
    response = client.post(
        "/encode", content=_npy_with_header(header), headers={"Content-Type": NPY}
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "0x" not in message
    assert "object" not in message
    assert "xxxx" not in message
    assert len(message) < 120


def test_a_path_without_its_slash_is_redirected_on_this_server_not_the_clients_host(client):
    response = client.get("/docs/assets", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/docs/assets/"
    assert "evil" not in response.text
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_metrics_are_documented_as_the_prometheus_text_they_are(client):
    documented = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]
    media = set(documented["200"]["content"])
    answered = client.get("/metrics").headers["content-type"].split(";")[0]
    assert media == {answered} == {"text/plain"}


def test_a_valid_npy_still_encodes(client):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 784), np.float32))
    response = client.post("/encode", content=buf.getvalue(), headers={"Content-Type": NPY})
    assert response.status_code == 200
