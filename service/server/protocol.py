"""uvicorn's httptools protocol, plus the limits it lacks and a polite shutdown.

uvicorn 0.54 bounds neither the request head nor the time a client takes to send it:
httptools buffers an endless header (by repeated concatenation, so the CPU cost grows with the
square of its length), and a client trickling a byte a second holds its connection forever.
`LimitedHttpToolsProtocol` adds, per connection:

- a bound on the request line plus headers (bytes and count): over it, `431` and the
  connection is closed, as soon as the read that crosses it arrives;
- a header read timeout (from the connection's opening, or from a request's first byte) and a
  body read timeout (from the end of the headers): then `408` and the connection is closed;
- a cap on open connections per worker: one over it is closed as soon as it is accepted;
- early answers: the app's `EarlyAnswerHook` (service.server.early_answers) may answer a
  request from its head, with no ASGI cycle (admission control's refusals under a flood); the
  connection stays open, the request's body is read and dropped, and the connection's next
  request is held back until the app frees a slot or the answer's hold time has passed;
- a shutdown that answers what was already sent: answers during the drain say
  `Connection: close`, an idle keep-alive connection stays open briefly for a request already
  on its way, and at the grace deadline an unfinished request gets `503` instead of a
  cancellation traceback.

It subclasses uvicorn's `HttpToolsProtocol` and relies on its internals (`cycle`, `pipeline`,
`flow`, `headers`, the parser callbacks): uvicorn is pinned exactly by the lock
(requirements/dev.txt), and tests/e2e/test_http_limits.py holds this module to its behaviour,
so an upgrade that changes them fails there first.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import termios
import time
import weakref
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.server import direct_reads
from service.server.direct_reads import KernelSkip
from service.server.early_answers import (
    ADMITTED_KEY,
    EARLY_ANSWER_KEY,
    Admitted,
    EarlyAnswer,
    Resume,
    Withdraw,
)
from service.server.limits import DEFAULT_LIMITS, HttpLimits

log = logging.getLogger("service.server")

# Phases of a connection, each with its own deadline. IDLE has none of ours: uvicorn's
# keep-alive timer covers the wait between requests, and the app's deadline the processing.
_IDLE, _HEAD, _BODY = 0, 1, 2

# After an error answer the connection is closed once the client has read it, but for at most
# this long (or this many more bytes read and dropped): closing a socket with unread data makes
# the kernel send a reset, which can destroy the answer before the client reads it.
LINGER_S = 1.0
LINGER_MAX_BYTES = 1 << 20
# A held connection's socket is looked at after this share of its hold (Retry-After): a client
# that waited for Retry-After cannot have sent its next request yet.
LOOK_SHARE = 0.9
# A connection resumed by the app (a slot kept for it) that has begun no request after this
# long gives the slot back; its client honours Retry-After, or has stopped.
CLAIM_S = 0.25
# On shutdown an idle keep-alive connection stays open this long (at most the keep-alive
# timeout) in case a request is already on its way: the client has not been told to close.
DRAIN_IDLE_S = 1.0
# One warning per this many seconds when connections are refused over the cap, not one each.
_REFUSAL_LOG_INTERVAL_S = 10.0


class _HeadTooLargeError(Exception):
    """Raised in a parser callback to stop parsing a head over the limits."""


def error_answer(status: int, code: str, message: str, date: list[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 answer with the service's JSON error body, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
    head = [STATUS_LINE[status]]
    for name, value in date:
        head += [name, b": ", value, b"\r\n"]
    head.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % len(body)
    )
    return b"".join(head) + body


def keep_alive_answer(answer: EarlyAnswer, date: list[tuple[bytes, bytes]]) -> bytes:
    """An early answer as HTTP/1.1 bytes, the connection kept open (as uvicorn writes an
    answer: its default headers first)."""
    head = [STATUS_LINE[answer.status]]
    for name, value in (*date, *answer.headers):
        head += [name, b": ", value, b"\r\n"]
    head.append(b"\r\n")
    return b"".join(head) + answer.body


_NO_BYTES = bytes(4)


def _bytes_waiting(transport: asyncio.Transport) -> bool:
    """Whether the connection's socket holds bytes not read yet."""
    sock = transport.get_extra_info("socket")
    try:
        # The count as a C int, in whatever byte order: not zero when any byte is not.
        return fcntl.ioctl(sock.fileno(), termios.FIONREAD, _NO_BYTES) != _NO_BYTES
    except (OSError, AttributeError):  # not a socket the kernel can tell about
        return True


def _new_parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A request parser as uvicorn makes one for a new connection."""
    parser = httptools.HttpRequestParser(protocol)
    parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


class _DropCancelledTracebacks(logging.Filter):
    """uvicorn cancels the requests still running at the grace deadline and logs each one's
    `CancelledError` with a traceback at error level; it also logs the count in one line, so
    the tracebacks say nothing more."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


_cancel_filter = _DropCancelledTracebacks()
_last_refusal_log = -math.inf


_uvicorn_on_headers_complete = HttpToolsProtocol.on_headers_complete  # no super() per request


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the head, time and connection limits of `HttpLimits`.

    The common path costs two `loop.time()` reads and a few attribute writes per request: the
    one timer per connection is re-armed only when it fires early (a deadline that moved
    later), not on every phase change.
    """

    # Slots, not instance-dict entries: uvicorn's class already keeps 28 attributes in the
    # instance dict, and past 30 CPython 3.11 stops sharing the dict's keys, which makes every
    # attribute access of uvicorn's own per-request code slower (~3% of a trivial request).
    __slots__ = (
        "_answered_at",
        "_deadline",
        "_discarded",
        "_drain_timers",
        "_draining",
        "_early",
        "_early_answer",
        "_early_retry_at",
        "_head_bytes",
        "_held_out",
        "_hold_ends",
        "_hold_timer",
        "_phase",
        "_skip",
        "_skipper",
        "_time",
        "_timer",
        "_timer_at",
        "_withdraw",
        "limits",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.timeout_keep_alive = limits.keep_alive_timeout  # type: ignore[assignment]
        self._phase = _IDLE
        self._deadline = 0.0
        self._time = self.loop.time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when the timer fires; inf: no timer
        self._head_bytes = 0  # bytes read since the current head began (approximate)
        self._discarded = -1  # >= 0: answered with an error, reading and dropping until closed
        self._draining = False
        self._drain_timers: list[asyncio.TimerHandle] = []
        self._early_answer = app_state.get(EARLY_ANSWER_KEY)
        self._early: EarlyAnswer | None = None  # the request being read was answered early
        self._answered_at = 0.0  # when (loop time); the holds count from then
        self._hold_ends = 0.0  # the hold's end for a client that waits (loop time)
        self._early_retry_at = 0.0  # its end for one that does not
        self._skip = -1  # its body bytes not read yet (-1: not known)
        self._skipper: KernelSkip | None = None  # dropping them in the kernel
        # Set while the next request is held back, or, once the app resumed the connection,
        # while the slot the app keeps for it waits for that request.
        self._hold_timer: asyncio.TimerHandle | None = None
        self._held_out = False  # the next request was held until its hold ran out
        self._withdraw: Withdraw | None = None  # tells the app this connection stopped waiting

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            global _last_refusal_log
            now = time.monotonic()
            if now - _last_refusal_log > _REFUSAL_LOG_INTERVAL_S:
                _last_refusal_log = now
                log.warning(
                    "connection limit reached: new connections are closed",
                    extra={"max_connections": self.limits.max_connections},
                )
            transport.close()
            return
        self._arm(_HEAD, self.limits.header_timeout)  # one that never sends anything

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._skipper is not None:
            self._skipper.stop()
            self._skipper = None
        self._end_hold()
        for timer in self._drain_timers:
            timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarded >= 0:
            self._discarded += len(data)
            if self._discarded > LINGER_MAX_BYTES:
                self.transport.close()
            return
        phase = self._phase
        if phase != _BODY:  # these bytes begin or continue a request head
            if phase == _IDLE:
                self._phase = _HEAD
                deadline = self._deadline = self._time() + self.limits.header_timeout
                if deadline < self._timer_at:
                    self._set_timer(deadline)
                self._head_bytes = len(data)
            else:
                self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        # As uvicorn's data_received, plus the head limits.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLargeError):
                self._refuse_head()
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # A head still incomplete after this read: its bytes so far are exact enough (at most
        # one read beyond the limit is ever parsed, so memory and CPU stay bounded).
        if self._phase == _HEAD and self._head_bytes > self.limits.max_header_bytes:
            self._refuse_head()
        elif self._early is not None and self._skip >= direct_reads.MIN_SKIP_BYTES:
            self._skip_body()

    def handle_websocket_upgrade(self) -> None:
        # The connection is the WebSocket protocol's from now on: no deadline of ours.
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().handle_websocket_upgrade()

    # Parser callbacks

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise _HeadTooLargeError
        # The read that completed the head may also have carried body bytes; count exactly
        # only then (rare: a head near the limit or a large first read).
        if self._head_bytes > limits.max_header_bytes:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limits.max_header_bytes:
                raise _HeadTooLargeError
        self._phase = _BODY
        deadline = self._deadline = self._time() + limits.body_timeout
        if deadline < self._timer_at:
            self._set_timer(deadline)
        early = self._early_answer
        held_out = self._held_out
        self._held_out = False
        if self._withdraw is not None:
            # The request a resumed connection was kept a slot for; or one that followed a
            # refused request in the same read: the hold has nothing left to hold back, and
            # this request's body must be read (uvicorn pauses again below if a request is
            # still in progress).
            self._end_hold(arrived=True)
            self.flow.resume_reading()
        # Not with uvicorn's own concurrency limit: it may swap the app for its 503 after the
        # hook admitted the request, and the app would never give the slot back.
        if early is not None and not self._draining and self.limit_concurrency is None:
            cycle = self.cycle
            parser = self.parser
            if (
                (cycle is None or cycle.response_complete)
                and parser.should_keep_alive()
                and parser.get_http_version() == "1.1"
                and not parser.should_upgrade()
            ):
                answer = early(parser.get_method(), self.url, self.headers, held_out)
                if isinstance(answer, Admitted):
                    self.scope[ADMITTED_KEY] = answer  # type: ignore[literal-required]
                elif answer is not None:
                    self._early = answer
                    self._answered_at = self._time()
                    self._skip = answer.body_bytes
                    default_headers = self.server_state.default_headers
                    self.transport.write(keep_alive_answer(answer, default_headers))
                    return
        _uvicorn_on_headers_complete(self)
        if self._draining:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        # uvicorn's on_body, inlined (as on_message_complete), plus dropping a refused body.
        if self._early is not None:
            self._skip -= len(body)
            return
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        answer = self._early
        if answer is not None:
            self._early = None
            self.server_state.total_requests += 1
            if self._draining:
                self.transport.close()
            elif not self.transport.is_closing():
                if answer.hold_s > 0 and answer.wait is not None:
                    self._hold(answer.hold_s, answer.early_retry_hold_s, answer.wait)
                else:
                    self._await_next_request()
            return
        # uvicorn's on_message_complete, inlined: these callbacks run once per request, and a
        # call to the base method costs more than the rest of this class's work on the path.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    # Early answers

    def _skip_body(self) -> None:
        """Drop the rest of an early-answered body in the kernel, not through the parser."""
        skipper = KernelSkip.start(self.loop, self.transport, self._skip, self._body_skipped)
        if skipper is not None:
            self._skipper = skipper
            self.flow.pause_reading()

    def _body_skipped(self, complete: bool) -> None:
        self._skipper = None
        if not complete:  # the client closed or reset the connection
            self.transport.close()
            return
        # The parser never saw the body's end: a fresh one starts at the next request.
        self.parser = _new_parser(self)
        self.on_message_complete()
        if self._hold_timer is None and not self.transport.is_closing():
            self.flow.resume_reading()  # else held, or already resumed by the app

    def _hold(
        self, seconds: float, early_retry_s: float, wait: Callable[[Resume], Withdraw]
    ) -> None:
        """Read nothing more until the app resumes this connection or `seconds` have passed
        since the answer; `early_retry_s` if the next request came before that."""
        self._end_hold()
        self.flow.pause_reading()
        answered = self._answered_at
        self._early_retry_at = answered + early_retry_s
        self._hold_timer = self.loop.call_at(answered + seconds * LOOK_SHARE, self._hold_ran_out)
        self._hold_ends = answered + seconds
        # A weak reference: the app must not keep a closed connection's buffers alive. The app
        # may resume the connection at once, inside `wait`.
        resume = weakref.WeakMethod(self._resumed)
        self._withdraw = wait(lambda: (method := resume()) is not None and method())

    def _hold_ran_out(self) -> None:
        self._hold_timer = None
        now = self._time()
        # Looked at too late (a slow refused body, a busy loop), waiting bytes may have been
        # sent after Retry-After: the request is then taken as a new one.
        if now < self._hold_ends and (self._phase == _HEAD or _bytes_waiting(self.transport)):
            # Sent before Retry-After had passed: its client did not wait, and waits longer.
            self._hold_timer = self.loop.call_later(
                self._early_retry_at - now, self._early_retry_ran_out
            )
        else:
            self._read_held()  # a request that comes now is a new one

    def _early_retry_ran_out(self) -> None:
        self._hold_timer = None
        self._held_out = True  # before the read: its head may be decided within it
        if not self._read_held():
            self._held_out = False

    def _resumed(self) -> bool:
        """The app resumes this connection and keeps a slot for its next request (True), until
        it arrives or the client turns out to have sent nothing."""
        timer = self._hold_timer
        if timer is None or self.transport.is_closing():
            return False
        timer.cancel()
        self._hold_timer = self.loop.call_later(CLAIM_S, self._claim_ran_out)
        self.flow.resume_reading()
        self._await_next_request()
        return True

    def _claim_ran_out(self) -> None:
        # A head begun (read into the parser) or bytes still in the socket: the request is
        # on its way, and the loop busy.
        if self._phase == _HEAD or _bytes_waiting(self.transport):
            self._hold_timer = self.loop.call_later(CLAIM_S, self._claim_ran_out)
        else:  # nothing sent (a client that honours Retry-After): the slot goes to another
            self._end_hold()

    def _read_held(self) -> bool:
        """Read the held request now (the hold ran out, or the server is shutting down)."""
        if self._withdraw is None or self.transport.is_closing():
            return False
        self._end_hold()
        self._await_next_request()
        self._read_head_first()
        return True

    def _read_head_first(self) -> None:
        """Resume reading, with what has already come (up to a head and a small body) read at
        once: a request held until its hold ran out is refused, and is then decided before
        libuv reads 256 KB of its body."""
        data = direct_reads.read_now(self.transport, direct_reads.HEAD_READ_BYTES)
        flow = self.flow
        if data:
            flow.read_paused = False  # the transport stays paused unless nothing pauses it
            self.data_received(data)  # the usual path, as if the transport had read it
            if flow.read_paused or self.transport.is_closing():
                return
        flow.read_paused = True  # so that resume_reading resumes the transport
        flow.resume_reading()

    def _end_hold(self, *, arrived: bool = False) -> None:
        """Forget the hold: its timer, and its place among the app's waiting connections or
        the slot the app keeps for it (taken when its next request has `arrived`)."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._withdraw is not None:
            withdraw, self._withdraw = self._withdraw, None
            withdraw(arrived)

    def _await_next_request(self) -> None:
        # As uvicorn's on_response_complete: arm the keep-alive timeout.
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    # Deadlines

    def _arm(self, phase: int, seconds: float) -> None:
        self._phase = phase
        deadline = self._deadline = self._time() + seconds
        if deadline < self._timer_at:
            self._set_timer(deadline)

    def _set_timer(self, when: float) -> None:
        """(Re)arm the connection's one timer; a deadline that moves later re-arms it only
        when it fires, so the common path never touches the loop's timer heap."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self._phase == _IDLE or self._discarded >= 0 or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused and self._skipper is None:
            # The server holds off reading (the app has not taken the body yet, or a request is
            # pipelined behind one in progress): not the client's delay.
            self._deadline = max(self._deadline, now + self.limits.body_timeout)
        if now < self._deadline:
            self._set_timer(self._deadline)
        elif self._phase == _HEAD:
            if self._head_bytes:
                self._answer_and_close(
                    408, "header_timeout", "the request head did not arrive in time"
                )
            else:  # never sent a byte: nothing to answer
                self.transport.close()
        else:
            self._answer_and_close(408, "body_timeout", "the request body did not arrive in time")

    # Error answers

    def _refuse_head(self) -> None:
        limits = self.limits
        self._answer_and_close(
            431,
            "headers_too_large",
            f"the request line and headers exceed {limits.max_header_bytes} bytes "
            f"or {limits.max_headers} fields",
        )

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        self._answer(status, code, message)
        self._close_after_answer()

    def _answer(self, status: int, code: str, message: str, *, take_over: bool = False) -> None:
        """Answer `status` unless another answer of this connection is under way (the bytes
        would interleave). `take_over`: answer in place of the request in progress if its
        response has not started."""
        self._phase = _IDLE
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            answer = True
        elif cycle.response_started or not (take_over or cycle.more_body):
            answer = False
        else:
            # The request whose body is late (or, at the grace deadline, unfinished): its app
            # task may still call send(); a disconnected cycle drops that, and its receive()
            # returns http.disconnect.
            answer = True
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(
                error_answer(status, code, message, self.server_state.default_headers)
            )

    def _close_after_answer(self) -> None:
        if self.transport.is_closing():
            return
        self._discarded = 0
        if self._timer is not None:
            self._timer.cancel()
        if self._skipper is not None:
            self._skipper.stop()
            self._skipper = None
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client sees the end of our answer now
        self.flow.resume_reading()
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)

    # Shutdown

    def shutdown(self) -> None:
        """Called by uvicorn's server for each connection when it starts its graceful drain
        (the listening sockets are already closed)."""
        self._draining = True
        logging.getLogger("uvicorn.error").addFilter(_cancel_filter)  # idempotent
        self._read_held()  # a held request is read now, to be answered before the close
        grace = self.config.timeout_graceful_shutdown
        if grace is not None:
            # uvicorn's own deadline is 0.1 s after this one (it sleeps before it starts
            # counting); answering first leaves it nothing to cancel but the app's tasks.
            self._drain_timers.append(self.loop.call_later(grace, self._drain_deadline))
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The last request read on this connection is answered with Connection: close
            # (uvicorn adds the header when keep_alive is off before the response starts).
            last = self.pipeline[0][0] if self.pipeline else cycle
            last.keep_alive = False
        elif not self._request_arriving():
            linger = min(DRAIN_IDLE_S, self.limits.keep_alive_timeout)
            self._drain_timers.append(self.loop.call_later(linger, self._close_if_idle))
        # else a request head or body is arriving: its answer will say Connection: close.

    def _request_arriving(self) -> bool:
        return self._phase == _BODY or (self._phase == _HEAD and self._head_bytes > 0)

    def _close_if_idle(self) -> None:
        cycle = self.cycle
        idle = (cycle is None or cycle.response_complete) and not self._request_arriving()
        if idle and self._discarded < 0 and not self.transport.is_closing():
            self.transport.close()

    def _drain_deadline(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if self._early is not None:  # answered already; its body is late
            transport.close()
            return
        cycle = self.cycle
        unfinished = cycle is not None and not cycle.response_complete
        if self._discarded < 0 and (unfinished or self._request_arriving()):
            log.warning(
                "request unfinished at the shutdown deadline: answered 503 and closed",
                extra={"path": cycle.scope.get("path") if unfinished else None},
            )
            self._answer(503, "shutting_down", "the server is shutting down", take_over=True)
        # Closed now, not after a linger: uvicorn's own deadline follows in 0.1 s, and an open
        # connection then would be reported as a timeout even with no task left to cancel.
        transport.close()
