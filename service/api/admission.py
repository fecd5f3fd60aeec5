"""Admission control for the model routes (pure ASGI, from the request's headers alone).

- A bound on the requests one worker holds at once, and on the bytes of their declared
  bodies: one more is answered 503 `overloaded` with `Retry-After` straight away, before its
  body is read or parsed, so a refusal costs no parsing and no inference (the server's own
  request cycle remains). The bytes bound keeps a flood of large bodies from queueing
  seconds of parsing behind the bound on requests (admitted latency is what is in progress
  divided by the rate it is served at).
- A deadline for each admitted request's inference (`INFERENCE_DEADLINE`, read by the
  runtime where inference is awaited): past it, 504 `timeout` and no compute.

The bound itself lives in `AdmissionGate`, shared by the middleware and the server: the
server asks the gate (`AdmissionGate.early_answer`, its `EarlyAnswerHook`) while it reads a
request's head; a refusal then costs no request cycle at all, and an admission takes its slot
at once (the middleware's check runs only when the request's task starts, after other heads
read in the same loop iteration). The middleware still admits or refuses whatever the server
leaves to it (a request pipelined behind one in progress, a CORS request, a body of
undeclared length or over the limit, an unusual spelling of the path), with the same answer
where the app would give one.

The runtime's own bound (rows queued per graph, `MicroBatcher`) raises `Overloaded`, answered
with the same status, code and `Retry-After` by `service.api.errors`. Probes, `/metrics`,
`/model` and the docs never pass through here: they stay fast while the model routes shed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import itertools
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
from service.server.early_answers import (
    ADMITTED_KEY,
    Admitted,
    EarlyAnswer,
    Resume,
    Withdraw,
)

log = logging.getLogger("service.api")

SHED_MESSAGE = "too many requests in progress; retry later"
# After a burst (this many requests held at once) the worker hands its freed heap back to the
# system once no model request has been in progress for TRIM_DELAY_S: glibc keeps freed
# memory in its arenas, so after a flood of large bodies a worker would otherwise stay at its
# peak for good (the README's overload section has the figures). The trim blocks the loop
# once per burst, so a short pause between bursts does not trim.
TRIM_AFTER_IN_FLIGHT = 64
TRIM_DELAY_S = 1.0
# Held connections looked at, newest first, for one to resume (bounds the work per release).
_WAKE_SCAN = 16


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
    """One worker's bound: `max_in_flight` requests to `routes` at once, with at most
    `max_body_bytes_in_flight` bytes of declared bodies among them (0: no bound; a request
    always fits when no body is in progress).

    `early_answer` is the server's `EarlyAnswerHook`: the admission of a request within the
    bound (its slot taken at once), the refusal of one over it (counted and logged as the
    middleware would), or None for every request it leaves to the app (not a POST to one of
    `routes` as spelled there, a body over `max_body_bytes` or of undeclared length, a CORS
    request).
    """

    def __init__(
        self,
        *,
        routes: Iterable[str],
        max_in_flight: int,
        max_body_bytes_in_flight: int,
        max_body_bytes: int,
        retry_after: int,
        early_retry_hold: float,
        metrics: Metrics,
        access_log: bool,
        cors: bool,
    ) -> None:
        self.max_in_flight = max_in_flight or sys.maxsize
        self.max_body_bytes_in_flight = max_body_bytes_in_flight or sys.maxsize
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.body_bytes_in_flight = 0
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
        # Connections refused early whose next request the server holds back: room freed
        # resumes the newest still within its wake window whose body would fit (a held request
        # is read when it can be admitted, and the newest has waited least: under overload,
        # serving newest first keeps latency low).
        self._waiting: OrderedDict[int, _Waiter] = OrderedDict()
        # Slots kept for resumed connections until their next request arrives: otherwise
        # whichever request is read first takes the slot, the resumed one is refused again,
        # and every refusal of a large body costs reading that body.
        self.reserved = 0
        self.reserved_bytes = 0
        self._next_key = 0
        # A held connection is read once its client's Retry-After has passed (a request that
        # comes later is a new one); one whose next request came before that (its client did
        # not wait) is held until `early_retry_hold`, so such a client costs one refusal per
        # that period.
        self._hold_s = float(retry_after)
        self._early_retry_hold_s = max(float(retry_after), early_retry_hold)
        # A held request is resumed only within the first half of Retry-After: one resumed
        # later would be admitted after waiting about as long as the client was told to wait,
        # so its latency would be the hold's, not the server's. One held until its hold ran
        # out is refused, as its client was told to expect (its retry is a new request).
        self._wake_within_s = retry_after / 2
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

    @property
    def full(self) -> bool:
        """Whether no request slot is free (slots kept for resumed connections count as
        taken)."""
        return self.in_flight + self.reserved >= self.max_in_flight

    def fits(self, body_bytes: int) -> bool:
        """Whether a request with a body of `body_bytes` would be admitted now."""
        in_progress = self.body_bytes_in_flight + self.reserved_bytes
        return not self.full and (
            not in_progress or in_progress + body_bytes <= self.max_body_bytes_in_flight
        )

    def take(self, body_bytes: int) -> None:
        """Admit a request: its slot and its body's bytes are taken until `release`."""
        self.in_flight += 1
        self.body_bytes_in_flight += body_bytes

    def early_answer(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], held_out: bool
    ) -> EarlyAnswer | Admitted | None:
        if method != b"POST":
            return None
        started = time.perf_counter()
        raw_path = target.partition(b"?")[0]
        route = self._raw_exact.get(raw_path)
        if route is None and self._templates and b"%" not in raw_path:
            route = self.route_of(raw_path.decode("latin-1"))
        if route is None:
            return None
        body_bytes = self._answerable_body(headers)
        if body_bytes is None:
            return None
        # A request held until its hold ran out is refused: admitted, it would carry the whole
        # hold in its latency. Its client retries at once, as a new request.
        if not held_out and self.fits(body_bytes):
            self.take(body_bytes)
            return Admitted(body_bytes)
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
            early_retry_hold_s=self._early_retry_hold_s,
            body_bytes=body_bytes,
            # Counted from now: the client sends its next request once it has this answer,
            # and the refused body may take a while to be read.
            wait=functools.partial(self._wait, body_bytes, time.monotonic() + self._wake_within_s),
        )

    def _answerable_body(self, headers: list[tuple[bytes, bytes]]) -> int | None:
        """The declared body length when the app would admit or refuse this request as this
        gate does: not a CORS request (its answer needs the CORS headers), and a body of
        declared length within the limit (otherwise the app answers 413, or counts the body
        as it streams); else None."""
        if self.cors and any(name == b"origin" for name, _ in headers):
            return None
        declared, encoded = declared_body(headers)
        if encoded or declared is None or not 0 <= declared <= self.max_body_bytes:
            return None
        return declared

    def _wait(self, body_bytes: int, wake_by: float, resume: Resume) -> Withdraw:
        """Hold a refused connection; its next request is taken to be as large as the refused
        one (`body_bytes`), and it is resumed only before `wake_by` (`time.monotonic()`)."""
        key = self._next_key
        self._next_key += 1
        waiter = _Waiter(resume, body_bytes, wake_by)
        self._waiting[key] = waiter
        # Room may have freed while the refused request's body was still arriving: nothing
        # else would wake this connection then.
        self._wake()

        def withdraw(arrived: bool) -> None:
            if not waiter.claimed:
                self._waiting.pop(key, None)
                return
            waiter.claimed = False
            self.reserved -= 1
            self.reserved_bytes -= waiter.body_bytes
            if not arrived:  # the kept room was not taken: the next connection gets it
                self._wake()

        return withdraw

    def release(self, body_bytes: int) -> None:
        """An admitted request has finished: its room goes to the newest held connection."""
        self.in_flight -= 1
        self.body_bytes_in_flight -= body_bytes
        self._wake()

    def _wake(self) -> bool:
        """Resume the newest held connection still open and within its wake window if its next
        request fits, keeping room for that request; False when none was resumed."""
        waiting = self._waiting
        while True:
            now = time.monotonic()
            # The newest within its window, among the newest few: a slow refused body can put
            # an entry past its window above ones still within theirs. Those past it stay
            # listed until their own hold runs out.
            found = next(
                (
                    (key, waiter)
                    for key, waiter in itertools.islice(reversed(waiting.items()), _WAKE_SCAN)
                    if waiter.wake_by >= now
                ),
                None,
            )
            if found is None:
                return False
            key, waiter = found
            if not self.fits(waiter.body_bytes):
                return False
            del waiting[key]
            if waiter.resume():
                waiter.claimed = True
                self.reserved += 1
                self.reserved_bytes += waiter.body_bytes
                return True


class _Waiter:
    """A held connection: how to resume it, the body size it is expected to send, and
    whether room is kept for it."""

    __slots__ = ("body_bytes", "claimed", "resume", "wake_by")

    def __init__(self, resume: Resume, body_bytes: int, wake_by: float) -> None:
        self.resume = resume
        self.body_bytes = body_bytes
        self.wake_by = wake_by  # resumed only before this (time.monotonic())
        self.claimed = False


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
        gate = self.gate
        admitted: Admitted | None = scope.get(ADMITTED_KEY)  # by the server, from the head
        if admitted is not None:
            body_bytes = admitted.body_bytes
        else:
            route = gate.route_of(get_route_path(scope)) if scope["type"] == "http" else None
            if route is None:
                await self.app(scope, receive, send)
                return
            # An undeclared or untrusted length counts as none: BodyLimit bounds it.
            body_bytes = max(declared_body(scope["headers"])[0] or 0, 0)
            if not gate.fits(body_bytes):
                await self._shed(scope, send, route)
                return
            gate.take(body_bytes)
        in_flight = gate.in_flight
        if in_flight > self._peak:
            self._peak = in_flight
        token = None
        if self.request_timeout:
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            token = INFERENCE_DEADLINE.set(deadline)
        try:
            await self.app(scope, receive, send)
        finally:
            gate.release(body_bytes)
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
