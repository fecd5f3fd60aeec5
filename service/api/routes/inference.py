"""/encode, /decode, /sample, /interpolate: parse -> call the runtime -> encode the answer.

Each route's path, media types and request rules come from `service.api.contract`; bodies are
read by `service.api.bodies` straight into numpy (no per-element pydantic validation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.params import Depends
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.api import bodies
from service.api.codecs import json as jsonc
from service.api.codecs import npy, png
from service.api.contract import MODEL_PARAM, RouteContract
from service.api.errors import invalid
from service.api.negotiation import GIF, JSON, NPY, PNG, negotiate
from service.api.openapi import set_path_parameter_enums
from service.api.readiness import require_service
from service.api.request_rules import FieldRule
from service.runtime.service import ScoreResult, VAEService
from vae_manifest import scoring

ARRAYS_HEADER = "X-Arrays"
SEED_HEADER = "X-Seed"
# Documented by hand: a declared FastAPI parameter would cost its solving on every request.
MODEL_PATH_PARAMETER = {
    "name": MODEL_PARAM,
    "in": "path",
    "required": True,
    "description": "A served model's name (`GET /model`: `served`).",
    "schema": {"type": "string"},
}
SEED_QUERY_DESCRIPTION = (
    "Seed for binary (npy / octet-stream) bodies; a `seed` in a JSON body wins."
)


def seed_query_doc(rule: FieldRule) -> dict[str, Any]:
    """`?seed=` as FastAPI would document it (it is read by hand: see `_query_int`)."""
    return {
        "name": "seed",
        "in": "query",
        "required": False,
        "schema": {
            "description": SEED_QUERY_DESCRIPTION,
            "title": "Seed",
            "type": "integer",
            "maximum": rule.hi,
            "minimum": rule.lo,
            "nullable": True,
        },
        "description": SEED_QUERY_DESCRIPTION,
    }


def _query_int(request: Request, rule: FieldRule) -> int | None:
    """`?<rule's name>=` as an integer held to the rule, or None when absent."""
    # Read by hand: a FastAPI query parameter costs its dependency solving on every request,
    # a measurable share of a one-image /encode.
    if not request.scope.get("query_string"):
        return None
    raw = request.query_params.get(rule.name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = raw[:40]
    return jsonc.int_field({rule.name: value}, rule)


async def _read(request: Request, route: RouteContract) -> tuple[str, str, bytes, VAEService]:
    """Negotiate first (415/406 cost nothing), then read the body: media, answer, body, service."""
    media, answer = negotiate(request, route.bodies, route.answers)
    return media, answer, await _body(request), require_service(request)


async def _body(request: Request) -> bytes:
    # Request.body() goes through an async generator, measurably slower per request; joining
    # a single chunk returns that chunk itself, so a one-message body is never copied.
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _json(payload: dict[str, Any]) -> Response:
    return Response(jsonc.dumps(payload), media_type=JSON)


def _images_answer(
    answer: str,
    payload: dict[str, Any],
    images: np.ndarray,
    shape: png.ImageShape,
    *,
    strip: bool,
) -> Response:
    if answer == PNG:
        return Response(png.encode_png(images, shape, strip=strip), media_type=PNG)
    if answer == NPY:
        return Response(npy.write_npy(images), media_type=NPY, headers={ARRAYS_HEADER: "images"})
    return _json(payload)


def samples_query_doc(rule: FieldRule) -> dict[str, Any]:
    """`?samples=` for binary bodies (read by hand, as `?seed=`)."""
    description = "Draws per image for binary bodies; a `samples` in a JSON body wins."
    return {
        "name": rule.name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": rule.lo, "maximum": rule.hi},
        "description": description,
    }


def score_payload(result: ScoreResult, service: VAEService, quantile: float) -> dict[str, Any]:
    """The /score answer: the scores, and where they fall in the model's calibration."""
    calibration = service.model.manifest.calibration
    payload: dict[str, Any] = {
        "neg_elbo": result.neg_elbo,
        "iwae": result.iwae if result.samples > 1 else None,
        "percentile": None,
        "outlier": None,
        "threshold": None,
        "seed": result.seed,
        "samples": result.samples,
    }
    if calibration is not None:
        quantiles = np.asarray(calibration.quantiles)
        threshold = scoring.threshold_at(quantiles, quantile)
        payload["percentile"] = scoring.percentile_of(result.neg_elbo, quantiles)
        payload["outlier"] = (result.neg_elbo > threshold).tolist()
        payload["threshold"] = threshold
    return payload


def add_inference_routes(
    router: APIRouter,
    routes: dict[str, RouteContract],
    dependencies: Sequence[Depends],
    outlier_quantile: float,
) -> None:
    """Registered on the app's own router: see `service.app` for why not `include_router`."""
    encode_route, decode_route = routes["encode"], routes["decode"]
    sample_route, interpolate_route = routes["sample"], routes["interpolate"]

    def post(route: RouteContract, parameters: Sequence[dict[str, Any]] = ()) -> Any:
        """Registers the handler twice: at the route's path (the default model) and at its
        `/models/{model}/...` path (the model named in the path)."""

        def register(handler: Any) -> Any:
            for path, params in (
                (route.path, list(parameters)),
                (route.named_path, [MODEL_PATH_PARAMETER, *parameters]),
            ):
                router.post(
                    path,
                    tags=["model"],
                    dependencies=dependencies,
                    name=route.name,
                    summary=route.summary,
                    openapi_extra={"parameters": params} if params else None,
                )(handler)
            return handler

        return register

    encode_rules = encode_route.rules

    @post(encode_route, [seed_query_doc(encode_rules["seed"])])
    async def encode(request: Request) -> Response:
        """`{"images": [...], "seed": int?}` -> `{"mu", "sigma", "z", "seed"}` with
        z = mu + sigma * w, w ~ N(0, I) drawn from `seed` (the seed used is always returned).

        Binary: send `application/x-npy` (or raw float32 `application/octet-stream` with
        `X-Array-Shape: n,H*W`, e.g. `n,784` for 28x28); `Accept: application/x-npy` answers
        one array of shape (3, n, d) stacking mu, sigma and z (`X-Arrays: mu,sigma,z`)."""
        seed = _query_int(request, encode_rules["seed"])
        media, answer, body, service = await _read(request, encode_route)
        if media == JSON:
            images, body_seed = bodies.encode_json(body, encode_rules, service.image_shape)
            if body_seed is not None:
                seed = body_seed
        else:
            shape = request.headers.get(npy.SHAPE_HEADER)
            images = bodies.binary_rows(
                media,
                body,
                shape,
                encode_rules,
                "images",
                service.image_size,
                service.image_shape,
            )
        result = await service.encode(images, seed=seed)
        if answer == NPY:
            stacked = np.stack([result.mu, result.sigma, result.z])
            return Response(
                npy.write_npy(stacked),
                media_type=NPY,
                headers={ARRAYS_HEADER: "mu,sigma,z", SEED_HEADER: str(result.seed)},
            )
        return _json({"mu": result.mu, "sigma": result.sigma, "z": result.z, "seed": result.seed})

    score_route = routes["score"]
    score_rules = score_route.rules

    @post(
        score_route,
        [seed_query_doc(score_rules["seed"]), samples_query_doc(score_rules["samples"])],
    )
    async def score(request: Request) -> Response:
        """`{"images": [...], "seed": int?, "samples": int?}` -> `{"neg_elbo", "iwae",
        "percentile", "outlier", "threshold", "seed", "samples"}`: how unusual each image is
        for the model (see the README's anomaly scores). The same seed gives the same scores.

        Binary bodies as for /encode (`?seed=`, `?samples=`); `Accept: application/x-npy`
        answers one float64 array, a row per name in `X-Arrays`."""
        ints = {name: _query_int(request, score_rules[name]) for name in ("seed", "samples")}
        media, answer, body, service = await _read(request, score_route)
        if media == JSON:
            images, body_ints = bodies.images_json(body, score_rules, service.image_shape)
            ints = {k: v if body_ints.get(k) is None else body_ints[k] for k, v in ints.items()}
        else:
            images = bodies.binary_rows(
                media,
                body,
                request.headers.get(npy.SHAPE_HEADER),
                score_rules,
                "images",
                service.image_size,
                service.image_shape,
            )
        samples = ints["samples"] or int(score_rules["samples"].default)
        result = await service.score(images, ints["seed"], samples)
        payload = score_payload(result, service, outlier_quantile)
        if answer == NPY:
            names = [
                k for k in ("neg_elbo", "iwae", "percentile", "outlier") if payload[k] is not None
            ]
            stacked = np.array([payload[k] for k in names], dtype=np.float64)
            return Response(
                npy.write_npy(stacked),
                media_type=NPY,
                headers={ARRAYS_HEADER: ",".join(names), SEED_HEADER: str(result.seed)},
            )
        return _json(payload)

    @post(decode_route)
    async def decode(request: Request) -> Response:
        """`{"z": [[d numbers], ...]}` -> `{"images": [[H*W numbers], ...]}`.

        `Accept: image/png` answers one PNG (a grid when several); binary bodies and answers
        as for /encode."""
        media, answer, body, service = await _read(request, decode_route)
        if media == JSON:
            z = bodies.decode_json(body, decode_route.rules, service.latent_dim)
        else:
            shape = request.headers.get(npy.SHAPE_HEADER)
            z = bodies.binary_rows(media, body, shape, decode_route.rules, "z", service.latent_dim)
        images = await service.decode(z)
        return _images_answer(answer, {"images": images}, images, service.image_shape, strip=False)

    @post(sample_route)
    async def sample(request: Request) -> Response:
        """`{"n": int, "seed": int?, "temperature": float? = 1}` -> `{"z", "images", "seed"}`
        with z ~ N(0, temperature^2 I). `Accept: image/png` answers a grid."""
        _, answer, body, service = await _read(request, sample_route)
        rules = sample_route.rules
        obj = jsonc.parse_request(body, rules)
        n = jsonc.int_field(obj, rules["n"])
        assert n is not None  # not nullable
        result = await service.sample(
            n,
            seed=jsonc.int_field(obj, rules["seed"]),
            temperature=jsonc.float_field(obj, rules["temperature"]),
        )
        payload = {"z": result.z, "images": result.images, "seed": result.seed}
        response = _images_answer(answer, payload, result.images, service.image_shape, strip=False)
        response.headers[SEED_HEADER] = str(result.seed)
        return response

    @post(interpolate_route)
    async def interpolate(request: Request) -> Response:
        """`{"start": image | "start_z": [d], "end": image | "end_z": [d], "steps": int >= 2,
        "method": "linear" | "slerp"}` -> `{"z": [[d] x steps], "images": [...]}`. Image
        endpoints are encoded to their means first. `Accept: image/png` answers a strip,
        `Accept: image/gif` an animated GIF with one frame per step."""
        _, answer, body, service = await _read(request, interpolate_route)
        rules = interpolate_route.rules
        obj = jsonc.parse_request(body, rules)
        steps = jsonc.int_field(obj, rules["steps"])
        assert steps is not None  # not nullable
        method = jsonc.choice_field(obj, rules["method"])
        ends: dict[str, np.ndarray] = {}
        to_encode: list[tuple[str, np.ndarray]] = []
        budget = png.PixelBudget()
        for side in ("start", "end"):
            has_image, has_z = rules[side].given(obj), rules[f"{side}_z"].given(obj)
            if has_image == has_z:
                which = "both" if has_image else "neither"
                raise invalid(
                    side, f"give exactly one of `{side}` (an image) or `{side}_z`; got {which}"
                )
            if has_z:
                ends[side] = jsonc.latent_from_json(
                    obj[f"{side}_z"], rules[f"{side}_z"], service.latent_dim
                )
            else:
                image = jsonc.image_from_json(obj[side], rules[side], budget, service.image_shape)
                to_encode.append((side, image))
        if to_encode:
            means = await service.encode_mean(np.stack([image for _, image in to_encode]))
            for (side, _), mu in zip(to_encode, means, strict=True):
                ends[side] = mu
        result = await service.interpolate(ends["start"], ends["end"], steps, method)
        if answer == GIF:
            return Response(png.encode_gif(result.images, service.image_shape), media_type=GIF)
        payload = {"z": result.z, "images": result.images}
        return _images_answer(answer, payload, result.images, service.image_shape, strip=True)


def document_model_names(names: Callable[[], list[str]]) -> Callable[[dict[str, Any]], None]:
    """An OpenAPI patch: `{model}` lists the served models (once they are loaded)."""

    def patch(doc: dict[str, Any]) -> None:
        served = names()
        if served:
            set_path_parameter_enums(doc, {MODEL_PARAM: sorted(served)})

    return patch
