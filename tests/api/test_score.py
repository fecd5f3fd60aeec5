"""`POST /score` on the committed default model and its calibration: scores are deterministic
per seed, the same micro-batched or not, higher for images that are not digits (uniform
noise, inverted digits) than for real MNIST test digits, placed against the calibration
stored in the manifest; and on a model without a calibration the placement is null."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from vae_manifest import load_manifest
from vae_manifest.scoring import threshold_at

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DIGITS = np.load(FIXTURES / "mnist_test_digits.npy").astype(np.float32) / 255  # 0-9, real
NOISE = np.random.default_rng(0).random((5, 784), dtype=np.float32)


@contextmanager
def started(model_dir: Path, **overrides) -> Iterator[TestClient]:
    settings = Settings(model_dir=model_dir, workers=1, access_log=False, **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def client(default_model_dir) -> Iterator[TestClient]:
    with started(default_model_dir) as client:
        yield client


def score(client, images: np.ndarray, **fields) -> dict:
    answer = client.post("/score", json={"images": images.tolist(), **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_same_seed_gives_the_same_scores(client):
    first = score(client, DIGITS, seed=5, samples=8)
    assert first == score(client, DIGITS, seed=5, samples=8)
    other = score(client, DIGITS, seed=6, samples=8)
    assert other["neg_elbo"] != first["neg_elbo"]
    assert (first["seed"], first["samples"]) == (5, 8)
    np.testing.assert_allclose(other["neg_elbo"], first["neg_elbo"], rtol=0.2)


def test_images_that_are_not_digits_score_higher_and_are_outliers(client):
    digits = score(client, DIGITS, seed=1)
    noise = score(client, NOISE, seed=1)
    inverted = score(client, 1.0 - DIGITS, seed=1)
    assert min(noise["neg_elbo"]) > max(digits["neg_elbo"])
    assert min(inverted["neg_elbo"]) > max(digits["neg_elbo"])
    assert all(noise["outlier"])
    assert all(inverted["outlier"])
    assert sum(digits["outlier"]) <= 1
    assert max(noise["percentile"]) == 100.0


def test_scores_are_placed_against_the_manifests_calibration(client, default_model_dir):
    calibration = load_manifest(default_model_dir).calibration
    assert calibration is not None
    quantiles = np.asarray(calibration.quantiles)
    answer = score(client, DIGITS, seed=2)
    assert answer["threshold"] == pytest.approx(threshold_at(quantiles, 0.99))
    expected = np.interp(answer["neg_elbo"], quantiles, np.arange(101))
    np.testing.assert_allclose(answer["percentile"], expected)
    assert answer["outlier"] == [s > answer["threshold"] for s in answer["neg_elbo"]]


def test_the_outlier_quantile_is_a_setting(default_model_dir):
    with started(default_model_dir, outlier_quantile=0.5) as client:
        answer = score(client, DIGITS, seed=2)
    median = load_manifest(default_model_dir).calibration.quantiles[50]
    assert answer["threshold"] == pytest.approx(median)


def test_one_sample_has_no_iwae_and_more_samples_tighten_it(client):
    one = score(client, DIGITS[:3], seed=3, samples=1)
    assert one["iwae"] is None
    many = score(client, DIGITS[:3], seed=3, samples=32)
    assert len(many["iwae"]) == 3
    # The bound with many draws sits below the single-draw ELBO estimate on average.
    assert np.mean(many["iwae"]) < np.mean(many["neg_elbo"])


def test_micro_batched_concurrent_requests_equal_unbatched_ones(default_model_dir):
    bodies = [
        {"images": DIGITS[i : i + 3].tolist(), "seed": i, "samples": 2 + i % 3} for i in range(6)
    ]

    async def concurrently(app) -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = await asyncio.gather(*(client.post("/score", json=b) for b in bodies))
        return [a.json() for a in answers]

    results = []
    for batching in (True, False):
        settings = Settings(
            model_dir=default_model_dir, workers=1, access_log=False, batching=batching
        )
        app = create_app(settings)

        async def run(app=app) -> list[dict]:
            async with app.router.lifespan_context(app):
                return await concurrently(app)

        results.append(asyncio.run(run()))
    batched, unbatched = results
    for a, b in zip(batched, unbatched, strict=True):
        np.testing.assert_allclose(a["neg_elbo"], b["neg_elbo"], rtol=1e-5)


def test_npy_in_and_out(client):
    buf = io.BytesIO()
    np.save(buf, DIGITS[:4])
    answer = client.post(
        "/score?seed=4&samples=3",
        content=buf.getvalue(),
        headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-arrays"] == "neg_elbo,iwae,percentile,outlier"
    arrays = np.load(io.BytesIO(answer.content))
    assert arrays.shape == (4, 4)
    as_json = score(client, DIGITS[:4], seed=4, samples=3)
    np.testing.assert_allclose(arrays[0], as_json["neg_elbo"], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"images": [[0.5] * 784], "samples": 0}, "samples"),
        ({"images": [[0.5] * 784], "samples": 33}, "samples"),
        ({"images": [[0.5] * 784], "samples": "4"}, "samples"),
        ({"images": [[1.5] * 784]}, "images[0]"),
        ({"images": []}, "images"),
    ],
)
def test_bad_input_is_refused_naming_the_field(client, body, field):
    answer = client.post("/score", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field


def test_a_model_without_calibration_answers_scores_only(tiny_model_dir):
    with started(tiny_model_dir) as client:
        answer = score(client, np.full((2, 784), 0.5), seed=0)
    assert len(answer["neg_elbo"]) == 2
    assert answer["percentile"] is None
    assert answer["outlier"] is None
    assert answer["threshold"] is None


def test_the_route_scores_as_the_training_report_does(client, default_model_dir):
    """The report's anomaly section (`training evaluate`) and the calibration use the same
    function and draws: its AUROC figures hold for the route."""
    from training.calibrate import score_images
    from training.onnx_model import OnnxVAE

    neg_elbo, iwae = score_images(OnnxVAE(default_model_dir), DIGITS, "sse", 4, 9)
    answer = score(client, DIGITS, seed=9, samples=4)
    np.testing.assert_allclose(answer["neg_elbo"], neg_elbo, rtol=1e-5)
    np.testing.assert_allclose(answer["iwae"], iwae, rtol=1e-5)


def test_the_oip_score_model_carries_the_calibrated_percentile(client):
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": [10, 784],
                "data": DIGITS.ravel().tolist(),
            }
        ],
        "parameters": {"seed": 2, "samples": 4},
    }
    answer = client.post("/v2/models/mnist-vae-score/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert set(outputs) == {"neg_elbo", "iwae", "percentile"}
    reference = score(client, DIGITS, seed=2, samples=4)
    np.testing.assert_allclose(outputs["percentile"], reference["percentile"], rtol=1e-4)
