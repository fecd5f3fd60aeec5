"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request).

- `RequestObserver`: request id, one structured log line and metrics per request, and a JSON
  500 for anything unexpected (logged with the request id, nothing leaked to the client).
- `BodyLimit`: 413 from Content-Length up front, or while counting chunks of a body whose
  length is not declared (chunked, or HTTP/2).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette._utils import get_route_path  # what the routes match on (service.api.routing)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import (
    ERROR_CODE_KEY,
    REQUEST_ID_KEY,
    BodyTooLargeError,
    dialect_error,
    error_body,
    is_oip_path,
)
from service.api.metrics import Metrics

access_log = logging.getLogger("service.access")
error_log = logging.getLogger("service.api")

_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's `X-Request-ID` when it is a plain token, else a new random id."""
    for name, value in headers:
        if name == b"x-request-id" and _REQUEST_ID_OK.match(value):
            return value.decode()
    return os.urandom(16).hex()  # as unique as uuid4().hex, and cheaper


def log_access(
    method: str, path: str, route: str, status: int, request_id: str, seconds: float
) -> None:
    """The one access log line of a request."""
    access_log.info(
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
        },
    )


# Versions whose bodies are exactly Content-Length bytes unless chunked (RFC 9112 6.3); an
# HTTP/2 body may stream with no length declared, so it is always counted.
_LENGTH_FRAMED = frozenset({"1.0", "1.1"})
# nginx's status for "the client closed the connection before the answer": metrics only.
CLIENT_CLOSED_REQUEST = 499


def _relative_locations(headers: Any) -> list[tuple[bytes, bytes]]:
    """Redirects point at a path on this server: Starlette builds an absolute URL from the
    client's Host header, which would reflect whatever host a client claims."""
    out = []
    for name, value in headers:
        if name == b"location":
            parts = urlsplit(value)
            value = parts.path + (b"?" + parts.query if parts.query else b"")
        out.append((name, value))
    return out


async def _send_error(send: Send, status: int, body: bytes, request_id: str | None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestObserver:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        access_log_enabled: bool = True,
        route_paths: frozenset[str] = frozenset(),
        route_of: Callable[[str], str | None] = lambda _: None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled
        # Labels answers given before routing (a 413 from Content-Length, a 503 from
        # admission) with their route: an exact path, or `route_of`'s template for a path
        # with parameters; any other unrouted path is "unmatched", so label values stay few.
        self.route_paths = route_paths
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        scope[REQUEST_ID_KEY] = request_id
        state: dict[str, Any] = {"status": 500, "started": False, "error_code": None}
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                status = state["status"] = message["status"]
                headers = message.get("headers", ())
                if 300 <= status < 400:
                    headers = _relative_locations(headers)
                message = {**message, "headers": [rid_header, *headers]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # Gone before its body arrived: nobody to answer, nothing to log as an error.
            state["status"] = CLIENT_CLOSED_REQUEST
            state["error_code"] = "client_disconnected"
        except Exception:
            error_log.exception(
                "unhandled error", extra={"request_id": request_id, "path": scope.get("path")}
            )
            state["status"] = 500
            state["error_code"] = "internal_error"
            if not state["started"]:
                if is_oip_path(get_route_path(scope)):
                    body = dialect_error(
                        get_route_path(scope), 500, "", "internal server error", None
                    )[1]
                else:
                    body = error_body(
                        "internal_error", "internal server error", None, request_id=request_id
                    )
                await _send_error(send, 500, body, request_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or (
                scope["path"]
                if scope["path"] in self.route_paths
                else self.route_of(scope["path"]) or "unmatched"
            )
            status = state["status"]
            method = scope["method"]
            self.metrics.observe_request(route, method, status, seconds)
            if status >= 400:
                code = state["error_code"] or scope.get(ERROR_CODE_KEY) or str(status)
                self.metrics.observe_error(route, code)
            if self.access_log_enabled:
                log_access(method, scope["path"], route, status, request_id, seconds)


def declared_body(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The body's declared Content-Length (None: none; -1: not trusted, a second length or
    anything but digits) and whether a Transfer-Encoding is given."""
    declared: int | None = None
    encoded = False
    for name, value in headers:
        if name == b"content-length":
            declared = int(value) if declared is None and value.isdigit() else -1
        elif name == b"transfer-encoding":
            encoded = True
    return declared, encoded


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, encoded = declared_body(scope["headers"])
        framed = scope.get("http_version") in _LENGTH_FRAMED and not encoded
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send)
            return
        if framed and declared != -1:
            # The server reads exactly the declared length (none without one): nothing to count.
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLargeError(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        scope[ERROR_CODE_KEY] = "body_too_large"
        _, body = dialect_error(
            get_route_path(scope), 413, "body_too_large", str(BodyTooLargeError(self.limit)), None
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
