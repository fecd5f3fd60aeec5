"""Admission control for the model routes (pure ASGI, from the request's headers alone).

- A bound on the requests one worker holds at once: one more is answered 503 `overloaded`
  with `Retry-After` straight away, before its body is read or parsed, so a refusal costs no
  parsing and no inference (the server's own request cycle remains).
- A deadline for each admitted request's inference (`INFERENCE_DEADLINE`, read by the
  runtime where inference is awaited): past it, 504 `timeout` and no compute.

The bound itself lives in `AdmissionGate`, shared by the middleware and the server: the
server asks the gate (`AdmissionGate.early_answer`, its `EarlyAnswerHook`) while it reads a
request's head, and a refusal then costs no request cycle at all. The middleware still refuses
whatever the server leaves to it (a request pipelined behind one in progress, a CORS request,
a body of undeclared length or over the limit, an unusual spelling of the path), with the same
answer where the app would give one.

The runtime's own bound (rows queued per graph, `MicroBatcher`) raises `Overloaded`, answered
with the same status, code and `Retry-After` by `service.api.errors`. Probes, `/metrics`,
`/model` and the docs never pass through here: they stay fast while the model routes shed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from starlette._utils import get_route_path  # what the routes match on (see service.api.routing)
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import (
    ERROR_CODE_KEY,
    OVERLOADED,
    OVERLOADED_STATUS,
    dialect_error,
    overloaded_headers,
)
from service.api.metrics import Metrics
from service.api.middleware import declared_body, log_access, request_id_of
from service.runtime.batching import INFERENCE_DEADLINE
from service.server.early_answers import EarlyAnswer, Resume, Withdraw

log = logging.getLogger("service.api")

SHED_MESSAGE = "too many requests in progress; retry later"
# After a burst (this many requests held at once) the worker hands its freed heap back to the
# system once no model request has been in progress for TRIM_DELAY_S: glibc keeps freed
# memory in its arenas, so after a flood of large bodies a worker would otherwise stay at its
# peak for good (the README's overload section has the figures). The trim blocks the loop
# once per burst, so a short pause between bursts does not trim.
TRIM_AFTER_IN_FLIGHT = 64
TRIM_DELAY_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()


class AdmissionGate:
    """One worker's bound: `max_in_flight` (0: no bound) requests to `routes` at once.

    `early_answer` is the server's `EarlyAnswerHook`: the refusal of a request over the bound,
    counted and logged as the middleware would, or None for every request it leaves to the
    app (not over the bound, not a POST to one of `routes` as spelled there, a body over
    `max_body_bytes` or of undeclared length, a CORS request).
    """

    def __init__(
        self,
        *,
        routes: Iterable[str],
        max_in_flight: int,
        max_body_bytes: int,
        retry_after: int,
        metrics: Metrics,
        access_log: bool,
        cors: bool,
    ) -> None:
        self.max_in_flight = max_in_flight or sys.maxsize
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.metrics = metrics
        self.access_log = access_log
        self.cors = cors
        # Route templates: exact paths, and those with `{parameters}` (one path segment each).
        routes = tuple(routes)
        self._exact = {route: route for route in routes if "{" not in route}
        self._raw_exact = {route.encode(): route for route in self._exact}
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(route)) + "$"), route)
            for route in routes
            if "{" in route
        ]
        # Connections refused early whose next request the server holds back: each slot freed
        # resumes the newest (a held request is read when it can be admitted, and the newest
        # has waited least: under overload, serving newest first keeps latency low).
        self._waiting: OrderedDict[int, Resume] = OrderedDict()
        self._next_key = 0
        self._hold_s = float(retry_after)
        # Every refusal of a route is the same answer (in its protocol's error dialect): its
        # bytes are made once.
        retry = [
            (k.lower().encode(), v.encode()) for k, v in overloaded_headers(retry_after).items()
        ]
        self._refusals: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {}
        for route in routes:
            _, body = dialect_error(route, OVERLOADED_STATUS, OVERLOADED, SHED_MESSAGE, None)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *retry,
            ]
            self._refusals[route] = (headers, body)

    def route_of(self, path: str) -> str | None:
        """The admitted route (its template) that `path` is a request to, or None."""
        route = self._exact.get(path)
        if route is None:
            for pattern, template in self._templates:
                if pattern.match(path):
                    return template
        return route

    def refusal(self, route: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of the 503 `overloaded` answer on `route`."""
        return self._refusals[route]

    def early_answer(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], held_out: bool
    ) -> EarlyAnswer | None:
        full = self.in_flight >= self.max_in_flight
        if method != b"POST" or not (full or (held_out and self._waiting)):
            return None
        started = time.perf_counter()
        raw_path = target.partition(b"?")[0]
        route = self._raw_exact.get(raw_path)
        if route is None and self._templates and b"%" not in raw_path:
            route = self.route_of(raw_path.decode("latin-1"))
        if route is None or not self._answerable(headers):
            return None
        # Not full: this request was held until its hold ran out while a newer one waited.
        # The free slot goes to the newest (admitted latency stays low); with no newer held
        # connection left, this one is admitted.
        if not full and not self._wake():
            return None
        request_id = request_id_of(headers)
        seconds = time.perf_counter() - started
        self.metrics.observe_request(route, "POST", OVERLOADED_STATUS, seconds)
        self.metrics.observe_error(route, OVERLOADED)
        if self.access_log:
            path = raw_path.decode("latin-1")
            log_access("POST", path, route, OVERLOADED_STATUS, request_id, seconds)
        refusal_headers, body = self._refusals[route]
        return EarlyAnswer(
            OVERLOADED_STATUS,
            [(b"x-request-id", request_id.encode()), *refusal_headers],
            body,
            hold_s=self._hold_s,
            wait=self._wait,
        )

    def _answerable(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the app would refuse this request with the plain 503: not a CORS request
        (its answer needs the CORS headers), and a body of declared length within the limit
        (otherwise the app answers 413, or counts the body as it streams)."""
        if self.cors and any(name == b"origin" for name, _ in headers):
            return False
        declared, encoded = declared_body(headers)
        return not encoded and declared is not None and 0 <= declared <= self.max_body_bytes

    def _wait(self, resume: Resume) -> Withdraw:
        key = self._next_key
        self._next_key += 1
        self._waiting[key] = resume
        if self.in_flight < self.max_in_flight:
            # A slot freed while the refused request's body was still arriving: nothing will
            # wake this connection, so it goes on at once.
            self._wake()
        return lambda: self._waiting.pop(key, None) and None

    def release(self) -> None:
        """An admitted request has finished: its slot goes to the newest held connection."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> bool:
        """Resume the newest held connection still open; False when none is left."""
        waiting = self._waiting
        while waiting:
            _, resume = waiting.popitem(last=True)
            if resume():
                return True
        return False


class Admission:
    """Admits requests to the gate's routes within its bound; each admitted one's inference
    must finish within `request_timeout` seconds (0: no deadline)."""

    def __init__(self, app: ASGIApp, *, gate: AdmissionGate, request_timeout: float) -> None:
        self.app = app
        self.gate = gate
        self.request_timeout = request_timeout
        self._peak = 0  # most requests held at once since the last trim
        self._trim_after = TRIM_AFTER_IN_FLIGHT if MALLOC_TRIM is not None else sys.maxsize
        self._trim_pending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.gate.route_of(get_route_path(scope)) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if gate.in_flight >= gate.max_in_flight:
            await self._shed(scope, send, route)
            return
        in_flight = gate.in_flight = gate.in_flight + 1
        if in_flight > self._peak:
            self._peak = in_flight
        token = None
        if self.request_timeout:
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            token = INFERENCE_DEADLINE.set(deadline)
        try:
            await self.app(scope, receive, send)
        finally:
            gate.release()
            if token is not None:
                INFERENCE_DEADLINE.reset(token)
            if not gate.in_flight and self._peak >= self._trim_after and not self._trim_pending:
                self._trim_pending = True
                asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_when_idle)

    def _trim_when_idle(self) -> None:
        self._trim_pending = False
        if self.gate.in_flight or MALLOC_TRIM is None:
            return  # busy again: the next idle moment schedules it anew
        self._peak = 0
        started = time.perf_counter()
        MALLOC_TRIM(0)
        log.debug("heap trimmed in %.1f ms", (time.perf_counter() - started) * 1e3)

    async def _shed(self, scope: Scope, send: Send, route: str) -> None:
        # The connection stays open (the server drops the unread body). Closing it was tried:
        # shed clients then queued to reconnect ahead of new probes in the accept queue, and a
        # client still sending a large body got a reset instead of the answer.
        scope[ERROR_CODE_KEY] = OVERLOADED
        headers, body = self.gate.refusal(route)
        await send(
            {
                "type": "http.response.start",
                "status": OVERLOADED_STATUS,
                "headers": list(headers),
            }
        )
        await send({"type": "http.response.body", "body": body})
