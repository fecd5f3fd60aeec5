"""Every error the HTTP layer answers, mapped to a status and a JSON body in one place.

Body shape: `{"error": {"code": "...", "message": "...", "field": "..." | null}}`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette._utils import get_route_path  # what the routes match on (service.api.routing)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.api.oip.codec import OIPError
from service.runtime.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotReady,
    Overloaded,
    VAEError,
)

log = logging.getLogger("service.api")

# ASGI scope keys: the request id, and the code of an error answer (for the metrics).
REQUEST_ID_KEY = "vae.request_id"
ERROR_CODE_KEY = "vae.error_code"


class ApiError(Exception):
    """A client (or availability) problem the API answers with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def invalid(field: str, message: str) -> ApiError:
    """422: a value is present but wrong."""
    return ApiError(422, "invalid_value", message, field)


class BodyTooLargeError(Exception):
    """Raised while streaming a request body that outgrows the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "field": field, **extra}})


# The Open Inference Protocol's routes answer errors in its own dialect, which tritonclient
# reads: `{"error": "<message>"}`, and 400 for every invalid request (Triton's mapping).
OIP_PREFIX = "/v2"


def is_oip_path(path: str) -> bool:
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def oip_error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def dialect_error(
    path: str, status: int, code: str, message: str, field: str | None
) -> tuple[int, bytes]:
    """The status and body of an error answer on `path`, in its protocol's dialect."""
    if is_oip_path(path):
        text = message if field is None or message.startswith(field) else f"{field}: {message}"
        return (400 if status == 422 else status), oip_error_body(text)
    return status, error_body(code, message, field)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The JSON error answer; its code is left in the request's scope for the metrics."""
    request.scope[ERROR_CODE_KEY] = code
    status, body = dialect_error(get_route_path(request.scope), status, code, message, field)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


# Admission control (`service.api.admission` and the runtime's bounds): one status, code and
# set of headers for each, whichever layer refuses the request.
OVERLOADED, TIMEOUT = "overloaded", "timeout"
OVERLOADED_STATUS, TIMEOUT_STATUS = 503, 504


def overloaded_headers(retry_after: int) -> dict[str, str]:
    """A 503 `overloaded` answer's headers: when to retry, in whole seconds (RFC 9110 10.2.3)."""
    return {"Retry-After": str(retry_after)}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _oip_error(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, "bad_request", str(exc))


async def _invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return error_response(request, 422, "invalid_value", exc.message, exc.field)


async def _not_ready(request: Request, exc: Exception) -> Response:
    return error_response(request, 503, "not_ready", str(exc) or "the model is not loaded yet")


async def _timed_out(request: Request, exc: Exception) -> Response:
    return error_response(request, TIMEOUT_STATUS, TIMEOUT, str(exc))


async def _vae_error(request: Request, exc: Exception) -> Response:
    # ModelLoadError and anything else from the runtime that is not the client's fault.
    log.error(
        "runtime error: %s",
        exc,
        extra={"request_id": request.scope.get(REQUEST_ID_KEY)},
        exc_info=exc,
    )
    return error_response(request, 500, "internal_error", "internal server error")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail), None, exc.headers)


def install_error_handlers(app: FastAPI, retry_after: int = 1) -> None:
    """One handler per exception. `BodyTooLargeError` has none here on purpose: it must reach
    `BodyLimit`, which answers 413 and closes the connection (the rest of the body is unread).
    Request validation errors cannot occur: no route declares parameters FastAPI validates.
    `retry_after`: the seconds a 503 `overloaded` answer asks the client to wait."""
    retry_headers = overloaded_headers(retry_after)

    async def overloaded(request: Request, exc: Exception) -> Response:
        return error_response(
            request, OVERLOADED_STATUS, OVERLOADED, str(exc), headers=retry_headers
        )

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(OIPError, _oip_error)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(ModelNotReady, _not_ready)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(DeadlineExceeded, _timed_out)
    app.add_exception_handler(VAEError, _vae_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
