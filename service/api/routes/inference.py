"""/encode, /decode, /sample, /interpolate: parse -> call the runtime -> encode the answer.

Request bodies are read raw and parsed with orjson into numpy (no per-element pydantic
validation); the pydantic models in `service.api.schemas` only document them in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.params import Depends
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.api import schemas
from service.api.codecs import json as jsonc
from service.api.codecs import json_rows, npy, png
from service.api.errors import invalid
from service.api.negotiation import GIF, JSON, NPY, PNG, RAW, negotiate
from service.api.readiness import require_service
from service.config import Settings
from service.runtime.interpolation import METHODS
from service.runtime.service import MAX_SEED, VAEService

ARRAYS_HEADER = "X-Arrays"
SEED_HEADER = "X-Seed"
_SEED_DESCRIPTION = "Seed for binary (npy / octet-stream) bodies; a `seed` in a JSON body wins."
# `?seed=` is read by hand: a FastAPI query parameter costs its dependency solving on every
# request, a measurable share of a one-image /encode. Documented as FastAPI would.
SEED_QUERY_DOC: dict[str, Any] = {
    "name": "seed",
    "in": "query",
    "required": False,
    "schema": {
        "description": _SEED_DESCRIPTION,
        "title": "Seed",
        "type": "integer",
        "maximum": MAX_SEED,
        "minimum": 0,
        "nullable": True,
    },
    "description": _SEED_DESCRIPTION,
}


def _query_seed(request: Request) -> int | None:
    if not request.scope.get("query_string"):
        return None
    raw = request.query_params.get("seed")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            "seed", f"must be an integer from 0 to {MAX_SEED}; got {raw[:40]!r}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise invalid("seed", f"must be an integer from 0 to {MAX_SEED}; got {value}")
    return value


async def _read(
    request: Request, bodies: tuple[str, ...], answers: tuple[str, ...]
) -> tuple[str, str, bytes, VAEService]:
    """Negotiate first (415/406 cost nothing), then read the body: media, answer, body, service."""
    media, answer = negotiate(request, bodies, answers)
    return media, answer, await _body(request), require_service(request)


async def _body(request: Request) -> bytes:
    # Request.body() costs ~7 us more per request (its async generator); joining a single
    # chunk returns that chunk itself, so a one-message body is never copied.
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
    answer: str, payload: dict[str, Any], images: np.ndarray, *, strip: bool
) -> Response:
    if answer == PNG:
        return Response(png.encode_png(images, strip=strip), media_type=PNG)
    if answer == NPY:
        return Response(npy.write_npy(images), media_type=NPY, headers={ARRAYS_HEADER: "images"})
    return _json(payload)


def _binary_rows(
    request: Request, media: str, body: bytes, field: str, width: int, limit: int
) -> np.ndarray:
    arr = (
        npy.read_npy(body, field)
        if media == NPY
        else npy.read_raw(body, request.headers.get(npy.SHAPE_HEADER), field)
    )
    shape = list(arr.shape)
    side = png.IMAGE_SIDE
    if field == "images" and arr.ndim in (2, 3) and arr.shape[-2:] == (side, side):
        arr = arr.reshape(-1, width)  # one 28x28 image, or n of them
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        also = f" or (n, {side}, {side})" if field == "images" else ""
        raise invalid(field, f"array must have shape (n, {width}){also}; got {shape}")
    if arr.shape[0] < 1:
        raise invalid(field, "must not be empty")
    if arr.shape[0] > limit:
        raise invalid(field, f"at most {limit} items per request; got {arr.shape[0]}")
    if field == "images":
        jsonc.check_unit_range(arr, field)
    else:
        jsonc.check_finite(arr, field)
    return arr


# The parsed JSON (a Python float object per number: ~1.6 MB for 64 images) must not live
# while a request awaits inference: with many requests in flight it would multiply the
# worker's memory. These parse and convert in one go, and keep only the numpy arrays.


def _encode_json(body: bytes, seed: int | None, limit: int) -> tuple[np.ndarray, int | None]:
    fast = json_rows.parse_rows(
        body, "images", jsonc.IMAGE_SIZE, limit, frozenset({"seed"}), unit_range=True
    )
    if fast is not None:
        images, ints = fast
        body_seed = ints.get("seed")
        if body_seed is None:
            return images, seed
        if 0 <= body_seed <= MAX_SEED:
            return images, body_seed
    obj = jsonc.parse_object(body)
    jsonc.reject_unknown(obj, frozenset({"images", "seed"}))
    numbers = jsonc.numbers_only(body, obj)
    images = jsonc.images_from_json(obj, "images", limit, numbers=numbers)
    return images, jsonc.optional_int_field(obj, "seed", default=seed, lo=0, hi=MAX_SEED)


def _decode_json(body: bytes, latent_dim: int, limit: int) -> np.ndarray:
    fast = json_rows.parse_rows(body, "z", latent_dim, limit)
    if fast is not None:
        return fast[0]
    obj = jsonc.parse_object(body)
    jsonc.reject_unknown(obj, frozenset({"z"}))
    return jsonc.latents_from_json(obj, "z", latent_dim, limit)


def add_inference_routes(
    router: APIRouter, settings: Settings, dependencies: Sequence[Depends]
) -> None:
    """Registered on the app's own router: see `service.app` for why not `include_router`."""
    common: dict[str, Any] = {"tags": ["model"], "dependencies": dependencies}

    @router.post(
        "/encode",
        **common,
        name="encode",
        summary="Encode images to latent distributions",
        openapi_extra={"parameters": [SEED_QUERY_DOC]},
    )
    async def encode(request: Request) -> Response:
        """`{"images": [...], "seed": int?}` -> `{"mu", "sigma", "z", "seed"}` with
        z = mu + sigma * w, w ~ N(0, I) drawn from `seed` (the seed used is always returned).

        Binary: send `application/x-npy` (or raw float32 `application/octet-stream` with
        `X-Array-Shape: n,784`); `Accept: application/x-npy` answers one array of shape
        (3, n, d) stacking mu, sigma and z (`X-Arrays: mu,sigma,z`)."""
        seed = _query_seed(request)
        media, answer, body, service = await _read(request, (JSON, NPY, RAW), (JSON, NPY))
        if media == JSON:
            images, seed = _encode_json(body, seed, settings.max_images)
        else:
            images = _binary_rows(
                request, media, body, "images", service.image_size, settings.max_images
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

    @router.post("/decode", **common, name="decode", summary="Decode latents to images")
    async def decode(request: Request) -> Response:
        """`{"z": [[d numbers], ...]}` -> `{"images": [[784 numbers], ...]}`.

        `Accept: image/png` answers one PNG (a grid when several); binary bodies and answers
        as for /encode."""
        media, answer, body, service = await _read(request, (JSON, NPY, RAW), (JSON, PNG, NPY))
        if media == JSON:
            z = _decode_json(body, service.latent_dim, settings.max_images)
        else:
            z = _binary_rows(request, media, body, "z", service.latent_dim, settings.max_images)
        images = await service.decode(z)
        return _images_answer(answer, {"images": images}, images, strip=False)

    @router.post("/sample", **common, name="sample", summary="Generate images from random latents")
    async def sample(request: Request) -> Response:
        """`{"n": int, "seed": int?, "temperature": float? = 1}` -> `{"z", "images", "seed"}`
        with z ~ N(0, temperature^2 I). `Accept: image/png` answers a grid."""
        _, answer, body, service = await _read(request, (JSON,), (JSON, PNG, NPY))
        obj = jsonc.parse_object(body)
        jsonc.reject_unknown(obj, frozenset({"n", "seed", "temperature"}))
        n = jsonc.int_field(obj, "n", default=schemas.DEFAULT_N, lo=1, hi=settings.max_n)
        seed = jsonc.optional_int_field(obj, "seed", default=None, lo=0, hi=MAX_SEED)
        temperature = jsonc.float_field(
            obj,
            "temperature",
            default=schemas.DEFAULT_TEMPERATURE,
            lo=0.0,
            hi=schemas.MAX_TEMPERATURE,
        )
        result = await service.sample(n, seed=seed, temperature=temperature)
        payload = {"z": result.z, "images": result.images, "seed": result.seed}
        response = _images_answer(answer, payload, result.images, strip=False)
        response.headers[SEED_HEADER] = str(result.seed)
        return response

    @router.post(
        "/interpolate",
        **common,
        name="interpolate",
        summary="Walk the latent space between two points",
    )
    async def interpolate(request: Request) -> Response:
        """`{"start": image | "start_z": [d], "end": image | "end_z": [d], "steps": int >= 2,
        "method": "linear" | "slerp"}` -> `{"z": [[d] x steps], "images": [...]}`. Image
        endpoints are encoded to their means first. `Accept: image/png` answers a strip,
        `Accept: image/gif` an animated GIF with one frame per step."""
        _, answer, body, service = await _read(request, (JSON,), (JSON, PNG, GIF, NPY))
        obj = jsonc.parse_object(body)
        jsonc.reject_unknown(
            obj, frozenset({"start", "start_z", "end", "end_z", "steps", "method"})
        )
        steps = jsonc.int_field(
            obj, "steps", default=schemas.DEFAULT_STEPS, lo=2, hi=settings.max_steps
        )
        method = obj.get("method", schemas.DEFAULT_METHOD)
        if not isinstance(method, str) or method not in METHODS:
            known = ", ".join(sorted(METHODS))
            raise invalid("method", f"unknown method {jsonc.describe(method)}; use one of: {known}")
        ends: dict[str, np.ndarray] = {}
        to_encode: list[tuple[str, np.ndarray]] = []
        budget = png.PixelBudget()
        for side in ("start", "end"):
            has_image, has_z = side in obj, f"{side}_z" in obj
            if has_image == has_z:
                which = "both" if has_image else "neither"
                raise invalid(
                    side, f"give exactly one of `{side}` (an image) or `{side}_z`; got {which}"
                )
            if has_z:
                ends[side] = jsonc.latent_from_json(
                    obj[f"{side}_z"], f"{side}_z", service.latent_dim
                )
            else:
                to_encode.append((side, jsonc.image_from_json(obj[side], side, budget)))
        if to_encode:
            means = await service.encode_mean(np.stack([image for _, image in to_encode]))
            for (side, _), mu in zip(to_encode, means, strict=True):
                ends[side] = mu
        result = await service.interpolate(ends["start"], ends["end"], steps, method)
        if answer == GIF:
            return Response(png.encode_gif(result.images), media_type=GIF)
        return _images_answer(
            answer, {"z": result.z, "images": result.images}, result.images, strip=True
        )
