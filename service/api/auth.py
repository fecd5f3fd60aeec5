"""Optional API key: `X-API-Key: <key>` or `Authorization: Bearer <key>`, compared in constant time.

Installed as a router dependency only when a key is configured, so OpenAPI declares the
security schemes exactly when they are enforced.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


def api_key_guard(expected: str) -> Callable[..., Awaitable[None]]:
    expected_bytes = expected.encode()

    async def require_api_key(
        api_key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        given = api_key if api_key is not None else (bearer.credentials if bearer else None)
        if given is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send X-API-Key or Authorization: Bearer",
                "X-API-Key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode(), expected_bytes):
            raise ApiError(
                401,
                "unauthorized",
                "invalid API key",
                "X-API-Key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key
