"""CPU time per request of the app alone: the ASGI app called directly, no server, no socket.

Each round sends `--concurrency` identical requests at once (so micro-batching forms batches)
and waits for all of them; the figure is process CPU time (every thread) per request. Set
against the wrk runs it separates the app's own cost from uvicorn's and the kernel's. Run it
on a quiet core, e.g. `taskset -c 1 .venv/bin/python -m benchmarks.inprocess`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.bodies import build_bodies
from service.app import create_app, tune_worker_gc
from service.config import Settings

# name -> (method, path, content type, accept, body file from `build_bodies`, share of rounds)
CASES: dict[str, tuple[str, str, str, str, str | None, float]] = {
    "healthz": ("GET", "/healthz", "", "", None, 1.0),
    "encode-1": ("POST", "/encode", "application/json", "application/json", "encode-1.json", 1.0),
    "encode-64-json": (
        "POST",
        "/encode",
        "application/json",
        "application/json",
        "encode-64.json",
        0.02,
    ),  # ~11x
    "encode-64-npy": (
        "POST",
        "/encode",
        "application/x-npy",
        "application/x-npy",
        "encode-64.npy",
        0.15,  # ~7x the work of a one-image request
    ),
}


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> None:
    received = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the app never asks twice for a one-message body
            raise RuntimeError("unexpected second receive")
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(dict(scope), receive, send)
    if status != [200]:
        raise RuntimeError(f"{scope['method']} {scope['path']} answered {status}")


async def _measure(
    model_dir: Path, cases: Sequence[str], concurrency: int, rounds: int
) -> dict[str, float]:
    tune_worker_gc()  # as in a server worker
    app = create_app(Settings(model_dir=model_dir, access_log=False))
    bodies = build_bodies(
        model_dir, json.loads((model_dir / "model.json").read_text())["latent_dim"]
    )
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for name in cases:
            method, path, content_type, accept, body_name, share = CASES[name]
            body = bodies[body_name] if body_name else b""
            headers = [(b"host", b"bench")]
            if content_type:
                headers.append((b"content-type", content_type.encode()))
                headers.append((b"content-length", str(len(body)).encode()))
            if accept:
                headers.append((b"accept", accept.encode()))
            scope = _scope(method, path, headers)
            n_rounds = max(1, round(rounds * share))
            for _ in range(3):  # warm-up
                await asyncio.gather(*(_call(app, scope, body) for _ in range(concurrency)))
            started = time.process_time()
            for _ in range(n_rounds):
                await asyncio.gather(*(_call(app, scope, body) for _ in range(concurrency)))
            results[name] = (time.process_time() - started) / (n_rounds * concurrency)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models/mnist-vae"))
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES)
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=300, help="rounds of the 1.0-share cases")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    results = uvloop.run(_measure(args.model_dir, cases, args.concurrency, args.rounds))
    for name, seconds in results.items():
        print(f"{name:15s} {seconds * 1e6:8.1f} us CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
