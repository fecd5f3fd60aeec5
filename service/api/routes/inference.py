"""/encode, /decode, /sample, /interpolate: parse -> call the runtime -> encode the answer.

Request bodies are read raw and parsed with orjson into numpy (no per-element pydantic
validation); the pydantic models in `service.api.schemas` only document them in OpenAPI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.api.codecs import json as jsonc
from service.api.codecs import npy, png
from service.api.errors import invalid
from service.api.negotiation import GIF, JSON, NPY, PNG, RAW, answer_type, body_type
from service.config import Settings
from service.runtime.errors import ModelNotReady
from service.runtime.interpolation import METHODS
from service.runtime.service import MAX_SEED, VAEService

MAX_TEMPERATURE = 10.0
ARRAYS_HEADER = "X-Arrays"
SEED_HEADER = "X-Seed"


def _service(request: Request) -> VAEService:
    service: VAEService | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise ModelNotReady("the model is still loading; retry when /readyz answers 200")
    return service


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
    if field == "images" and arr.ndim >= 2 and arr.shape[-2:] == (28, 28):
        arr = arr.reshape(*arr.shape[:-2], width)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise invalid(field, f"array must have shape (n, {width}); got {list(arr.shape)}")
    if arr.shape[0] < 1:
        raise invalid(field, "must not be empty")
    if arr.shape[0] > limit:
        raise invalid(field, f"at most {limit} items per request; got {arr.shape[0]}")
    if field == "images":
        jsonc.check_unit_range(arr, field)
    else:
        jsonc.check_finite(arr, field)
    return arr


def build_inference_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["model"])
    seed_query = Query(
        None,
        ge=0,
        le=MAX_SEED,
        description="Seed for binary (npy / octet-stream) bodies; JSON bodies carry `seed` inside.",
    )

    @router.post("/encode", name="encode", summary="Encode images to latent distributions")
    async def encode(request: Request, seed: int | None = seed_query) -> Response:
        """`{"images": [...], "seed": int?}` -> `{"mu", "sigma", "z", "seed"}` with
        z = mu + sigma * w, w ~ N(0, I) drawn from `seed` (the seed used is always returned).

        Binary: send `application/x-npy` (or raw float32 `application/octet-stream` with
        `X-Array-Shape: n,784`); `Accept: application/x-npy` answers one array of shape
        (3, n, d) stacking mu, sigma and z (`X-Arrays: mu,sigma,z`)."""
        media = body_type(request, (JSON, NPY, RAW))
        answer = answer_type(request, (JSON, NPY))
        body = await request.body()
        service = _service(request)
        if media == JSON:
            obj = jsonc.parse_object(body)
            jsonc.reject_unknown(obj, frozenset({"images", "seed"}))
            images = jsonc.images_from_json(obj, "images", settings.max_images)
            seed = jsonc.int_field(obj, "seed", default=None, lo=0, hi=MAX_SEED)
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

    @router.post("/decode", name="decode", summary="Decode latents to images")
    async def decode(request: Request) -> Response:
        """`{"z": [[d numbers], ...]}` -> `{"images": [[784 numbers], ...]}`.

        `Accept: image/png` answers one PNG (a grid when several); binary bodies and answers
        as for /encode."""
        media = body_type(request, (JSON, NPY, RAW))
        answer = answer_type(request, (JSON, PNG, NPY))
        body = await request.body()
        service = _service(request)
        if media == JSON:
            obj = jsonc.parse_object(body)
            jsonc.reject_unknown(obj, frozenset({"z"}))
            z = jsonc.latents_from_json(obj, "z", service.latent_dim, settings.max_images)
        else:
            z = _binary_rows(request, media, body, "z", service.latent_dim, settings.max_images)
        images = await service.decode(z)
        return _images_answer(answer, {"images": images}, images, strip=False)

    @router.post("/sample", name="sample", summary="Generate images from random latents")
    async def sample(request: Request) -> Response:
        """`{"n": int, "seed": int?, "temperature": float? = 1}` -> `{"z", "images", "seed"}`
        with z ~ N(0, temperature^2 I). `Accept: image/png` answers a grid."""
        body_type(request, (JSON,))
        answer = answer_type(request, (JSON, PNG, NPY))
        body = await request.body()
        service = _service(request)
        obj = jsonc.parse_object(body)
        jsonc.reject_unknown(obj, frozenset({"n", "seed", "temperature"}))
        n = jsonc.int_field(obj, "n", default=1, lo=1, hi=settings.max_n)
        seed = jsonc.int_field(obj, "seed", default=None, lo=0, hi=MAX_SEED)
        temperature = jsonc.float_field(obj, "temperature", default=1.0, lo=0.0, hi=MAX_TEMPERATURE)
        result = await service.sample(int(n or 1), seed=seed, temperature=temperature)
        payload = {"z": result.z, "images": result.images, "seed": result.seed}
        response = _images_answer(answer, payload, result.images, strip=False)
        response.headers[SEED_HEADER] = str(result.seed)
        return response

    @router.post(
        "/interpolate", name="interpolate", summary="Walk the latent space between two points"
    )
    async def interpolate(request: Request) -> Response:
        """`{"start": image | "start_z": [d], "end": image | "end_z": [d], "steps": int >= 2,
        "method": "linear" | "slerp"}` -> `{"z": [[d] x steps], "images": [...]}`. Image
        endpoints are encoded to their means first. `Accept: image/png` answers a strip,
        `Accept: image/gif` an animated GIF with one frame per step."""
        body_type(request, (JSON,))
        answer = answer_type(request, (JSON, PNG, GIF, NPY))
        body = await request.body()
        service = _service(request)
        obj = jsonc.parse_object(body)
        jsonc.reject_unknown(
            obj, frozenset({"start", "start_z", "end", "end_z", "steps", "method"})
        )
        steps = jsonc.int_field(obj, "steps", default=10, lo=2, hi=settings.max_steps)
        method = obj.get("method", "linear")
        if not isinstance(method, str) or method not in METHODS:
            raise invalid(
                "method", f"unknown method {method!r}; use one of: {', '.join(sorted(METHODS))}"
            )
        ends: dict[str, np.ndarray] = {}
        to_encode: list[tuple[str, np.ndarray]] = []
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
                to_encode.append((side, jsonc.image_from_json(obj[side], side)))
        if to_encode:
            means = await service.encode_mean(np.stack([image for _, image in to_encode]))
            for (side, _), mu in zip(to_encode, means, strict=True):
                ends[side] = mu
        result = await service.interpolate(ends["start"], ends["end"], int(steps or 2), method)
        if answer == GIF:
            return Response(png.encode_gif(result.images), media_type=GIF)
        return _images_answer(
            answer, {"z": result.z, "images": result.images}, result.images, strip=True
        )

    return router
