"""The HTTP contract of each model route, stated once: its path, request and response models,
the media types it reads and those it answers. The routes and the OpenAPI document both read
this table."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from service.api import schemas
from service.api.negotiation import GIF, JSON, NPY, PNG, RAW
from service.api.request_rules import RequestRules, rules_of
from service.config import Settings


@dataclass(frozen=True)
class RouteContract:
    name: str
    path: str
    summary: str
    request: type[BaseModel]
    response: type[BaseModel]
    bodies: tuple[str, ...]  # Content-Types read; JSON first (also the default)
    answers: tuple[str, ...]  # media types answered; the first is the default
    rules: RequestRules

    @property
    def named_path(self) -> str:
        """The same route for any served model: `/models/{model}/<name>`."""
        return NAMED_PREFIX + self.path


# The routes of a model named in the path (the plain ones serve the default model).
MODEL_PARAM = "model"  # the path parameter naming a served model
NAMED_PREFIX = "/models/{" + MODEL_PARAM + "}"


def route_contracts(settings: Settings) -> dict[str, RouteContract]:
    """The model routes by name, with the request limits of these settings."""
    models = schemas.request_models(settings)

    def contract(
        name: str,
        summary: str,
        response: type[BaseModel],
        bodies: tuple[str, ...],
        answers: tuple[str, ...],
    ) -> RouteContract:
        request = models[f"{name.capitalize()}Request"]
        return RouteContract(
            name, f"/{name}", summary, request, response, bodies, answers, rules_of(request)
        )

    routes = [
        contract(
            "encode",
            "Encode images to latent distributions",
            schemas.EncodeResponse,
            (JSON, NPY, RAW),
            (JSON, NPY),
        ),
        contract(
            "score",
            "Anomaly scores: how unusual each image is for the model",
            schemas.ScoreResponse,
            (JSON, NPY, RAW),
            (JSON, NPY),
        ),
        contract(
            "decode",
            "Decode latents to images",
            schemas.ImagesResponse,
            (JSON, NPY, RAW),
            (JSON, PNG, NPY),
        ),
        contract(
            "sample",
            "Generate images from random latents",
            schemas.SampleResponse,
            (JSON,),
            (JSON, PNG, NPY),
        ),
        contract(
            "interpolate",
            "Walk the latent space between two points",
            schemas.InterpolateResponse,
            (JSON,),
            (JSON, PNG, GIF, NPY),
        ),
    ]
    return {route.name: route for route in routes}
