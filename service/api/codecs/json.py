"""JSON <-> numpy: orjson parsing straight into float32 arrays, vectorised validation.

Every field's bounds, default and nullability come from its `FieldRule`, read off the request
model that declares it (`service.api.request_rules`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from service.api.codecs import png
from service.api.codecs.arrays import NUMERIC_KINDS, as_float32
from service.api.errors import ApiError, invalid
from service.api.request_rules import FieldRule, RequestRules

# Longest piece of a client's value quoted back in an error message.
_QUOTE_CHARS = 40


def parse_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not.

    JSON booleans are not numbers, but numpy reads `[true, 0.5]` as `[1.0, 0.5]`; lists holding
    one are refused here (looked for only when the body spells `true` or `false` somewhere).
    """
    if not body:
        raise ApiError(400, "malformed_json", "request body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = " (NaN and Infinity are not valid JSON numbers)"
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc}{hint}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", "the JSON body must be an object")
    if _may_hold_booleans(body):
        _reject_booleans_in_lists(value)
    return value


def _may_hold_booleans(body: bytes) -> bool:
    # A one-byte search is a memchr, far faster than looking for the words in a big body of
    # numbers (which holds neither letter), so the words are only looked for when it can pay.
    return (b"r" in body and b"true" in body) or (b"l" in body and b"false" in body)


def _reject_booleans_in_lists(obj: dict[str, Any]) -> None:
    for key, value in obj.items():
        if not isinstance(value, list):
            continue  # a boolean scalar gets its field's own "must be ..." message
        for i, item in enumerate(value):
            if _holds_boolean(item):
                raise invalid(
                    f"{key}[{i}]" if isinstance(item, list) else key,
                    "must hold numbers, not booleans",
                )


def _holds_boolean(value: Any) -> bool:
    # Iterative: orjson allows nesting deeper than Python's recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def dumps(payload: dict[str, Any]) -> bytes:
    """Serialise a response; numpy arrays are written by orjson directly (no `tolist()`)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def describe(value: Any) -> str:
    """A short description of a client's JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return repr(value)[:_QUOTE_CHARS]
    if isinstance(value, str):
        return repr(value[:_QUOTE_CHARS])
    return "an object" if isinstance(value, dict) else "a list"


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])


def _item(field: str, row: int, rows: bool) -> str:
    return f"{field}[{row}]" if rows else field


def check_finite(arr: np.ndarray, field: str, *, rows: bool = True) -> None:
    """`arr` rows are items; name the first item holding NaN or +-Infinity (`rows=False`:
    `arr` is one item, named `field` itself)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        raise invalid(_item(field, _first_bad_row(bad), rows), "values must be finite numbers")


# IEEE 754 bit patterns read as unsigned integers keep the order of non-negative floats, and
# put negatives (sign bit), infinities and NaNs above the pattern of 1.0: one pass over the
# integers proves "all in [0, 1]". Only -0.0 fails it while valid; the float check takes it.
_UNIT_BITS = {
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
}


def in_unit_range(arr: np.ndarray) -> bool:
    """All values in [0, 1] (NaN fails: min and max are NaN when any value is)."""
    if not arr.size:
        return False
    bits = _UNIT_BITS.get(arr.dtype)
    if bits is not None and arr.flags.c_contiguous:
        # argmax, not max: the same speed on big arrays and faster on small ones (ufunc
        # reductions pay a set-up that dominates a one-image request).
        ints = arr.reshape(-1).view(bits[0])
        if ints[ints.argmax()] <= bits[1]:
            return True
    return bool(arr.min() >= 0.0 and arr.max() <= 1.0)


def check_within(arr: np.ndarray, rule: FieldRule, field: str, *, rows: bool = True) -> None:
    """Finite, and within the bounds `rule` declares for its items (`rows`: see
    `check_finite`)."""
    lo, hi = rule.item_lo, rule.item_hi
    # The bit-pattern check proves the common case for pixels; the slower ones below only
    # name the problem.
    if (lo, hi) == (0.0, 1.0) and in_unit_range(arr):
        return
    check_finite(arr, field, rows=rows)
    bad = np.zeros(arr.shape, bool)
    if lo is not None:
        bad |= arr < lo
    if hi is not None:
        bad |= arr > hi
    if bad.any():
        row = _first_bad_row(bad)
        value = float(arr.reshape(arr.shape[0], -1)[row][bad.reshape(arr.shape[0], -1)[row]][0])
        raise invalid(
            _item(field, row, rows),
            f"values must be within [{_number(lo)}, {_number(hi)}]; found {value:g}",
        )


def numbers_only(body: bytes, obj: dict[str, Any]) -> bool:
    """True when the parsed body `obj` holds no strings and no nulls below its keys: every
    `"` of `body` then belongs to a key (escaped quotes only occur inside strings)."""
    # find() of one byte is a memchr: faster here than count() or a search for "null".
    keys_quotes, quotes = 2 * len(obj), 0
    at = body.find(b'"')
    while at >= 0:
        quotes += 1
        if quotes > keys_quotes:
            return False
        at = body.find(b'"', at + 1)
    return quotes == keys_quotes and (b"n" not in body or b"null" not in body)


def _numeric_or_none(value: list[Any], *, numbers: bool = False) -> np.ndarray | None:
    """`value` as one numeric numpy array, or None when it is ragged or holds non-numbers.

    `numbers`: the caller knows the lists hold only numbers (see `numbers_only`), so numpy is
    told the dtype instead of discovering it, which is faster; anything else (a nested object, a
    ragged list) still makes numpy raise.
    """
    try:
        arr = np.array(value, dtype=np.float64) if numbers else np.asarray(value)
    except (ValueError, TypeError):
        return None
    return arr if arr.dtype.kind in NUMERIC_KINDS else None


def _numeric(value: list[Any], field: str) -> np.ndarray:
    arr = _numeric_or_none(value)
    if arr is None:
        raise invalid(field, "must be a rectangular array of numbers only")
    return as_float32(arr)


def _list_field(body: dict[str, Any], rule: FieldRule) -> list[Any]:
    field = rule.name
    if field not in body:
        raise invalid(field, "is required")
    value = body[field]
    if not isinstance(value, list):
        raise invalid(field, f"must be a list; got {describe(value)}")
    if rule.min_items is not None and len(value) < rule.min_items:
        raise invalid(field, "must not be empty" if not value else f"at least {rule.min_items}")
    if rule.max_items is not None and len(value) > rule.max_items:
        raise invalid(field, f"at most {rule.max_items} items per request; got {len(value)}")
    return value


def image_from_json(
    value: Any,
    rule: FieldRule,
    budget: png.PixelBudget,
    shape: png.ImageShape,
    field: str | None = None,
) -> np.ndarray:
    """One image: a flat list of H*W numbers, a nested HxW list, or a base64 image string
    (resized to `shape`) -> (H*W,), within `rule`'s item bounds; encoded images spend from the
    request's pixel `budget` (`field`: its name in messages, the rule's by default)."""
    field = field or rule.name
    height, width = shape
    if isinstance(value, str):
        return png.decode_base64_image(value, field, budget, shape)
    if not isinstance(value, list):
        raise invalid(
            field,
            f"an image is a list of {height * width} numbers, a {height}x{width} list "
            "or a base64 PNG",
        )
    arr = _numeric(value, field)
    if arr.shape not in ((height * width,), shape):
        raise invalid(
            field,
            f"an image must be {height * width} numbers or {height}x{width} nested lists; "
            f"got shape {list(arr.shape)}",
        )
    flat = arr.reshape(1, height * width)
    check_within(flat, rule, field, rows=False)
    return flat[0]


def images_from_json(
    body: dict[str, Any], rule: FieldRule, shape: png.ImageShape, *, numbers: bool = False
) -> np.ndarray:
    """The list under `rule`'s field as (n, H*W) float32 in [0, 1] (`numbers`: see
    `numbers_only`)."""
    field = rule.name
    items = _list_field(body, rule)
    n = len(items)
    size = shape[0] * shape[1]
    if all(isinstance(item, list) for item in items):
        # Fast path: one numpy conversion for the whole batch, vectorised checks.
        arr = _numeric_or_none(items, numbers=numbers)
        if arr is not None and arr.shape in ((n, size), (n, *shape)):
            out = as_float32(arr.reshape(n, size))
            check_within(out, rule, field)
            return out
    # Slow path: mixed formats, or an error to locate item by item.
    budget = png.PixelBudget()
    return np.stack(
        [
            image_from_json(item, rule, budget, shape, f"{field}[{i}]")
            for i, item in enumerate(items)
        ]
    )


def latents_from_json(body: dict[str, Any], rule: FieldRule, latent_dim: int) -> np.ndarray:
    """The list under `rule`'s field as (n, latent_dim) float32, finite."""
    field = rule.name
    items = _list_field(body, rule)
    arr = _numeric_or_none(items)
    if arr is not None and arr.shape == (len(items), latent_dim):
        out = as_float32(arr)
        check_within(out, rule, field)
        return out
    # Slow path: find the first bad item and say what is wrong with it.
    for i, item in enumerate(items):
        latent_from_json(item, rule, latent_dim, f"{field}[{i}]")
    raise invalid(field, f"must be a list of lists of {latent_dim} numbers")


def latent_from_json(
    value: Any, rule: FieldRule, latent_dim: int, field: str | None = None
) -> np.ndarray:
    """One latent vector -> (latent_dim,), within `rule`'s item bounds (`field`: its name in
    messages, the rule's by default)."""
    field = field or rule.name
    if not isinstance(value, list):
        raise invalid(field, f"must be a list of {latent_dim} numbers; got {describe(value)}")
    arr = _numeric(value, field)
    if arr.shape != (latent_dim,):
        raise invalid(field, f"must be a list of {latent_dim} numbers; got shape {list(arr.shape)}")
    check_within(arr.reshape(1, -1), rule, field, rows=False)
    return arr


def _number(value: float | None) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range(rule: FieldRule) -> str:
    return f"from {_number(rule.lo)} to {_number(rule.hi)}"


def _value(body: dict[str, Any], rule: FieldRule) -> Any:
    """The client's value, or the declared default when absent (or null, where allowed)."""
    value = body.get(rule.name)
    if value is None and (rule.nullable or rule.name not in body):
        return rule.default
    return value


def int_field(body: dict[str, Any], rule: FieldRule) -> int | None:
    """An integer within the rule's bounds, or its default."""
    value = _value(body, rule)
    if value is None and rule.nullable:
        return None
    field = rule.name
    # JSON floats such as 3.0 are not integers here; integers beyond 64 bits arrive as floats.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be an integer {_range(rule)}; got {describe(value)}")
    if rule.lo is not None and value < rule.lo:
        raise invalid(field, f"must be >= {_number(rule.lo)}; got {value}")
    if rule.hi is not None and value > rule.hi:
        raise invalid(field, f"must be <= {_number(rule.hi)}; got {value}")
    return value


def float_field(body: dict[str, Any], rule: FieldRule) -> float:
    """A number within the rule's bounds, or its default."""
    value = _value(body, rule)
    field = rule.name
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"must be a number; got {describe(value)}")
    if not (rule.lo is None or rule.lo <= value) or not (rule.hi is None or value <= rule.hi):
        raise invalid(
            field, f"must be between {_number(rule.lo)} and {_number(rule.hi)}; got {value:g}"
        )
    return float(value)


def choice_field(body: dict[str, Any], rule: FieldRule) -> str:
    """One of the rule's choices, or its default."""
    value = _value(body, rule)
    choices = rule.choices or ()
    if not isinstance(value, str) or value not in choices:
        known = ", ".join(sorted(choices))
        raise invalid(rule.name, f"unknown {rule.name} {describe(value)}; use one of: {known}")
    return value


def parse_request(body: bytes, rules: RequestRules) -> dict[str, Any]:
    """The body as a JSON object holding only the fields its request model declares."""
    obj = parse_object(body)
    reject_unknown(obj, rules.names)
    return obj


def reject_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(
            unknown[0][:_QUOTE_CHARS], f"unknown field; allowed: {', '.join(sorted(allowed))}"
        )
