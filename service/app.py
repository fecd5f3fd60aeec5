"""The application factory: `create_app(settings)` builds the FastAPI app; its lifespan loads
the model, warms it up and only then flips `/readyz` to 200."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from service.api.admission import Admission, AdmissionGate
from service.api.auth import api_key_guard
from service.api.contract import route_contracts
from service.api.errors import install_error_handlers
from service.api.metrics import Metrics
from service.api.middleware import BodyLimit, RequestObserver
from service.api.oip.routes import INFER_ROUTES, add_oip_routes, document_models
from service.api.openapi import install_openapi
from service.api.routes.docs import install_docs
from service.api.routes.explorer import EXPLORER_PATH, install_explorer
from service.api.routes.inference import add_inference_routes, document_model_names
from service.api.routes.operations import (
    add_health_routes,
    add_model_routes,
    add_probe_head_routes,
)
from service.api.routing import PlainPathRoute
from service.config import Settings, batching_options, session_options
from service.runtime.model import VAEModel
from service.runtime.repository import check_unique_names, model_dirs
from service.runtime.service import VAEService
from service.server.early_answers import EARLY_ANSWER_KEY
from vae_manifest import ModelManifest

log = logging.getLogger("service")

# Each request allocates a few hundred short-lived containers (ASGI messages, headers, parsed
# JSON lists), so CPython's default generation-0 threshold (700) runs a collection every few
# requests. A larger one keeps the same collector at a fraction of the cost (the README's
# performance section has the measured effect).
GC_GEN0_THRESHOLD = 10_000

DESCRIPTION = f"""A variational autoencoder on MNIST, served with ONNX Runtime.

[Latent explorer]({EXPLORER_PATH}): draw a digit and see its reconstruction, latent means and
anomaly score; move the most informative latent dimensions, sample and interpolate.

Images are grayscale in [0, 1] of the model's shape H x W (`GET /model`; 28x28 for the default
MNIST model, white digit on black). In JSON an image is a flat list of H*W numbers, a nested
HxW list, or a base64 PNG string. `d` is the model's latent dimension (`GET /model`). Heavy
clients can send `application/x-npy` bodies and ask for `Accept: application/x-npy` answers.
Errors are JSON: `{{"error": {{"code", "message", "field"}}}}`.
"""


def create_app(settings: Settings | None = None, service: VAEService | None = None) -> FastAPI:
    """Build the app. With `service` given (tests), it is started and stopped by the lifespan
    instead of loading `settings.model_dir`."""
    settings = settings or Settings()
    metrics = Metrics()
    routes = route_contracts(settings)
    gate = AdmissionGate(
        routes=[
            *(path for route in routes.values() for path in (route.path, route.named_path)),
            *INFER_ROUTES,
        ],
        max_in_flight=settings.max_in_flight,
        max_body_bytes_in_flight=settings.max_body_bytes_in_flight,
        max_body_bytes=settings.max_body_bytes,
        retry_after=settings.retry_after,
        early_retry_hold=settings.early_retry_hold,
        metrics=metrics,
        access_log=settings.access_log,
        cors=bool(settings.cors_origin_list),
    )

    async def load(model_dir: Path) -> VAEService:
        log.info("loading model", extra={"model_dir": str(model_dir)})
        model = await asyncio.to_thread(VAEModel.load, model_dir, session_options(settings))
        return VAEService(model, batching_options(settings), observer=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        if service is not None:
            default, others = service, []
        else:
            dirs = model_dirs(settings.model_dir, settings.model_repository)
            await asyncio.to_thread(check_unique_names, dirs)
            default = await load(dirs[0])
            others = [await load(model_dir) for model_dir in dirs[1:]]
        app.state.services = {svc.model.manifest.name: svc for svc in (default, *others)}
        app.state.service = default
        # The default model last: /readyz answers 200 once it is warm, so every model is.
        for svc in (*others, default):
            await svc.start()  # warm-up happens here; /readyz answers 503 until it returns
            log.info(
                "ready",
                extra={
                    "model": svc.model.manifest.name,
                    "version": svc.model.manifest.version,
                    "latent_dim": svc.latent_dim,
                    "providers": list(svc.model.providers),
                },
            )
        try:
            # The lifespan state reaches the server's protocol: it refuses over-bound
            # requests from their heads (service.server.early_answers).
            yield {EARLY_ANSWER_KEY: gate.early_answer}
        finally:
            for svc in (default, *others):
                await svc.stop()
            log.info("stopped")

    app = FastAPI(
        title="VAE service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = None
    app.state.services = {}
    install_error_handlers(app, retry_after=settings.retry_after)

    key = settings.api_key_value
    protected = [Depends(api_key_guard(key))] if key else []
    # Routes go on the app's own router, not through `include_router`: an included router is
    # matched as a branch and then again inside it, which every request pays for.
    app.router.route_class = PlainPathRoute
    add_health_routes(app.router, metrics)
    add_inference_routes(app.router, routes, protected, settings.outlier_quantile)
    add_model_routes(app.router, settings, protected)
    add_oip_routes(
        app.router,
        {"encoder": routes["encode"].rules["images"], "decoder": routes["decode"].rules["z"]},
        routes["score"].rules,
        max_batch_size=settings.max_images,
        server_version=app.version,
        protected=protected,
    )
    install_docs(app)
    install_explorer(app)
    add_probe_head_routes(app.router)

    def latent_dim() -> int | None:
        svc = app.state.service
        return svc.latent_dim if svc is not None and svc.ready else None

    def served_manifests() -> list[ModelManifest]:
        """Every served model's manifest, the default first, once all are warm."""
        services = app.state.services
        if not services or not all(svc.ready for svc in services.values()):
            return []
        return [svc.model.manifest for svc in services.values()]

    def image_shape() -> tuple[int, int] | None:
        manifests = served_manifests()
        return manifests[0].image_shape if manifests else None

    install_openapi(
        app,
        settings,
        routes,
        latent_dim,
        [
            document_models(served_manifests),
            document_model_names(lambda: [m.name for m in served_manifests()]),
        ],
        image_shape,
    )

    # Added innermost first: admission (so CORS headers reach its 503s too), CORS, then the
    # body limit, then the observer around everything (it counts and logs every refusal).
    app.add_middleware(Admission, gate=gate, request_timeout=settings.request_timeout)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Seed", "X-Arrays"],
        )
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestObserver,
        metrics=metrics,
        access_log_enabled=settings.access_log,
        route_paths=frozenset(route.path for route in app.routes if isinstance(route, APIRoute)),
        route_of=gate.route_of,
    )
    return app


def tune_worker_gc() -> None:
    """Raise this process's generation-0 GC threshold (see GC_GEN0_THRESHOLD)."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), gen1, gen2)


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers (`service.app:create_app_from_env`); tunes this worker
    process's garbage collector (not done in `create_app`, which tests call in-process)."""
    tune_worker_gc()
    # Warnings (numpy's included) become log records: one JSON line each, never raw stderr.
    logging.captureWarnings(True)
    return create_app(Settings())
