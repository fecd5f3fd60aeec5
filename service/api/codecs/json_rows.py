"""A fast path for the common JSON body, `{"<field>": [[numbers], ...], "<int field>": int}`.

orjson builds one Python float per number before numpy sees it; simdjson's `as_buffer` hands
every row to numpy as one buffer of raw doubles instead (the README's performance section
has the measured gain).
The path only answers for well-formed, valid bodies and returns None for anything else, so the
full parser in `codecs.json` keeps every error message exactly as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson

from service.api.codecs.json import in_unit_range
from service.api.request_rules import FieldRule

# One parser per process: parsing happens on the event loop thread, and everything a parse
# returns is copied out before the next one (simdjson refuses to reuse a parser otherwise).
_parser = simdjson.Parser()
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BOM = b"\xef\xbb\xbf"


def parse_rows(
    body: bytes,
    rows: FieldRule,
    width: int,
    int_fields: tuple[FieldRule, ...] = (),
) -> tuple[np.ndarray, dict[str, int]] | None:
    """(the `rows` field as (n, width) float32, the integer fields present), or None to use
    the full path. Counts, integers and the rows' values are held to their rules' bounds.
    """
    if not body or body.startswith(_BOM):  # simdjson skips a byte-order mark; orjson refuses it
        return None
    try:
        buffer, n, ints = _read(body, rows, width, {rule.name: rule for rule in int_fields})
    except (ValueError, TypeError, KeyError, RuntimeError):
        return None
    # as_buffer flattens nested lists, so a row holding a list must not reach it: with no
    # nesting a body has exactly one `[` for the field and one per row.
    if buffer is None or not _has_brackets(body, 1 + n):
        return None
    values = np.frombuffer(buffer, np.float64)  # n * width of them: the guard rules out nesting
    if not _within_items(values, rows):
        return None
    return values.astype(np.float32).reshape(n, width), ints


def _within_items(values: np.ndarray, rule: FieldRule) -> bool:
    """Every value within the rule's item bounds (JSON numbers are finite: simdjson refuses
    NaN, Infinity and numbers beyond float64). argmax/argmin, as in in_unit_range."""
    lo, hi = rule.item_lo, rule.item_hi
    if (lo, hi) == (0.0, 1.0):
        return in_unit_range(values)
    if hi is not None and not values[values.argmax()] <= hi:
        return False
    if lo is not None and not values[values.argmin()] >= lo:
        return False
    # Unbounded values must still fit float32, where the full path would make them infinite.
    magnitudes = np.abs(values)
    return (
        bool(magnitudes[magnitudes.argmax()] <= _FLOAT32_MAX) if lo is None or hi is None else True
    )


def _has_brackets(body: bytes, count: int) -> bool:
    """Exactly `count` `[` in `body`. Each find() of one byte is a memchr, cheaper than
    bytes.count or a numpy comparison for bodies of one image and of 64."""
    at = -1
    for _ in range(count):
        at = body.find(b"[", at + 1)
        if at < 0:
            return False
    return body.find(b"[", at + 1) < 0


def _within(value: int, rule: FieldRule) -> bool:
    return (rule.lo is None or value >= rule.lo) and (rule.hi is None or value <= rule.hi)


def _counted(count: int, rule: FieldRule) -> bool:
    return (rule.min_items is None or count >= rule.min_items) and (
        rule.max_items is None or count <= rule.max_items
    )


def _read(
    body: bytes, rows: FieldRule, width: int, int_fields: dict[str, FieldRule]
) -> tuple[Any, int, dict[str, int]]:
    """Every row's numbers as one buffer of doubles (each row checked to hold `width` items;
    None when the body is not of the fast path's shape), the row count, the integer fields."""
    field = rows.name
    doc = _parser.parse(body)
    if type(doc) is not simdjson.Object:
        return None, 0, {}
    items = doc.get(field)
    if type(items) is not simdjson.Array or not _counted(len(items), rows):
        return None, 0, {}
    ints: dict[str, int] = {}
    if len(doc) > 1:
        fields = 0
        for key in doc:  # not items(): that would copy every value into Python lists
            if key == field:
                fields += 1
                continue
            value = doc[key]
            rule = int_fields.get(key)
            if rule is None or type(value) is not int or key in ints or not _within(value, rule):
                # Unknown keys, nulls, wrong types, values out of bounds: the full path names them.
                return None, 0, {}
            ints[key] = value
        if fields > 1:  # simdjson keeps a repeated key's first value, orjson its last
            return None, 0, {}
    for item in items:
        if type(item) is not simdjson.Array or len(item) != width:
            return None, 0, {}
    # One buffer for every row (as_buffer flattens); strings, booleans and nulls make it
    # raise TypeError. The buffer is a copy, so nothing refers to the parser afterwards.
    return items.as_buffer(of_type="d"), len(items), ints
