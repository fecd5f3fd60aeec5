"""The app's model services as the routes see them: loaded and warm, or not (yet).

`app.state.services` holds every served model by name, `app.state.service` the default one
(the plain routes'); a route under `/models/{model}/...` names its model in the path."""

from __future__ import annotations

from starlette.requests import Request

from service.api.contract import MODEL_PARAM
from service.api.echo import quoted
from service.api.errors import ApiError
from service.runtime.errors import ModelNotReady
from service.runtime.service import VAEService


def ready_service(request: Request) -> VAEService | None:
    service: VAEService | None = getattr(request.app.state, "service", None)
    return service if service is not None and service.ready else None


def served(request: Request) -> dict[str, VAEService]:
    services: dict[str, VAEService] = getattr(request.app.state, "services", None) or {}
    return services


def require_service(request: Request) -> VAEService:
    """The service the request names (or the default), or ModelNotReady (answered 503) while
    it loads or shuts down; an unknown model name is a 404."""
    name = request.path_params.get(MODEL_PARAM)
    if name is None:
        service = ready_service(request)
    else:
        services = served(request)
        if services and name not in services:
            raise ApiError(
                404, "not_found", f"unknown model {quoted(name)}; served: {sorted(services)}", None
            )
        service = services.get(name)
        service = service if service is not None and service.ready else None
    if service is None:
        raise ModelNotReady("the model is still loading; retry when /readyz answers 200")
    return service
