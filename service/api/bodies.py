"""Request bodies -> numpy arrays and values, by the rules of each route's request model.

JSON bodies of the common shape (`{"images": [[H*W numbers], ...], "seed": int}`) take the
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
from service.api.codecs import json_rows, npy
from service.api.codecs.png import ImageShape
from service.api.errors import invalid
from service.api.negotiation import NPY
from service.api.request_rules import FieldRule, RequestRules

# images (n, H*W), and the body's integer fields by name (their defaults when absent)
ImagesBody = tuple[np.ndarray, dict[str, int | None]]
EncodeBody = tuple[np.ndarray, int | None]  # images (n, H*W), the body's seed (None: absent)


def _int_rules(rules: RequestRules) -> tuple[FieldRule, ...]:
    return tuple(rule for name, rule in rules.fields.items() if name != "images")


def images_json_fast(body: bytes, rules: RequestRules, shape: ImageShape) -> ImagesBody | None:
    """`{"images": [...], <integer fields>}` by the simdjson fast path, or None."""
    int_rules = _int_rules(rules)
    fast = json_rows.parse_rows(body, rules["images"], shape[0] * shape[1], int_rules)
    if fast is None:
        return None
    images, ints = fast
    return images, {rule.name: ints.get(rule.name, rule.default) for rule in int_rules}


def images_json_full(body: bytes, rules: RequestRules, shape: ImageShape) -> ImagesBody:
    obj = jsonc.parse_request(body, rules)
    numbers = jsonc.numbers_only(body, obj)
    images = jsonc.images_from_json(obj, rules["images"], shape, numbers=numbers)
    return images, {rule.name: jsonc.int_field(obj, rule) for rule in _int_rules(rules)}


def images_json(body: bytes, rules: RequestRules, shape: ImageShape) -> ImagesBody:
    return images_json_fast(body, rules, shape) or images_json_full(body, rules, shape)


def encode_json_fast(body: bytes, rules: RequestRules, shape: ImageShape) -> EncodeBody | None:
    fast = images_json_fast(body, rules, shape)
    return None if fast is None else (fast[0], fast[1]["seed"])


def encode_json_full(body: bytes, rules: RequestRules, shape: ImageShape) -> EncodeBody:
    images, ints = images_json_full(body, rules, shape)
    return images, ints["seed"]


def encode_json(body: bytes, rules: RequestRules, shape: ImageShape) -> EncodeBody:
    return encode_json_fast(body, rules, shape) or encode_json_full(body, rules, shape)


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
    image_shape: ImageShape | None = None,
) -> np.ndarray:
    """An `.npy` or raw float32 body as (n, width) rows of `field`, held to its rule's count
    and item bounds; images (`image_shape` given) may also come as (H, W) or (n, H, W)."""
    arr = npy.read_npy(body, field) if media == NPY else npy.read_raw(body, shape_header, field)
    shape = list(arr.shape)
    if image_shape is not None and arr.ndim in (2, 3) and arr.shape[-2:] == image_shape:
        arr = arr.reshape(-1, width)  # one image, or n of them
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        also = f" or (n, {image_shape[0]}, {image_shape[1]})" if image_shape else ""
        raise invalid(field, f"array must have shape (n, {width}){also}; got {shape}")
    rule = rules[field]
    if rule.min_items is not None and arr.shape[0] < rule.min_items:
        raise invalid(field, "must not be empty")
    if rule.max_items is not None and arr.shape[0] > rule.max_items:
        raise invalid(field, f"at most {rule.max_items} items per request; got {arr.shape[0]}")
    jsonc.check_within(arr, rule, field)
    return arr
