"""The simdjson fast path answers only for valid, well-formed bodies, and exactly as the full
orjson path would; everything else falls through (None) to the full path and its errors."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service.api.codecs import json as jsonc
from service.api.codecs.json_rows import parse_rows
from service.api.request_rules import FieldRule

SEED = (FieldRule("seed", required=False, default=None, nullable=True, lo=0, hi=2**64 - 1),)


def rows(name: str, max_items: int = 256, bounds: tuple[float, float] | None = None) -> FieldRule:
    lo, hi = bounds or (None, None)
    return FieldRule(
        name,
        required=True,
        default=None,
        nullable=False,
        min_items=1,
        max_items=max_items,
        item_lo=lo,
        item_hi=hi,
    )


IMAGES, Z = rows("images", bounds=(0.0, 1.0)), rows("z")


def _images(n: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).random((n, 784)).round(4).tolist()


@pytest.mark.parametrize("n", [1, 3, 64])
def test_valid_images_match_the_full_path(n):
    body = orjson.dumps({"images": _images(n), "seed": 7})
    fast = parse_rows(body, IMAGES, 784, SEED)
    assert fast is not None
    rows, ints = fast
    full = jsonc.images_from_json(orjson.loads(body), IMAGES, (28, 28))
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, full)
    assert ints == {"seed": 7}


def test_integers_are_numbers_and_latents_need_only_be_finite():
    body = b'{"z": [[0, 1, -2.5, 3e3]]}'
    rows, ints = parse_rows(body, Z, 4)
    np.testing.assert_array_equal(rows, [[0, 1, -2.5, 3000]])
    assert ints == {}


@pytest.mark.parametrize(
    "body",
    [
        # a nested list inside a row: as_buffer would flatten it to the right length
        b'{"z": [[[0.5], 0.5]]}',
        b'{"z": [[true, 0.5]]}',
        b'{"z": [["0.5", 0.5]]}',
        b'{"z": [[null, 0.5]]}',
        b'{"z": [[0.5]]}',  # wrong width
        b'{"z": [[0.5, 0.5], [0.5]]}',
        b'{"z": [[0.5], [0.5, 0.5, 0.5]]}',  # uneven rows with the right total
        b'{"z": []}',
        b'{"z": [0.5, 0.5]}',
        b'{"z": [[1e39, 0.5]]}',  # beyond float32
        b'{"z": [[1e400, 0.5]]}',
        b'{"z": [[NaN, 0.5]]}',
        b'{"z": [[0.5, 0.5]], "extra": 1}',
        b'{"z": [[0.5, 0.5]], "seed": null}',
        b'{"z": [[0.5, 0.5]], "seed": 1.5}',
        # repeated keys: simdjson keeps the first value, the full path (orjson) the last
        b'{"z": [[0.5, 0.5]], "z": "oops"}',
        b'{"z": [[0.5, 0.5]], "seed": 1, "seed": -5}',
        b'\xef\xbb\xbf{"z": [[0.5, 0.5]]}',  # a byte-order mark, which orjson refuses
        b"[[0.5, 0.5]]",
        b'{"z": [[0.5, 0.5]]',
        b"",
    ],
)
def test_anything_unusual_falls_through_to_the_full_path(body):
    assert parse_rows(body, Z, 2, SEED) is None


def test_negative_zero_is_a_valid_pixel_on_both_paths():
    image = [0.5] * 784
    image[3] = -0.0
    body = orjson.dumps({"images": [image]})
    rows, _ = parse_rows(body, IMAGES, 784)
    full = jsonc.images_from_json(orjson.loads(body), IMAGES, (28, 28))
    np.testing.assert_array_equal(rows, full)
    np.testing.assert_array_equal(rows, [image])


def test_images_outside_the_unit_range_fall_through():
    assert parse_rows(b'{"images": [[0.5, 1.5]]}', IMAGES, 2) is None
    assert parse_rows(b'{"images": [[0.5, 1.0]]}', IMAGES, 2) is not None


def test_more_rows_than_the_limit_fall_through():
    assert parse_rows(b'{"z": [[1, 2], [3, 4], [5, 6]]}', rows("z", 2), 2) is None


def test_the_parser_is_reusable_after_every_kind_of_failure():
    for bad in (b'{"z": [[true, 1]]}', b"{", b'{"z": [[1e400, 1]]}', b'{"z": 1}'):
        assert parse_rows(bad, Z, 2) is None
        rows, _ = parse_rows(b'{"z": [[1, 2]]}', Z, 2)
        np.testing.assert_array_equal(rows, [[1, 2]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("values", "inside"),
    [
        ([0.0, 0.5, 1.0], True),
        ([-0.0, 1.0], True),  # fails the bit-pattern pass, the float check accepts it
        ([1e-45, 0.25], True),  # subnormal in float32
        ([np.nan, 0.5], False),
        ([-np.nan, 0.5], False),
        ([np.inf], False),
        ([-np.inf], False),
        ([-1e-30], False),
        ([1.0, 1.5], False),
    ],
)
def test_unit_range_check_agrees_with_the_float_comparisons(dtype, values, inside):
    arr = np.array([values], dtype)
    assert jsonc.in_unit_range(arr) is inside
    just_above_one = np.nextafter(dtype(1), dtype(2), dtype=dtype)
    assert jsonc.in_unit_range(np.array([[0.5, just_above_one]], dtype)) is False
    # Not contiguous (two values or more): the float check alone answers.
    strided = np.repeat(np.array([[*values, 0.5]], dtype), 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    assert jsonc.in_unit_range(strided) is inside


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan])
def test_unit_range_check_finds_a_bad_value_in_any_row(dtype, bad):
    arr = np.full((3, 4), 0.5, dtype)
    assert jsonc.in_unit_range(arr) is True
    arr[2, 1] = bad
    assert jsonc.in_unit_range(arr) is False
