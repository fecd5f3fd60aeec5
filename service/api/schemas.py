"""Pydantic models of the request and response bodies, with OpenAPI examples.

The request models are the one declaration of every field, type, bound and nullability:
OpenAPI renders them, and the readers take their rules from them (`service.api.request_rules`);
limits come from the settings.
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Le
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from service.config import Settings
from service.runtime.interpolation import METHODS
from service.runtime.service import MAX_SEED
from vae_manifest.scoring import DEFAULT_SAMPLES

# The prior is N(0, I): a latent coordinate beyond this bound is no latent the model has seen
# (and values near float32's limit overflow inside the decoder).
LATENT_BOUND = 1000.0
MAX_SCORE_SAMPLES = 32  # k x images rows are decoded per request
Pixel = Annotated[float, Ge(0.0), Le(1.0)]
Latent = Annotated[float, Ge(-LATENT_BOUND), Le(LATENT_BOUND)]
ImageJSON = list[Pixel] | list[list[Pixel]] | str
# The runtime's interpolation methods, as the one Literal the request accepts.
Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]
IMAGE_DOC = (
    "A grayscale image in [0, 1] of the model's shape H x W (`GET /model`: "
    "`manifest.image_shape`; 28x28 for the default MNIST model, white digit on black): a flat "
    "list of H*W numbers, a nested HxW list, or a base64 PNG string (any size and mode; "
    "converted to 8-bit grayscale HxW)."
)


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. `invalid_value`.")
    message: str = Field(description="What is wrong, for people.")
    field: str | None = Field(None, description="The offending field, e.g. `images[3]`.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class EncodeResponse(BaseModel):
    mu: list[list[float]] = Field(description="Posterior means, (n, d).")
    sigma: list[list[float]] = Field(description="Posterior standard deviations, (n, d).")
    z: list[list[float]] = Field(description="One sample z = mu + sigma * w per image, (n, d).")
    seed: int = Field(description="The seed w was drawn from (send it back to reproduce z).")


class ImagesResponse(BaseModel):
    images: list[list[float]] = Field(description="Images as flat lists of H*W numbers in [0, 1].")


class SampleResponse(BaseModel):
    z: list[list[float]] = Field(description="The latents drawn, (n, d).")
    images: list[list[float]] = Field(description="Their decoded images, (n, H*W).")
    seed: int = Field(description="The seed used.")


class ScoreResponse(BaseModel):
    neg_elbo: list[float] = Field(
        description="The model's own loss per image (reconstruction + KL, in its training "
        "units), the mean over the k draws: higher is more unusual."
    )
    iwae: list[float] | None = Field(
        description="The importance-weighted bound per image with k draws (k > 1; null for k = 1)."
    )
    percentile: list[float] | None = Field(
        description="Where each neg_elbo falls among held-out real digits' (0-100; null when the "
        "model has no calibration)."
    )
    outlier: list[bool] | None = Field(
        description="neg_elbo above the threshold (null without a calibration)."
    )
    threshold: float | None = Field(
        description="The calibration's neg_elbo at VAE_OUTLIER_QUANTILE (default the 99th "
        "percentile)."
    )
    seed: int = Field(description="The seed of the draws (send it back to reproduce).")
    samples: int = Field(description="The draws per image used (k).")


class InterpolateResponse(BaseModel):
    z: list[list[float]] = Field(description="The path through latent space, (steps, d).")
    images: list[list[float]] = Field(description="The decoded path, (steps, H*W).")


def request_models(settings: Settings) -> dict[str, type[BaseModel]]:
    """Request body models with the configured limits baked into their schemas."""

    class EncodeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        images: list[ImageJSON] = Field(
            min_length=1,
            max_length=settings.max_images,
            description=f"1 to {settings.max_images} images. {IMAGE_DOC}",
        )
        seed: int | None = Field(
            None, ge=0, le=MAX_SEED, description="Seed for the noise w (random when absent)."
        )

    class DecodeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        z: list[list[Latent]] = Field(
            min_length=1,
            max_length=settings.max_images,
            description=f"1 to {settings.max_images} latent vectors of d numbers each "
            "(d: see GET /model).",
        )

    class SampleRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int = Field(1, ge=1, le=settings.max_n, description="How many images to generate.")
        seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed (random when absent).")
        temperature: float = Field(
            1.0,
            ge=0,
            le=10.0,
            description="z ~ N(0, temperature^2 I).",
        )

    class InterpolateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        start: ImageJSON | None = Field(
            None, description=f"Start image (or give `start_z`). {IMAGE_DOC}"
        )
        start_z: list[Latent] | None = Field(
            None, description="Start latent of d numbers (or give `start`)."
        )
        end: ImageJSON | None = Field(None, description="End image (or give `end_z`).")
        end_z: list[Latent] | None = Field(
            None, description="End latent of d numbers (or give `end`)."
        )
        steps: int = Field(
            10,
            ge=2,
            le=settings.max_steps,
            description="Points on the path, both ends included.",
        )
        method: Method = Field("linear", description="Linear or spherical interpolation.")

    class ScoreRequest(EncodeRequest):  # the images and seed of /encode, and:
        samples: int = Field(
            DEFAULT_SAMPLES,
            ge=1,
            le=MAX_SCORE_SAMPLES,
            description="Draws of z per image (k): the Monte-Carlo ELBO's and the IWAE bound's.",
        )

    return {
        "EncodeRequest": EncodeRequest,
        "ScoreRequest": ScoreRequest,
        "DecodeRequest": DecodeRequest,
        "SampleRequest": SampleRequest,
        "InterpolateRequest": InterpolateRequest,
    }


def digit_one(shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """A hand-made '1' in [0, 1] for examples, drawn at 28x28 and resized to `shape`."""
    img = np.zeros((28, 28), dtype=np.float32)
    img[5:23, 13:16] = 1.0
    img[6:9, 11:13] = 0.6
    img[22:24, 10:19] = 1.0
    return _resized(img, shape)


def digit_zero(shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    r = np.sqrt(((yy - 14) / 9.0) ** 2 + ((xx - 14) / 6.0) ** 2)
    return _resized(np.clip(1.0 - np.abs(r - 1.0) * 5.0, 0.0, 1.0).astype(np.float32), shape)


def _resized(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if img.shape == shape:
        return img
    pixels = Image.fromarray((img * 255).round().astype(np.uint8), mode="L")
    resized = pixels.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def png_base64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _rounded(values: np.ndarray) -> list[Any]:
    return np.round(values, 2).tolist()


def request_examples(
    latent_dim: int, image_shape: tuple[int, int] = (28, 28)
) -> dict[str, dict[str, dict[str, Any]]]:
    """OpenAPI `examples` per route, valid for a model of this latent dimension and shape."""
    one, zero = digit_one(image_shape), digit_zero(image_shape)
    height, width = image_shape
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, latent_dim)).astype(np.float32)
    return {
        "encode": {
            "base64_png": {
                "summary": "One base64 PNG image",
                "value": {"images": [png_base64(one)], "seed": 0},
            },
            "two_png": {
                "summary": "Two base64 PNG images",
                "value": {"images": [png_base64(one), png_base64(zero)], "seed": 42},
            },
            "nested": {
                "summary": f"A nested {height}x{width} list",
                "value": {"images": [_rounded(zero)], "seed": 1},
            },
            "flat": {
                "summary": f"A flat list of {height * width} numbers",
                "value": {"images": [_rounded(one.reshape(-1))]},
            },
        },
        "score": {
            "digit": {
                "summary": "A digit, 4 draws",
                "value": {"images": [png_base64(one)], "seed": 0, "samples": 4},
            },
            "noise": {
                "summary": "A digit and uniform noise (the noise scores far higher)",
                "value": {
                    "images": [
                        _rounded(one.reshape(-1)),
                        _rounded(rng.random(height * width)),
                    ],
                    "seed": 0,
                },
            },
        },
        "decode": {
            "origin": {
                "summary": "The origin of latent space",
                "value": {"z": [[0.0] * latent_dim]},
            },
            "two": {"summary": "Two latents", "value": {"z": [_rounded(z1), _rounded(z2)]}},
        },
        "sample": {
            "sixteen": {
                "summary": "16 images, seeded",
                "value": {"n": 16, "seed": 0, "temperature": 1.0},
            },
            "cool": {
                "summary": "Low temperature",
                "value": {"n": 4, "seed": 7, "temperature": 0.5},
            },
        },
        "interpolate": {
            "images": {
                "summary": "Between two images (slerp)",
                "value": {
                    "start": png_base64(one),
                    "end": png_base64(zero),
                    "steps": 10,
                    "method": "slerp",
                },
            },
            "latents": {
                "summary": "Between two latents (linear)",
                "value": {
                    "start_z": _rounded(z1),
                    "end_z": _rounded(z2),
                    "steps": 8,
                    "method": "linear",
                },
            },
        },
    }
