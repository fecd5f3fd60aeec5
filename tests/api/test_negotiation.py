"""Content negotiation: Accept per RFC 9110 12.5.1, Content-Type, and short 406/415 messages."""

from __future__ import annotations

import pytest

from service.api.errors import ApiError
from service.api.negotiation import GIF, JSON, NPY, PNG, RAW, answer_type, body_type
from tests.api.conftest import LATENT_DIM

DECODE = (JSON, PNG, NPY)  # what /decode and /sample answer
INTERPOLATE = (JSON, PNG, GIF, NPY)
ENCODE = (JSON, NPY)
BODIES = (JSON, NPY, RAW)  # what /encode and /decode read
HUGE = "text/html, " * 80_000  # 880 KB of ranges no route answers


@pytest.mark.parametrize(
    ("header", "offered", "expected"),
    [
        # the exact-match fast path, and the full parse of the same values
        (JSON, DECODE, JSON),
        (PNG, DECODE, PNG),
        (NPY, DECODE, NPY),
        (GIF, INTERPOLATE, GIF),
        (GIF, DECODE, 406),
        ("Image/PNG", DECODE, PNG),
        (" image/png ", DECODE, PNG),
        ("image/png;q=1", DECODE, PNG),
        # no preference: the route's default
        (None, DECODE, JSON),
        ("", DECODE, JSON),
        (" ", DECODE, JSON),
        (", ,", DECODE, JSON),
        (None, (PNG, JSON), PNG),
        ("*/*", DECODE, JSON),
        ("*/*", (NPY, JSON), NPY),
        ("*/*;q=1", DECODE, JSON),  # the */* fast path's answer, from the full parse
        (" */*", (NPY, JSON), NPY),
        # q=0 refuses a type, even where a wildcard allows it
        ("application/json;q=0, */*", DECODE, PNG),
        ("*/*, application/json;q=0", DECODE, PNG),
        ("application/json;q=0, image/png;q=0, */*;q=0.1", DECODE, NPY),
        ("application/json;q=0", DECODE, 406),
        ("*/*;q=0", DECODE, 406),
        ("application/*;q=0, */*", DECODE, PNG),
        ("image/*;q=0, */*", INTERPOLATE, JSON),
        # the most specific range decides, whatever its q
        ("image/*;q=0.5, image/png", INTERPOLATE, PNG),
        ("image/png;q=0.1, image/*", INTERPOLATE, GIF),
        ("*/*;q=0, image/png", DECODE, PNG),
        ("*/*;q=0.1, image/png;q=0.5", DECODE, PNG),
        ("*/*;q=0.1, image/png;q=0.5", ENCODE, JSON),
        ("application/json;q=0.5, */*;q=0.9", DECODE, PNG),
        ("image/png;q=0.5, */*;q=0.9", DECODE, JSON),
        ("application/*;q=0.2, application/x-npy;q=0.3, */*;q=0.1", DECODE, NPY),
        # image/*
        ("image/*", INTERPOLATE, PNG),
        ("image/*", DECODE, PNG),
        ("image/*, application/json;q=0.5", DECODE, PNG),
        ("image/gif, image/*;q=0.9", INTERPOLATE, GIF),
        ("image/*", ENCODE, 406),
        ("image/*, text/*", ENCODE, 406),
        # equal quality: the server's order
        ("image/png, application/json", DECODE, JSON),
        ("application/x-npy;q=0.5, image/png;q=0.5", DECODE, PNG),
        ("image/gif, image/png", INTERPOLATE, PNG),
        # case and whitespace
        ("Application/JSON ; Q=0.8, image/png;q=0.7", DECODE, JSON),
        ("Application/JSON ; Q=0.8, image/png;q=0.9", DECODE, PNG),
        ("IMAGE/*\t;\tq=0.9 , application/json ; q=0.5", DECODE, PNG),
        # qvalues: 0 to 1 with up to three decimals; a malformed one drops its range
        ("image/png;q=0.999, application/json;q=0.998", DECODE, PNG),
        ("image/png;q=1.000, application/json;q=0.999", DECODE, PNG),
        ("image/png;q=0., application/json;q=0.001", DECODE, JSON),
        ("image/png;q=2, application/json;q=0.5", DECODE, JSON),
        ("image/png;q=0.1234, application/json;q=0.5", DECODE, JSON),
        ("image/png;q=-1, application/json;q=0.5", DECODE, JSON),
        ("image/png;q=.5, application/json;q=0.5", DECODE, JSON),
        ("image/png;q=, application/json;q=0.5", DECODE, JSON),
        ("image/png;q=abc", DECODE, 406),
        ("application/json;q=abc, */*", DECODE, JSON),  # dropped, not read as q=0
        # media range parameters must all be the offered type's
        ("application/json;charset=utf-8", DECODE, JSON),
        ('application/json; Charset="UTF-8"', DECODE, JSON),
        ("application/json;charset=latin-1", DECODE, 406),
        ("application/json;charset=latin-1, */*;q=0.5", DECODE, JSON),
        ("image/png;level=1", DECODE, 406),
        ("image/png;level=1, image/*;q=0.5", DECODE, PNG),
        ("application/json;charset=utf-8;q=0.2, application/json;q=0.9, */*;q=0.5", DECODE, PNG),
        ('text/plain;a="x, y", image/png', DECODE, PNG),
        ('text/plain;a="x\\", image/png"', DECODE, 406),
        ('image/png;a="unterminated, application/json', DECODE, 406),
        ("image/png;q=0.5;ext=1, application/json;q=0.4", DECODE, PNG),
        ("image/png;, application/json;q=0.5", DECODE, PNG),
        # malformed and empty list elements
        (", ,application/json", DECODE, JSON),
        ("image/png,,", DECODE, PNG),
        ("image, */png, image/png;q=0.5, application/json;foo", DECODE, PNG),
        ("garbage", DECODE, 406),
        (HUGE, DECODE, 406),
    ],
)
def test_answer_type(header, offered, expected):
    if expected == 406:
        with pytest.raises(ApiError) as caught:
            answer_type(header, offered)
        assert (caught.value.status, caught.value.code) == (406, "not_acceptable")
        assert caught.value.field == "Accept"
    else:
        assert answer_type(header, offered) == expected


@pytest.mark.parametrize(
    ("raw", "allowed", "expected"),
    [
        (JSON, BODIES, JSON),
        (NPY, BODIES, NPY),
        (RAW, BODIES, RAW),
        (None, BODIES, JSON),
        ("", BODIES, JSON),
        ("application/json; charset=utf-8", BODIES, JSON),
        ('application/json;charset="utf-8"', (JSON,), JSON),
        ("Application/JSON", BODIES, JSON),
        (" APPLICATION/X-NPY ; foo=bar", BODIES, NPY),
        ("text/plain", BODIES, 415),
        ("application/*", BODIES, 415),
        (NPY, (JSON,), 415),
        ("application/jsonx", BODIES, 415),
        (None, (NPY,), 415),
    ],
)
def test_body_type(raw, allowed, expected):
    if expected == 415:
        with pytest.raises(ApiError) as caught:
            body_type(raw, allowed)
        assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")
        assert caught.value.field == "Content-Type"
    else:
        assert body_type(raw, allowed) == expected


def test_error_messages_quote_a_huge_header_only_briefly():
    with pytest.raises(ApiError) as accept:
        answer_type(HUGE, DECODE)
    with pytest.raises(ApiError) as content_type:
        body_type("x/" + "y" * 800_000, BODIES)
    for caught in (accept, content_type):
        message = caught.value.message
        assert len(message) < 200, message[:300]
        assert "'text/html, text/html" in message or "'x/yyyy" in message
        assert "..." in message


def test_error_messages_quote_a_short_header_whole():
    with pytest.raises(ApiError) as caught:
        answer_type("image/gif", DECODE)
    assert caught.value.message.startswith("cannot answer with 'image/gif';")
    with pytest.raises(ApiError) as caught:
        body_type("text/plain\x00", BODIES)
    assert "'text/plain\\x00'" in caught.value.message  # control characters escaped


def test_decode_answers_png_when_json_is_refused(client):
    response = client.post(
        "/decode",
        json={"z": [[0.0] * LATENT_DIM]},
        headers={"Accept": "application/json;q=0, */*"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PNG
    assert response.content.startswith(b"\x89PNG")


def test_not_acceptable_is_a_short_json_error(client):
    response = client.post(
        "/decode", json={"z": [[0.0] * LATENT_DIM]}, headers={"Accept": "image/*;q=0, " + HUGE}
    )
    assert response.status_code == 406
    assert response.headers["content-type"] == JSON
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("not_acceptable", "Accept")
    assert len(response.content) < 400, response.content[:500]


def test_json_with_charset_is_read_as_json(client):
    response = client.post(
        "/sample",
        content=b'{"n": 2, "seed": 1}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 2
