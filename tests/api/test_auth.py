"""Optional API key: enforced on model routes only when set, declared in OpenAPI only then."""

from __future__ import annotations

import pytest

from tests.api.conftest import LATENT_DIM

KEY = "s3cret-key"
DECODE = {"z": [[0.0] * LATENT_DIM]}


@pytest.fixture(scope="module")
def secured(make_client):
    with make_client(api_key=KEY) as client:
        yield client


def test_without_a_key_configured_nothing_is_required_or_declared(client):
    assert client.post("/decode", json=DECODE).status_code == 200
    doc = client.get("/openapi.json").json()
    assert "securitySchemes" not in doc.get("components", {})
    assert "401" not in doc["paths"]["/encode"]["post"]["responses"]


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}],
)
def test_the_key_is_accepted_in_either_header(secured, headers):
    assert secured.post("/decode", json=DECODE, headers=headers).status_code == 200
    assert secured.get("/model", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
)
def test_missing_or_wrong_key_is_401_json(secured, headers):
    for response in (
        secured.post("/decode", json=DECODE, headers=headers),
        secured.get("/model", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_health_metrics_and_docs_need_no_key(secured):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


def test_openapi_declares_both_schemes_when_a_key_is_set(secured):
    doc = secured.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    assert doc["paths"]["/encode"]["post"]["security"]
    assert "401" in doc["paths"]["/encode"]["post"]["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
