"""Every route, in-process, on the real tiny ONNX model."""

from __future__ import annotations

import numpy as np
import pytest

from service.app import create_app
from service.config import Settings
from tests.api.conftest import LATENT_DIM
from tests.api.images import digit


def test_healthz_and_readyz_answer_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_health_probes_answer_head_too(client):
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""


def test_readyz_is_503_and_routes_refuse_before_the_model_is_loaded(tiny_model_dir):
    from fastapi.testclient import TestClient

    app = create_app(Settings(model_dir=tiny_model_dir, workers=1))
    client = TestClient(app)  # no `with`: the lifespan (model load) has not run
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    for response in (
        client.post("/decode", json={"z": [[0.0] * LATENT_DIM]}),
        client.get("/model"),
    ):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_ready"


def test_routes_match_behind_a_root_path_and_only_their_own_path(tiny_model_dir):
    from fastapi.testclient import TestClient

    app = create_app(Settings(model_dir=tiny_model_dir, workers=1))
    # As a proxy or `uvicorn --root-path /vae` sends them: scope path "/vae/...", root "/vae".
    with TestClient(app, root_path="/vae") as client:
        assert client.get("/vae/healthz").status_code == 200
        z = {"z": [[0.0] * LATENT_DIM]}
        assert client.post("/vae/decode", json=z).status_code == 200
        slash = client.post("/vae/decode/", json=z, follow_redirects=False)
        assert slash.status_code == 307  # redirected to /decode, not answered as it
        assert slash.headers["location"] == "/vae/decode"
        assert client.post("/vae/decodes", json=z).status_code == 404
        assert client.get("/vae/decode").status_code == 405


def test_encode_returns_mu_sigma_and_z_from_the_seed(client):
    images = np.stack([digit(0).reshape(-1), digit(1).reshape(-1)])
    body = client.post("/encode", json={"images": images.tolist(), "seed": 123}).json()
    mu, sigma, z = (np.asarray(body[k], dtype=np.float32) for k in ("mu", "sigma", "z"))
    assert mu.shape == sigma.shape == z.shape == (2, LATENT_DIM)
    assert body["seed"] == 123
    assert (sigma >= 0).all()
    w = np.random.default_rng(123).standard_normal(mu.shape).astype(np.float32)
    np.testing.assert_allclose(z, mu + sigma * w, rtol=1e-5, atol=1e-6)


def test_encode_same_seed_same_answer_and_no_seed_returns_the_one_used(client):
    payload = {"images": [digit(2).reshape(-1).tolist()], "seed": 9}
    assert (
        client.post("/encode", json=payload).json() == client.post("/encode", json=payload).json()
    )
    first = client.post("/encode", json={"images": payload["images"]}).json()
    replay = client.post(
        "/encode", json={"images": payload["images"], "seed": first["seed"]}
    ).json()
    assert replay == first


def test_decode_returns_images_in_unit_range(client):
    z = np.random.default_rng(0).standard_normal((3, LATENT_DIM)).tolist()
    images = np.asarray(client.post("/decode", json={"z": z}).json()["images"])
    assert images.shape == (3, 784)
    assert images.min() >= 0.0
    assert images.max() <= 1.0


def test_sample_is_reproducible_and_scales_with_temperature(client):
    a = client.post("/sample", json={"n": 5, "seed": 3}).json()
    b = client.post("/sample", json={"n": 5, "seed": 3}).json()
    assert a == b
    assert np.asarray(a["z"]).shape == (5, LATENT_DIM)
    assert np.asarray(a["images"]).shape == (5, 784)
    cold = client.post("/sample", json={"n": 5, "seed": 3, "temperature": 0.5}).json()
    np.testing.assert_allclose(
        np.asarray(cold["z"]), np.asarray(a["z"]) * 0.5, rtol=1e-5, atol=1e-6
    )
    zero = client.post("/sample", json={"n": 2, "temperature": 0}).json()
    assert np.asarray(zero["z"]).tolist() == [[0.0] * LATENT_DIM] * 2


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_between_latents_includes_both_ends(client, method):
    start, end = [0.5, -1.0, 2.0, 0.0], [-1.0, 1.0, 0.25, 3.0]
    body = client.post(
        "/interpolate", json={"start_z": start, "end_z": end, "steps": 6, "method": method}
    ).json()
    z = np.asarray(body["z"], dtype=np.float32)
    assert z.shape == (6, LATENT_DIM)
    np.testing.assert_allclose(z[0], start, atol=1e-6)
    np.testing.assert_allclose(z[-1], end, atol=1e-6)
    assert np.asarray(body["images"]).shape == (6, 784)


def test_interpolate_between_images_starts_at_their_means(client):
    start, end = digit(4), digit(5)
    mu = np.asarray(
        client.post("/encode", json={"images": [start.tolist(), end.tolist()]}).json()["mu"]
    )
    body = client.post(
        "/interpolate", json={"start": start.tolist(), "end_z": mu[1].tolist(), "steps": 3}
    ).json()
    np.testing.assert_allclose(np.asarray(body["z"])[0], mu[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(body["z"])[-1], mu[1], atol=1e-5)


def test_model_reports_manifest_providers_and_limits(client):
    body = client.get("/model").json()
    assert body["manifest"]["latent_dim"] == LATENT_DIM
    assert body["latent_dim"] == LATENT_DIM
    assert "CPUExecutionProvider" in body["providers"]
    assert body["limits"] == {
        "max_images": 256,
        "max_n": 256,
        "max_steps": 64,
        "max_body_bytes": 8 * 1024 * 1024,
    }


def test_request_id_is_echoed_or_generated(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32


def test_metrics_count_requests_inference_and_errors(make_client):
    with make_client() as client:
        client.post("/decode", json={"z": [[0.0] * LATENT_DIM] * 3})
        client.post("/decode", json={"z": [[0.0] * 3]})
        text = client.get("/metrics").text
    assert 'vae_http_requests_total{method="POST",route="/decode",status="200"} 1.0' in text
    assert 'vae_http_requests_total{method="POST",route="/decode",status="422"} 1.0' in text
    assert 'vae_http_errors_total{code="invalid_value",route="/decode"} 1.0' in text
    assert 'vae_inference_batch_rows_sum{graph="decoder"}' in text
    assert "vae_inference_duration_seconds_count" in text
    assert "vae_inference_queue_seconds_count" in text
    assert (
        'vae_http_request_duration_seconds_count{method="POST",route="/decode",status="200"} 1.0'
        in text
    )


def test_unexpected_errors_are_500_json_without_internals(make_client, monkeypatch, caplog):
    from service.runtime.service import VAEService

    async def broken(self, z):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(VAEService, "decode", broken)
    with make_client() as client:
        response = client.post(
            "/decode", json={"z": [[0.0] * LATENT_DIM]}, headers={"X-Request-ID": "r1"}
        )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "r1"
    assert any(getattr(r, "request_id", None) == "r1" for r in caplog.records)


def test_cors_is_off_by_default_and_on_when_configured(client, make_client):
    headers = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/decode", headers=headers).headers
    with make_client(cors_origins="https://example.org") as cors:
        response = cors.options("/decode", headers=headers)
    assert response.headers["access-control-allow-origin"] == "https://example.org"
