"""The OpenAPI document: request bodies, examples and limits for routes that parse raw bodies,
rendered as OpenAPI 3.0 because the bundled (offline) Swagger UI 4 does not read 3.1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from service.api import schemas
from service.api.contract import RouteContract
from service.api.negotiation import JSON, NPY, RAW
from service.api.openapi30 import to_openapi_30
from service.config import Settings

OPENAPI_VERSION = "3.0.3"
DEFAULT_LATENT_DIM = 30
DEFAULT_IMAGE_SHAPE = (28, 28)
REF = "#/components/schemas/{model}"


_BINARY_BODIES = {
    NPY: "A .npy array, (n, width) float32.",
    RAW: "Raw little-endian float32; shape in the X-Array-Shape header, e.g. `1,784` "
    "(one 28x28 image).",
}
_ARRAY_SHAPE_HEADER = {
    "name": "X-Array-Shape",
    "in": "header",
    "required": False,
    "description": "Shape of an application/octet-stream body, e.g. `2,784`.",
    "schema": {"type": "string"},
}

_RETRY_AFTER_HEADER = {
    "description": "With `overloaded`: seconds to wait before retrying.",
    "schema": {"type": "integer"},
}


def _binary_body(description: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary"}, "x-description": description}


def install_openapi(
    app: FastAPI,
    settings: Settings,
    routes: dict[str, RouteContract],
    latent_dim: Callable[[], int | None],
    patches: Sequence[Callable[[dict[str, Any]], None]] = (),
    image_shape: Callable[[], tuple[int, int] | None] = lambda: None,
) -> None:
    """`patches` amend the document (OpenAPI 3.1, before the 3.0 rendering) of other routes."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        dim = latent_dim()
        doc = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=OPENAPI_VERSION,
            description=app.description,
            routes=app.routes,
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        models = [schemas.ErrorBody]
        for route in routes.values():
            models += [route.request, route.response]
        _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
        components.update(top.get("$defs", {}))
        examples = schemas.request_examples(
            dim or DEFAULT_LATENT_DIM, image_shape() or DEFAULT_IMAGE_SHAPE
        )
        limits = (
            f"Limits: at most {settings.max_images} images or latents per request, n <= "
            f"{settings.max_n}, steps <= {settings.max_steps}, bodies <= "
            f"{settings.max_body_bytes} bytes (413 beyond)."
        )
        error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
        unauthorized = (
            {"401": {"description": "Missing or wrong API key.", "content": error}}
            if settings.api_key_value
            else {}
        )
        timeout = (
            {
                "504": {
                    "description": f"Inference not finished within {settings.request_timeout:g} "
                    "s of admission (`timeout`); the request's rows were not computed.",
                    "content": error,
                }
            }
            if settings.request_timeout
            else {}
        )
        for route, path in [(r, p) for r in routes.values() for p in (r.path, r.named_path)]:
            op = doc["paths"][path]["post"]
            content: dict[str, Any] = {}
            for media in route.bodies:
                if media == JSON:
                    content[media] = {
                        "schema": {"$ref": REF.format(model=route.request.__name__)},
                        "examples": examples[route.name],
                    }
                else:
                    content[media] = _binary_body(_BINARY_BODIES[media])
            if RAW in route.bodies:
                op.setdefault("parameters", []).append(_ARRAY_SHAPE_HEADER)
            op["requestBody"] = {"required": True, "content": content}
            op["description"] = (op.get("description", "") + "\n\n" + limits).strip()
            ok = {
                media: {"schema": {"$ref": REF.format(model=route.response.__name__)}}
                if media == JSON
                else {"schema": {"type": "string", "format": "binary"}}
                for media in route.answers
            }
            op["responses"] = {
                "200": {"description": "Success.", "content": ok},
                "400": {"description": "Malformed JSON.", "content": error},
                **unauthorized,
                "406": {"description": "Unsupported Accept.", "content": error},
                "413": {"description": "Body too large.", "content": error},
                "415": {"description": "Unsupported Content-Type.", "content": error},
                "422": {"description": "Invalid value; `field` names it.", "content": error},
                "503": {
                    "description": "Model not loaded yet (`not_ready`), or this worker is over "
                    "its admission bounds (`overloaded`, with `Retry-After`).",
                    "headers": {"Retry-After": _RETRY_AFTER_HEADER},
                    "content": error,
                },
                **timeout,
            }
            if path == route.named_path:
                op["responses"]["404"] = {"description": "Unknown model.", "content": error}
        # FastAPI's own 422 models, once no response refers to them any more.
        if REF.format(model="HTTPValidationError").encode() not in orjson.dumps(doc["paths"]):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        doc["info"]["x-latent-dim"] = dim
        for patch in patches:
            patch(doc)
        doc = to_openapi_30(doc)
        if dim is not None:  # cache only once the model (and so its latent size) is known
            app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]


def set_path_parameter_enums(doc: dict[str, Any], enums: dict[str, list[str]]) -> None:
    """Every path parameter named in `enums` lists its allowed values (served model names),
    so the docs page offers them and a fuzzer reaches past the 404."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter.get("in") == "path" and parameter["name"] in enums:
                    parameter["schema"] = {"type": "string", "enum": enums[parameter["name"]]}
