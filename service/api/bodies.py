"""Request bodies -> numpy arrays and values, by the rules of each route's request model.

JSON bodies of the common shape (`{"images": [[784 numbers], ...], "seed": int}`) take the
simdjson fast path, which answers only when the body is valid and otherwise hands it to the
full path (orjson), the one that names every problem. A property test holds the two to the
same answers.

The parsed JSON (a Python float object per number, megabytes for 64 images) must not live while
a request awaits inference: with many requests in flight it would multiply the worker's
memory. These readers parse and convert in one go, and keep only the numpy arrays.
"""

from __future__ import annotations

import numpy as np

from service.api.codecs import json as jsonc
from service.api.codecs import json_rows, npy, png
from service.api.errors import invalid
from service.api.negotiation import NPY
from service.api.request_rules import RequestRules

EncodeBody = tuple[np.ndarray, int | None]  # images (n, 784), the body's seed (None: absent)


def encode_json_fast(body: bytes, rules: RequestRules) -> EncodeBody | None:
    fast = json_rows.parse_rows(body, rules["images"], jsonc.IMAGE_SIZE, (rules["seed"],))
    if fast is None:
        return None
    images, ints = fast
    return images, ints.get("seed")


def encode_json_full(body: bytes, rules: RequestRules) -> EncodeBody:
    obj = jsonc.parse_request(body, rules)
    images = jsonc.images_from_json(obj, rules["images"], numbers=jsonc.numbers_only(body, obj))
    return images, jsonc.int_field(obj, rules["seed"])


def encode_json(body: bytes, rules: RequestRules) -> EncodeBody:
    return encode_json_fast(body, rules) or encode_json_full(body, rules)


def decode_json_fast(body: bytes, rules: RequestRules, latent_dim: int) -> np.ndarray | None:
    fast = json_rows.parse_rows(body, rules["z"], latent_dim)
    return None if fast is None else fast[0]


def decode_json_full(body: bytes, rules: RequestRules, latent_dim: int) -> np.ndarray:
    obj = jsonc.parse_request(body, rules)
    return jsonc.latents_from_json(obj, rules["z"], latent_dim)


def decode_json(body: bytes, rules: RequestRules, latent_dim: int) -> np.ndarray:
    fast = decode_json_fast(body, rules, latent_dim)
    return fast if fast is not None else decode_json_full(body, rules, latent_dim)


def binary_rows(
    media: str,
    body: bytes,
    shape_header: str | None,
    rules: RequestRules,
    field: str,
    width: int,
) -> np.ndarray:
    """An `.npy` or raw float32 body as (n, width) rows of `field`, held to its rule's count
    and item bounds (images: in [0, 1], and (n, 28, 28) accepted too)."""
    arr = npy.read_npy(body, field) if media == NPY else npy.read_raw(body, shape_header, field)
    shape = list(arr.shape)
    side = png.IMAGE_SIDE
    images = field == "images"
    if images and arr.ndim in (2, 3) and arr.shape[-2:] == (side, side):
        arr = arr.reshape(-1, width)  # one 28x28 image, or n of them
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        also = f" or (n, {side}, {side})" if images else ""
        raise invalid(field, f"array must have shape (n, {width}){also}; got {shape}")
    rule = rules[field]
    if rule.min_items is not None and arr.shape[0] < rule.min_items:
        raise invalid(field, "must not be empty")
    if rule.max_items is not None and arr.shape[0] > rule.max_items:
        raise invalid(field, f"at most {rule.max_items} items per request; got {arr.shape[0]}")
    jsonc.check_within(arr, rule, field)
    return arr
