"""The OIP v2 REST routes, on the app's own router (thin: `codec` reads and writes the
bodies, `models` checks the inputs, the runtime's micro-batcher runs them). Errors are
`{"error": "..."}` (`service.api.errors`' OIP dialect): 400 for a bad request, 404 for an
unknown model or version, 503 while the model loads or when overloaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.params import Depends
from starlette.responses import Response

from service.api.codecs.json import dumps
from service.api.echo import quoted
from service.api.errors import ApiError
from service.api.negotiation import JSON
from service.api.oip import codec
from service.api.oip.models import SCORE, OIPModel, oip_models
from service.api.openapi import set_path_parameter_enums
from service.api.request_rules import FieldRule, RequestRules
from service.runtime.errors import ModelNotReady
from service.runtime.service import VAEService
from vae_manifest import ModelManifest
from vae_manifest import triton as tm

TAG = "Open Inference Protocol v2"
SERVER_NAME = "vae-service"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
MODEL_PREFIXES = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{version}")
INFER = "/infer"
# The routes that run a model: under admission control like the service's own model routes.
INFER_ROUTES = tuple(prefix + INFER for prefix in MODEL_PREFIXES)


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_ERROR_CONTENT = {JSON: {"schema": _ERROR_SCHEMA}}
_WHY = {
    400: "Invalid request: the message names the tensor and the problem.",
    401: "Missing or wrong API key.",
    404: "Unknown model or version.",
    413: "Body too large.",
    503: "The model is loading, or the worker is overloaded (then with `Retry-After`).",
    504: "Inference not finished within the request deadline.",
}


def _docs(
    ok: dict[str, Any] | None, *errors: int, protected: Sequence[Depends] = ()
) -> dict[int | str, dict[str, Any]]:
    """The documented answers of an OIP route: 200 (`ok`: its content; None: no body) and
    these error statuses in the OIP dialect (401 too when the route needs the API key)."""
    docs: dict[int | str, dict[str, Any]] = {200: {"description": "OK", "content": ok or {}}}
    for status in (*errors, *((401,) if protected else ())):
        docs[status] = {"description": _WHY[status], "content": _ERROR_CONTENT}
    return docs


_JSON_OBJECT = {JSON: {"schema": {"type": "object"}}}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type=codec.JSON_MEDIA_TYPE)


def _not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def add_oip_routes(
    router: APIRouter,
    rules: dict[tm.Graph, FieldRule],
    score_rules: RequestRules,
    max_batch_size: int,
    server_version: str,
    protected: Sequence[Depends],
) -> None:
    # The OIP models of the served VAEs, made once per set of services (tests build several).
    registry: dict[tuple[int, ...], dict[str, tuple[VAEService, OIPModel]]] = {}

    def served(request: Request) -> dict[str, tuple[VAEService, OIPModel]]:
        services: dict[str, VAEService] = getattr(request.app.state, "services", None) or {}
        key = tuple(id(service) for service in services.values())
        models = registry.get(key)
        if models is None:
            registry.clear()
            models = registry[key] = {
                name: (service, model)
                for service in services.values()
                for name, model in oip_models(service.model.manifest, rules, score_rules).items()
            }
        return models

    def model_of(request: Request, name: str, version: str | None) -> tuple[VAEService, OIPModel]:
        found = served(request).get(name)
        if found is None:
            raise _not_found(f"unknown model: {quoted(name)}")
        if version not in (None, "", tm.VERSION):
            raise _not_found(
                f"model {quoted(name)} has no version {quoted(version)} "
                f"(versions: [{tm.VERSION!r}])"
            )
        return found

    def server_get(path: str, summary: str, ok: dict[str, Any] | None, *errors: int) -> Any:
        return router.get(
            path, tags=[TAG], summary=summary, response_class=Response, responses=_docs(ok, *errors)
        )

    @server_get("/v2", "Server metadata", _JSON_OBJECT)
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": server_version, "extensions": EXTENSIONS})

    @server_get("/v2/health/live", "Server liveness", None)
    async def server_live() -> Response:
        return Response(status_code=200)

    @server_get("/v2/health/ready", "Server readiness: 200 once the models are warm", None, 503)
    async def server_ready(request: Request) -> Response:
        models = served(request)
        if not models or not all(service.ready for service, _ in models.values()):
            raise ModelNotReady("the models are still loading")
        return Response(status_code=200)

    @router.post(
        "/v2/repository/index",
        tags=[TAG],
        summary="The models served, with their versions and states",
        dependencies=protected,
        response_class=Response,
        responses=_docs(
            {JSON: {"schema": {"type": "array", "items": {"type": "object"}}}}, protected=protected
        ),
    )
    async def repository_index(request: Request) -> Response:
        models = served(request)
        return _json(
            [
                {
                    "name": name,
                    "version": tm.VERSION,
                    "state": "READY" if models[name][0].ready else "UNAVAILABLE",
                }
                for name in sorted(models)
            ]
        )

    for prefix in MODEL_PREFIXES:
        add_model_routes(router, prefix, model_of, max_batch_size, protected)


def add_model_routes(
    router: APIRouter,
    prefix: str,
    model_of: Any,
    max_batch_size: int,
    protected: Sequence[Depends],
) -> None:
    """Metadata, readiness, configuration and inference of one model, at `prefix`."""
    # The path parameters are read from the path and documented here, not declared in the
    # handlers' signatures: FastAPI would add a 422 answer for them (strings never fail), and
    # the unversioned routes share the handlers.
    names = ("model_name", "version") if "{version}" in prefix else ("model_name",)
    versioned: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    }

    def model_get(suffix: str, summary: str, ok: dict[str, Any] | None, *errors: int) -> Any:
        return router.get(
            prefix + suffix,
            tags=[TAG],
            summary=summary,
            dependencies=protected,
            response_class=Response,
            responses=_docs(ok, 404, *errors, protected=protected),
            openapi_extra=versioned,
        )

    def target(request: Request) -> tuple[VAEService, OIPModel]:
        params = request.path_params
        return model_of(request, params["model_name"], params.get("version"))

    @model_get("", "Model metadata", _JSON_OBJECT)
    async def model_metadata(request: Request) -> Response:
        _, model = target(request)
        return _json(model.metadata)

    @model_get("/ready", "Model readiness", None, 503)
    async def model_ready(request: Request) -> Response:
        service, _ = target(request)
        if not service.ready:
            raise ModelNotReady("the model is still loading")
        return Response(status_code=200)

    @model_get("/config", "Model configuration (Triton's extension)", _JSON_OBJECT)
    async def model_config(request: Request) -> Response:
        _, model = target(request)
        return _json(model.config(max_batch_size))

    @router.post(
        prefix + INFER,
        tags=[TAG],
        summary="Inference: JSON tensors or the binary tensor data extension",
        description="The request and answer of the Open Inference Protocol v2 "
        "(https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol), "
        "with Triton's binary tensor data extension: `Inference-Header-Content-Length` gives "
        "the JSON header's length, binary tensors follow it in the order of the JSON.",
        dependencies=protected,
        response_class=Response,
        responses=_docs(
            {
                **_JSON_OBJECT,
                codec.BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
            400,
            404,
            413,
            503,
            504,
            protected=protected,
        ),
        openapi_extra={
            **versioned,
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": {"type": "object"}},
                    codec.BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                },
            },
        },
    )
    async def model_infer(request: Request) -> Response:
        service, model = target(request)
        body = await request.body()
        parsed = codec.parse_infer_request(body, request.headers.get(codec.HEADER_LENGTH))
        if parsed.outputs is not None:
            model.check_outputs(tuple(output.name for output in parsed.outputs))
        results = await model.infer(service, model.rows(parsed.inputs), parsed.parameters)
        answer, header_length = codec.encode_infer_response(model.name, tm.VERSION, parsed, results)
        if header_length is None:
            return Response(answer, media_type=codec.JSON_MEDIA_TYPE)
        return Response(
            answer,
            media_type=codec.BINARY_MEDIA_TYPE,
            headers={codec.HEADER_LENGTH: str(header_length)},
        )


def document_models(manifests: Callable[[], list[ModelManifest]]) -> Any:
    """An OpenAPI patch: the model and version path parameters list what is served and the
    inference body has a working example (once the models are loaded), so the docs page
    offers them and a fuzzer reaches past the 404."""

    def patch(doc: dict[str, Any]) -> None:
        served = manifests()
        if not served:
            return
        names = sorted(
            [tm.model_name(m, graph) for m in served for graph in tm.GRAPHS]
            + [f"{m.name}-{SCORE}" for m in served]
        )
        enums = {"model_name": names, "version": [tm.VERSION]}
        first = served[0]  # the default model
        (z,) = first.decoder.inputs
        example = {
            "id": "my-request",
            "inputs": [
                {
                    "name": z.name,
                    "datatype": "FP32",
                    "shape": [1, first.latent_dim],
                    "data": [0.0] * first.latent_dim,
                }
            ],
            "outputs": [{"name": first.decoder.outputs[0].name}],
        }
        set_path_parameter_enums(doc, enums)
        for path, operations in doc.get("paths", {}).items():
            if path.startswith("/v2/models/"):
                for operation in operations.values():
                    body = operation.get("requestBody", {}).get("content", {}).get(JSON)
                    if body is not None:
                        body["example"] = example

    return patch
