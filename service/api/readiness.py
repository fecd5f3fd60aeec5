"""The app's model service as the routes see it: loaded and warm, or not (yet)."""

from __future__ import annotations

from starlette.requests import Request

from service.runtime.errors import ModelNotReady
from service.runtime.service import VAEService


def ready_service(request: Request) -> VAEService | None:
    service: VAEService | None = getattr(request.app.state, "service", None)
    return service if service is not None and service.ready else None


def require_service(request: Request) -> VAEService:
    """The service, or ModelNotReady (answered 503) while it loads or shuts down."""
    service = ready_service(request)
    if service is None:
        raise ModelNotReady("the model is still loading; retry when /readyz answers 200")
    return service
