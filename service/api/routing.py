"""A route class whose non-matching requests cost one string comparison.

FastAPI tries the app's routes in order, and every miss costs a regex match plus FastAPI's
per-candidate bookkeeping: a request for the sixth route pays that five times. Routes
without path parameters can refuse other paths by comparing strings first.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette._utils import get_route_path  # what Starlette's and FastAPI's matching use
from starlette.routing import Match
from starlette.types import Scope


class PlainPathRoute(APIRoute):
    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self._plain_path = None if "{" in path else path

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            self._plain_path is not None
            and scope["type"] == "http"
            and get_route_path(scope) != self._plain_path
        ):
            return Match.NONE, {}
        return super().matches(scope)
