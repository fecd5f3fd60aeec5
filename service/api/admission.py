"""Admission control for the model routes (pure ASGI, from the request's headers alone).

- A bound on the requests one worker holds at once: one more is answered 503 `overloaded`
  with `Retry-After` straight away, before its body is read or parsed, so a refusal costs no
  parsing and no inference (the server's own request cycle remains).
- A deadline for each admitted request's inference (`INFERENCE_DEADLINE`, read by the
  runtime where inference is awaited): past it, 504 `timeout` and no compute.

The runtime's own bound (rows queued per graph, `MicroBatcher`) raises `Overloaded`, answered
with the same status, code and `Retry-After` by `service.api.errors`. Probes, `/metrics`,
`/model` and the docs never pass through here: they stay fast while the model routes shed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable

from starlette._utils import get_route_path  # what the routes match on (see service.api.routing)
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import (
    ERROR_CODE_KEY,
    OVERLOADED,
    OVERLOADED_STATUS,
    error_body,
    overloaded_headers,
)
from service.runtime.batching import INFERENCE_DEADLINE

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


class Admission:
    """`max_in_flight` (0: no bound) requests to `paths` at once per worker; each admitted
    one's inference must finish within `request_timeout` seconds (0: no deadline)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: frozenset[str],
        max_in_flight: int,
        request_timeout: float,
        retry_after: int,
    ) -> None:
        self.app = app
        self.paths = paths
        self.max_in_flight = max_in_flight or sys.maxsize
        self.request_timeout = request_timeout
        self.in_flight = 0
        self._peak = 0  # most requests held at once since the last trim
        self._trim_after = TRIM_AFTER_IN_FLIGHT if MALLOC_TRIM is not None else sys.maxsize
        self._trim_pending = False
        # Every refusal is the same answer: its bytes are made once.
        body = error_body(OVERLOADED, SHED_MESSAGE, None)
        self._shed_body = body
        self._shed_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in overloaded_headers(retry_after).items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or get_route_path(scope) not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._shed(scope, send)
            return
        in_flight = self.in_flight = self.in_flight + 1
        if in_flight > self._peak:
            self._peak = in_flight
        token = None
        if self.request_timeout:
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            token = INFERENCE_DEADLINE.set(deadline)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if token is not None:
                INFERENCE_DEADLINE.reset(token)
            if not self.in_flight and self._peak >= self._trim_after and not self._trim_pending:
                self._trim_pending = True
                asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_when_idle)

    def _trim_when_idle(self) -> None:
        self._trim_pending = False
        if self.in_flight or MALLOC_TRIM is None:
            return  # busy again: the next idle moment schedules it anew
        self._peak = 0
        started = time.perf_counter()
        MALLOC_TRIM(0)
        log.debug("heap trimmed in %.1f ms", (time.perf_counter() - started) * 1e3)

    async def _shed(self, scope: Scope, send: Send) -> None:
        # The connection stays open (the server drops the unread body). Closing it was tried:
        # shed clients then queued to reconnect ahead of new probes in the accept queue, and a
        # client still sending a large body got a reset instead of the answer.
        scope[ERROR_CODE_KEY] = OVERLOADED
        await send(
            {
                "type": "http.response.start",
                "status": OVERLOADED_STATUS,
                "headers": list(self._shed_headers),
            }
        )
        await send({"type": "http.response.body", "body": self._shed_body})
