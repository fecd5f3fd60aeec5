"""What a client sees while wrk floods the server (the overload scenarios' second view).

The sample clients connect first; then the probe prints `READY` (the harness starts wrk
when it reads it), waits `--ramp` seconds for wrk's connections, and two things run at once
for `--duration` seconds:

- a health probe: `GET /healthz` on a new connection every `--interval` seconds, as a
  supervisor's probe does (each on its own schedule, so a slow one never delays the next;
  `--no-health` leaves it out: the harness runs it in a second process, as a busy client's
  timings include its own event loop's lag);
- `--clients` sample clients: each posts the scenario's body over its keep-alive connection
  in a closed loop and records every answer's status and latency (from the request's first
  byte sent). wrk reports one latency distribution for 200s and 503s together; the sample
  gives the admitted (200) requests' own.

Meanwhile the listening socket's accept queue is read from /proc/net/tcp every
`--interval`: connections the kernel has completed but the server has not yet taken, where a
new client (a probe) waits; and this process's event-loop lag is sampled (how late a
`--interval` sleep wakes up). One JSON object is printed at the end.

Run it on the load generator's core, e.g.
`taskset -c 0 python -m benchmarks.probe --port 8000 --path /encode --body-file b.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from pathlib import Path

import uvloop

TIMEOUT_S = 20.0  # as wrk's in these runs (twice the duration, at least 10 s)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1e3 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms, default=None),
    }


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: (status, headers block)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status, head


async def health_probe(host: str, port: int, results: dict) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            status, _ = await read_answer(reader)
            writer.close()
        results["latencies"].append(time.perf_counter() - started)
        if status != 200:
            results["failures"].append(f"status {status}")
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        results["latencies"].append(time.perf_counter() - started)
        results["failures"].append(type(exc).__name__)


async def sample_client(
    host: str, port: int, request: bytes, ready: asyncio.Event, stop: list[float], results: dict
) -> None:
    streams = None
    while True:
        try:
            if streams is None:
                started = time.perf_counter()
                async with asyncio.timeout(TIMEOUT_S):
                    streams = await asyncio.open_connection(host, port)
                results["connect"].append(time.perf_counter() - started)
            if not ready.is_set():
                results["connected"] += 1
                await ready.wait()
            if time.perf_counter() >= stop[0]:
                break
            reader, writer = streams
            started = time.perf_counter()
            async with asyncio.timeout(TIMEOUT_S):
                writer.write(request)
                status, head = await read_answer(reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            results["errors"].append(type(exc).__name__)
            if streams is not None:
                streams[1].close()
            streams = None
            if not ready.is_set():
                results["connected"] += 1  # counted as ready: the error is the result
                await ready.wait()
            if time.perf_counter() >= stop[0]:
                break
            continue
        seconds = time.perf_counter() - started
        results["statuses"][str(status)] = results["statuses"].get(str(status), 0) + 1
        if status == 200:
            results["admitted"].append(seconds)
        elif status == 503 and b"\r\nretry-after:" in head.lower():
            results["retry_after"] += 1
    if streams is not None:
        streams[1].close()


def accept_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the socket listening on `port` (the
    rx_queue of a LISTEN entry in /proc/net/tcp), or None when there is none to read."""
    needle = f":{port:04X} 00000000:0000 0A "
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        if needle in line:
            return int(line.split()[4].split(":")[1], 16)
    return None


async def sample_loop_lag(interval: float, stop: list[float], out: list[float]) -> None:
    """How late this process's own event loop wakes up: every latency it measures includes
    that much, so a number from a client too busy to time its requests shows as such."""
    while time.perf_counter() < stop[0]:
        asked = time.perf_counter()
        await asyncio.sleep(interval)
        out.append(max(0.0, time.perf_counter() - asked - interval))


async def sample_accept_queue(port: int, interval: float, stop: list[float], out: list) -> None:
    while time.perf_counter() < stop[0]:
        queued = accept_queue(port)
        if queued is not None:
            out.append(queued)
        await asyncio.sleep(interval)


async def run(args: argparse.Namespace) -> dict:
    body = args.body_file.read_bytes() if args.body_file else b""
    request = (
        f"POST {args.path} HTTP/1.1\r\nHost: probe\r\nContent-Type: {args.content_type}\r\n"
        f"Accept: {args.accept}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    health: dict = {"latencies": [], "failures": []}
    sample: dict = {"statuses": {}, "admitted": [], "errors": [], "retry_after": 0}
    sample |= {"connect": [], "connected": 0}
    ready, stop = asyncio.Event(), [math.inf]
    count = args.clients if args.body_file else 0
    clients = [
        asyncio.create_task(sample_client(args.host, args.port, request, ready, stop, sample))
        for _ in range(count)
    ]
    while sample["connected"] < count:
        await asyncio.sleep(0.01)
    print("READY", flush=True)
    stop[0] = time.perf_counter() + args.ramp + args.duration
    backlog: list[int] = []
    lag: list[float] = []
    sampler = asyncio.create_task(sample_accept_queue(args.port, args.interval, stop, backlog))
    await asyncio.sleep(args.ramp)
    ready.set()
    lag_sampler = asyncio.create_task(sample_loop_lag(args.interval, stop, lag))
    probes = []
    while args.health and time.perf_counter() < stop[0]:
        probes.append(asyncio.create_task(health_probe(args.host, args.port, health)))
        await asyncio.sleep(args.interval)
    await asyncio.gather(*clients, *probes, sampler, lag_sampler)
    return {
        "loop_lag": summary_ms(lag),
        "accept_queue": {
            "max": max(backlog, default=None),
            "mean": sum(backlog) / len(backlog) if backlog else None,
            "samples": len(backlog),
        },
        "healthz": {**summary_ms(health["latencies"]), "failures": health["failures"][:20]},
        "healthz_failures": len(health["failures"]),
        "sample": {
            "clients": len(clients),
            "connect": summary_ms(sample["connect"]),
            "statuses": sample["statuses"],
            "admitted": summary_ms(sample["admitted"]),
            "retry_after_503s": sample["retry_after"],
            "errors": len(sample["errors"]),
            "error_kinds": dict(Counter(sample["errors"])),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="seconds between READY and the measurements"
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--path", default="/encode")
    parser.add_argument("--body-file", type=Path, default=None, help="none: probes only")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--accept", default="application/json")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--no-health",
        dest="health",
        action="store_false",
        help="no health probes (the harness probes from a process of their own: in the sample "
        "clients' process, their timings would include its event loop's lag)",
    )
    args = parser.parse_args(argv)
    print(json.dumps(uvloop.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
