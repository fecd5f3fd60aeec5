"""Admission control in-process, on the real tiny ONNX model: past the in-flight or the
queued-rows bound a 503 `overloaded` with `Retry-After`, past the deadline a 504 `timeout`,
probes and `/metrics` never refused. Requests are held where a test needs them (a body that
has not arrived, or a decoder call held in its executor thread), never timed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.api import admission as admission_module
from service.api.admission import Admission
from service.app import create_app
from service.config import Settings
from tests.api.conftest import LATENT_DIM

Z = {"z": [[0.0] * LATENT_DIM]}
JSON_HEADERS = {"content-type": "application/json"}
PROBES = ("/healthz", "/readyz", "/metrics", "/model", "/openapi.json", "/docs")


@asynccontextmanager
async def started(
    model_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app with these settings, its lifespan run, and a client that calls it in-process
    (requests sent from several tasks run concurrently, as under a server)."""
    settings = Settings(model_dir=model_dir, workers=1, access_log=False, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).status_code == 200  # builds the stack
            yield app, client


def admission(app: Any) -> Admission:
    layer = app.middleware_stack
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state the test has set in motion; the bound only turns a hang into a failure."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the app never reached the expected state")


class HeldDecoder:
    """The real decoder, called in the executor thread (`inline_max_rows=0`), held until
    `release`; records the rows of every call, so a test sees which requests were computed."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls: list[np.ndarray] = []
        self.entered = threading.Event()
        self._released = threading.Event()

    def __call__(self, padded: np.ndarray, n: int) -> Any:
        self.calls.append(padded[:n].copy())
        self.entered.set()
        if not self._released.wait(timeout=60):
            raise RuntimeError("the test never released the decoder")
        return self.real(padded, n)

    def release(self) -> None:
        self._released.set()


@asynccontextmanager
async def held_decoder(app: Any) -> AsyncIterator[HeldDecoder]:
    model = app.state.service.model
    held = HeldDecoder(model.run_decoder_padded)
    model.run_decoder_padded = held  # looked up on the model at call time
    try:
        yield held
    finally:
        held.release()
        del model.run_decoder_padded


def assert_overloaded(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert error["code"] == "overloaded"
    assert error["field"] is None
    assert "retry later" in error["message"]


def error_count(metrics: str, route: str, code: str) -> float:
    line = f'vae_http_errors_total{{code="{code}",route="{route}"}} '
    return sum(float(row.split()[-1]) for row in metrics.splitlines() if row.startswith(line))


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_past_the_in_flight_bound_the_model_routes_answer_503_and_probes_stay_open(
    tiny_model_dir,
):
    async def scenario() -> None:
        async with started(tiny_model_dir, max_in_flight=2, retry_after=3) as (app, client):
            gate = asyncio.Event()

            async def body_after_gate() -> AsyncIterator[bytes]:
                await gate.wait()  # admitted, then stuck reading the body: held in flight
                yield b'{"z": [[0, 0, 0, 0]]}'

            held = [
                asyncio.create_task(
                    client.post("/decode", content=body_after_gate(), headers=JSON_HEADERS)
                )
                for _ in range(2)
            ]
            await until(lambda: admission(app).gate.in_flight == 2)
            for path, body in [
                ("/decode", Z),
                ("/encode", {"images": [[0.0] * 784]}),
                ("/sample", {"n": 1}),
                ("/interpolate", {"start_z": [0.0] * 4, "end_z": [1.0] * 4}),
            ]:
                assert_overloaded(await client.post(path, json=body), "3")
            for path in PROBES:
                assert (await client.get(path)).status_code == 200, path
            assert (await client.head("/healthz")).status_code == 200
            gate.set()
            for response in await asyncio.gather(*held):
                assert response.status_code == 200
            assert admission(app).gate.in_flight == 0
            assert (await client.post("/decode", json=Z)).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert error_count(metrics, "/decode", "overloaded") == 1
            assert error_count(metrics, "/encode", "overloaded") == 1
            assert 'vae_http_requests_total{method="POST",route="/sample",status="503"} 1.0' in (
                metrics
            )

    run(scenario)


def test_past_the_queued_rows_bound_a_request_is_refused_before_inference(tiny_model_dir):
    async def scenario() -> None:
        settings = {"max_queued_rows": 4, "inline_max_rows": 0, "retry_after": 2}
        async with started(tiny_model_dir, **settings) as (app, client):
            batcher = app.state.service._decoder_batcher
            async with held_decoder(app) as decoder:
                running = asyncio.create_task(client.post("/decode", json=Z))
                await asyncio.to_thread(decoder.entered.wait, 30)
                queued = asyncio.create_task(
                    client.post("/decode", json={"z": [[1.0] * LATENT_DIM] * 4})
                )
                await until(lambda: batcher.queued_rows == 4)
                refused = await client.post("/decode", json={"z": [[2.0] * LATENT_DIM]})
                assert_overloaded(refused, "2")
                assert "decoder queue is full" in refused.json()["error"]["message"]
                assert (await client.get("/healthz")).status_code == 200
                decoder.release()
                assert (await running).status_code == 200
                assert (await queued).status_code == 200
            assert not any((call == 2.0).any() for call in decoder.calls)  # never computed
            assert (await client.post("/decode", json=Z)).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert error_count(metrics, "/decode", "overloaded") == 1

    run(scenario)


def test_past_the_deadline_a_request_answers_504_and_its_rows_are_never_computed(
    tiny_model_dir,
):
    async def scenario() -> None:
        async with started(tiny_model_dir, request_timeout=0.2, inline_max_rows=0) as (
            app,
            client,
        ):
            async with held_decoder(app) as decoder:
                running = asyncio.create_task(client.post("/decode", json=Z))
                await asyncio.to_thread(decoder.entered.wait, 30)
                late = await client.post("/decode", json={"z": [[3.0] * LATENT_DIM]})
                assert late.status_code == 504
                assert late.json()["error"] == {
                    "code": "timeout",
                    "message": "the decoder did not finish within the request's deadline",
                    "field": None,
                }
                assert late.headers["x-request-id"]
                assert (await running).status_code == 504  # its call was held past the deadline
                decoder.release()
            assert (await client.post("/decode", json=Z)).status_code == 200
            assert not any((call == 3.0).any() for call in decoder.calls)
            assert admission(app).gate.in_flight == 0
            assert app.state.service._decoder_batcher.queued_rows == 0
            metrics = (await client.get("/metrics")).text
            assert error_count(metrics, "/decode", "timeout") == 2

    run(scenario)


def test_the_deadline_covers_unbatched_calls_too(tiny_model_dir):
    async def scenario() -> None:
        async with started(tiny_model_dir, request_timeout=0.2, batching=False) as (app, client):
            async with held_decoder(app) as decoder:
                assert (await client.post("/decode", json=Z)).status_code == 504
                decoder.release()
            assert (await client.post("/decode", json=Z)).status_code == 200

    run(scenario)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, (128, 16384, 10.0)),
        ({"max_in_flight": 0, "max_queued_rows": 0, "request_timeout": 0}, (0, 0, 0.0)),
    ],
)
def test_bounds_are_settings_and_zero_turns_each_off(tiny_model_dir, settings, expected):
    async def scenario() -> None:
        async with started(tiny_model_dir, **settings) as (app, client):
            layer = admission(app)
            batcher = app.state.service._decoder_batcher
            limit = 0 if layer.gate.max_in_flight > 10**9 else layer.gate.max_in_flight
            assert (limit, batcher._max_queued_rows, layer.request_timeout) == expected
            # No bound and no deadline still serve (and a zero deadline never fires at once).
            answers = await asyncio.gather(*(client.post("/decode", json=Z) for _ in range(20)))
            assert {r.status_code for r in answers} == {200}

    run(scenario)


def test_openapi_documents_503_with_retry_after_and_504_on_every_model_route(client):
    doc = client.get("/openapi.json").json()
    for path in ("/encode", "/decode", "/sample", "/interpolate"):
        responses = doc["paths"][path]["post"]["responses"]
        assert "overloaded" in responses["503"]["description"]
        assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
        assert responses["504"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }


def test_after_a_burst_an_idle_worker_trims_its_heap_once(tiny_model_dir, monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(admission_module, "MALLOC_TRIM", trims.append)
    monkeypatch.setattr(admission_module, "TRIM_DELAY_S", 0.05)

    async def scenario() -> None:
        async with started(tiny_model_dir) as (app, client):
            for _ in range(3):  # a quiet worker never trims
                assert (await client.post("/decode", json=Z)).status_code == 200
            await asyncio.sleep(0.2)
            assert trims == []
            gate = asyncio.Event()

            async def body_after_gate() -> AsyncIterator[bytes]:
                await gate.wait()
                yield b'{"z": [[0, 0, 0, 0]]}'

            burst = [
                asyncio.create_task(
                    client.post("/decode", content=body_after_gate(), headers=JSON_HEADERS)
                )
                for _ in range(admission_module.TRIM_AFTER_IN_FLIGHT)
            ]
            await until(
                lambda: admission(app).gate.in_flight == admission_module.TRIM_AFTER_IN_FLIGHT
            )
            gate.set()
            assert {r.status_code for r in await asyncio.gather(*burst)} == {200}
            await until(lambda: trims == [0])
            assert (await client.post("/decode", json=Z)).status_code == 200
            await asyncio.sleep(0.2)
            assert trims == [0]  # once per burst, not after every quiet moment

    run(scenario)
