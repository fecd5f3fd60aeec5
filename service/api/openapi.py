"""The OpenAPI document: request bodies, examples and limits for routes that parse raw bodies,
rendered as OpenAPI 3.0 because the bundled (offline) Swagger UI 4 does not read 3.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api import schemas
from service.config import Settings

OPENAPI_VERSION = "3.0.3"
DEFAULT_LATENT_DIM = 30
REF = "#/components/schemas/{model}"


class _RouteDoc(NamedTuple):
    request_model: str
    examples_key: str
    binary_bodies: bool  # also reads application/x-npy and application/octet-stream
    answers: tuple[str, ...]  # media types answered besides JSON
    response_model: type[BaseModel]


_ROUTES = {
    "/encode": _RouteDoc(
        "EncodeRequest", "encode", True, ("application/x-npy",), schemas.EncodeResponse
    ),
    "/decode": _RouteDoc(
        "DecodeRequest",
        "decode",
        True,
        ("image/png", "application/x-npy"),
        schemas.ImagesResponse,
    ),
    "/sample": _RouteDoc(
        "SampleRequest",
        "sample",
        False,
        ("image/png", "application/x-npy"),
        schemas.SampleResponse,
    ),
    "/interpolate": _RouteDoc(
        "InterpolateRequest",
        "interpolate",
        False,
        ("image/png", "image/gif", "application/x-npy"),
        schemas.InterpolateResponse,
    ),
}


def _to_openapi_30(node: Any) -> Any:
    """JSON Schema 2020-12 bits that OpenAPI 3.0 lacks -> their 3.0 spelling."""
    if isinstance(node, list):
        return [_to_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_openapi_30(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            if len(rest) == 1:
                out.update(rest[0] if "$ref" not in rest[0] else {"allOf": rest})
            else:
                out[key] = rest
            out["nullable"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("examples"), list) and "value" not in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    return out


def _binary_body(description: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary"}, "x-description": description}


def install_openapi(app: FastAPI, settings: Settings, latent_dim: Callable[[], int | None]) -> None:
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
        models = schemas.request_models(settings)
        response_models = [schemas.ErrorBody] + [r.response_model for r in _ROUTES.values()]
        _, top = models_json_schema(
            [(m, "validation") for m in (*models.values(), *response_models)], ref_template=REF
        )
        components.update(top.get("$defs", {}))
        examples = schemas.request_examples(dim or DEFAULT_LATENT_DIM)
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
        for path, (model, key, binary, answers, response_model) in _ROUTES.items():
            op = doc["paths"][path]["post"]
            content: dict[str, Any] = {
                "application/json": {
                    "schema": {"$ref": REF.format(model=model)},
                    "examples": examples[key],
                }
            }
            if binary:
                content["application/x-npy"] = _binary_body("A .npy array, (n, width) float32.")
                content["application/octet-stream"] = _binary_body(
                    "Raw little-endian float32; shape in the X-Array-Shape header, e.g. `1,784`."
                )
                op.setdefault("parameters", []).append(
                    {
                        "name": "X-Array-Shape",
                        "in": "header",
                        "required": False,
                        "description": "Shape of an application/octet-stream body, e.g. `2,784`.",
                        "schema": {"type": "string"},
                    }
                )
            op["requestBody"] = {"required": True, "content": content}
            op["description"] = (op.get("description", "") + "\n\n" + limits).strip()
            ok = {
                "application/json": {"schema": {"$ref": REF.format(model=response_model.__name__)}}
            }
            for media in answers:
                ok[media] = {"schema": {"type": "string", "format": "binary"}}
            op["responses"] = {
                "200": {"description": "Success.", "content": ok},
                "400": {"description": "Malformed JSON.", "content": error},
                **unauthorized,
                "406": {"description": "Unsupported Accept.", "content": error},
                "413": {"description": "Body too large.", "content": error},
                "415": {"description": "Unsupported Content-Type.", "content": error},
                "422": {"description": "Invalid value; `field` names it.", "content": error},
                "503": {"description": "Model not loaded yet.", "content": error},
            }
        # FastAPI's own 422 models, once no response refers to them any more.
        if REF.format(model="HTTPValidationError").encode() not in orjson.dumps(doc["paths"]):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        doc["info"]["x-latent-dim"] = dim
        doc = _to_openapi_30(doc)
        if dim is not None:  # cache only once the model (and so its latent size) is known
            app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
