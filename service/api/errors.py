"""Every error the HTTP layer answers, mapped to a status and a JSON body in one place.

Body shape: `{"error": {"code": "...", "message": "...", "field": "..." | null}}`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.runtime.errors import InvalidInput, ModelNotReady, VAEError

log = logging.getLogger("service.api")

REQUEST_ID_KEY = "vae.request_id"
# Carries the error code to the request observer (for metrics), which strips it from the answer.
ERROR_CODE_HEADER = "X-Error-Code"


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


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, field),
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), ERROR_CODE_HEADER: code},
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "<body>"


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _invalid_input(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return error_response(422, "invalid_value", exc.message, exc.field)


async def _not_ready(_: Request, exc: Exception) -> Response:
    return error_response(503, "not_ready", str(exc) or "the model is not loaded yet")


async def _vae_error(request: Request, exc: Exception) -> Response:
    # ModelLoadError and anything else from the runtime that is not the client's fault.
    log.error(
        "runtime error: %s",
        exc,
        extra={"request_id": request.scope.get(REQUEST_ID_KEY)},
        exc_info=exc,
    )
    return error_response(500, "internal_error", "internal server error")


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    return error_response(
        422, "invalid_value", str(first["msg"]), _loc_to_field(tuple(first["loc"]))
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)


async def _body_too_large(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLargeError)
    return error_response(413, "body_too_large", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(ModelNotReady, _not_ready)
    app.add_exception_handler(VAEError, _vae_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooLargeError, _body_too_large)
