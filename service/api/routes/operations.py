"""/healthz, /readyz, /metrics (never behind the API key) and /model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.params import Depends
from starlette.responses import PlainTextResponse, Response

from service.api.codecs.json import dumps
from service.api.metrics import Metrics
from service.api.readiness import ready_service, require_service, served
from service.config import Settings
from service.runtime.errors import ModelNotReady

_OK = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'


async def healthz() -> Response:
    return Response(_OK, media_type="application/json")


async def readyz(request: Request) -> Response:
    if ready_service(request) is None:
        raise ModelNotReady("the model is still loading")
    return Response(_READY, media_type="application/json")


def add_health_routes(router: APIRouter, metrics: Metrics) -> None:
    """Registered on the app's own router: see `service.app` for why not `include_router`."""
    router.get("/healthz", tags=["operations"], summary="Liveness: the process answers")(healthz)
    router.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: 200 once the model is loaded and warm, 503 before",
        responses={503: {"description": "Still loading (or shutting down)."}},
    )(readyz)

    @router.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (all workers)",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


def add_probe_head_routes(router: APIRouter) -> None:
    """HEAD /healthz and /readyz, which load balancers and uptime checks often probe with.
    Registered after every other route: they are rare, and each route tried before the one
    a request wants costs it a comparison."""
    router.head("/healthz", include_in_schema=False)(healthz)
    router.head("/readyz", include_in_schema=False)(readyz)


def add_model_routes(
    router: APIRouter, settings: Settings, dependencies: Sequence[Depends]
) -> None:
    @router.get(
        "/model",
        tags=["model"],
        dependencies=dependencies,
        summary="The default model (manifest, providers, limits) and every model served",
    )
    async def model_info(request: Request) -> Response:
        service = require_service(request)
        payload: dict[str, Any] = {
            "served": [
                {
                    "name": name,
                    "version": svc.model.manifest.version,
                    "image_shape": list(svc.image_shape),
                    "latent_dim": svc.latent_dim,
                    "default": svc is service,
                    "ready": svc.ready,
                }
                for name, svc in served(request).items()
            ],
            "manifest": service.model.manifest.public(),
            "latent_dim": service.latent_dim,
            "providers": list(service.model.providers),
            "limits": {
                "max_images": settings.max_images,
                "max_n": settings.max_n,
                "max_steps": settings.max_steps,
                "max_body_bytes": settings.max_body_bytes,
            },
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": settings.max_wait_ms,
            },
        }
        return Response(dumps(payload), media_type="application/json")
