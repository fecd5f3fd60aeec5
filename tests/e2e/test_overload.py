"""Overload end to end: a real server with small admission bounds, flooded by a few hundred
connections each sending 64-image requests in a closed loop. Every request gets an answer
(200, or 503 `overloaded` with `Retry-After`; never a reset or another 5xx), `/healthz`
answers throughout, and the server serves normally afterwards. No timing assertions beyond
generous liveness bounds."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import orjson
import pytest

pytestmark = pytest.mark.slow

FLOOD = 300  # connections, each sending ROUNDS requests one after the other
ROUNDS = 3
IMAGES = 64
LIVENESS_S = 60.0  # a probe slower than this means the server stopped answering


async def _flood(base_url: str, body: bytes) -> tuple[list, list[tuple[int, float]]]:
    """Every flood request's answer (or exception), and each probe's (status, seconds)."""
    limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=FLOOD)
    headers = {"Content-Type": "application/json"}
    probes: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=LIVENESS_S) as client:
            while not done.is_set():
                started = time.monotonic()
                response = await client.get("/healthz")
                probes.append((response.status_code, time.monotonic() - started))
                await asyncio.sleep(0.05)

    async def connection(client: httpx.AsyncClient) -> list:
        answers = []
        for _ in range(ROUNDS):
            try:
                answers.append(await client.post("/encode", content=body, headers=headers))
            except httpx.HTTPError as exc:  # a reset, a timeout: reported, not raised
                answers.append(exc)
        return answers

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        prober = asyncio.create_task(probe())
        per_connection = await asyncio.gather(*(connection(client) for _ in range(FLOOD)))
        done.set()
        await prober
    return [answer for answers in per_connection for answer in answers], probes


def test_a_flood_gets_200_or_503_probes_answer_and_the_server_recovers(server_factory):
    server = server_factory(
        VAE_MAX_IN_FLIGHT="4",
        VAE_MAX_QUEUED_ROWS="256",
        VAE_RETRY_AFTER="2",
        VAE_ACCESS_LOG="false",
    )
    images = np.random.default_rng(0).random((IMAGES, 784)).round(4)
    body = orjson.dumps({"images": images.tolist(), "seed": 1})

    answers, probes = asyncio.run(_flood(server.base_url, body))

    failures = [a for a in answers if isinstance(a, Exception)]
    assert not failures, f"{len(failures)} requests got no answer, e.g. {failures[0]!r}"
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(503) > 0, "the flood never went past the bounds"
    assert statuses.count(200) > 0, "admission shed everything"
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "2"
            assert answer.json()["error"]["code"] == "overloaded"
        else:
            assert np.asarray(answer.json()["z"]).shape == (IMAGES, 4)

    assert probes, "no probe completed during the flood"
    assert {status for status, _ in probes} == {200}
    assert max(seconds for _, seconds in probes) < LIVENESS_S

    # Afterwards: served normally, and the refusals are counted.
    after = httpx.post(
        f"{server.base_url}/encode", content=body, headers={"Content-Type": "application/json"}
    )
    assert after.status_code == 200
    metrics = httpx.get(f"{server.base_url}/metrics").text
    shed = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('vae_http_errors_total{code="overloaded",route="/encode"}')
    ]
    assert shed == [statuses.count(503)]
    assert server.process.poll() is None
