"""The simdjson fast path answers exactly as the full path, or not at all.

For generated bodies of realistic size (784-number images, up to 64 of them; 30-number
latents) with every kind of bad value, number spelling and structure, the fast path returns
either None or exactly the full path's answer, and the reader the routes use (fast, then
full) always answers as the full path alone would, errors included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import bodies
from service.api.contract import route_contracts
from service.api.errors import ApiError
from service.config import Settings

MAX_IMAGES = 48  # below the 64 images generated, so the count limit is exercised too
LATENT_DIM = 30
SHAPE = (28, 28)  # the image shape of the bodies generated here
ROUTES = route_contracts(Settings(max_images=MAX_IMAGES, workers=1))
ENCODE, DECODE = ROUTES["encode"].rules, ROUTES["decode"].rules
MAX_SEED = int(ENCODE["seed"].hi or 0)

# How one number may be written: every spelling parses to the same double in both parsers.
SPELLINGS = [repr, lambda v: f"{v:.17g}", lambda v: f"{v:.6e}", lambda v: f"{v:.3E}"]
BAD_PIXELS = [
    "-0.0", "-0", "0", "1", "1.0000001", "1.00000001", "-1e-300", "1e-46", "2", "-1",
    "1e39", "1e400", "-1e400", "true", "false", "null", '"0.5"', "[0.5]", "[]", "{}",
    "NaN", "Infinity", "0.5e", "01", ".5", "1e", "0x1",
]  # fmt: skip
BAD_LATENTS = [
    "3.4e38", "-3.4028234e38", "3.4028235e38", "3.40282357e38", "3.5e38", "1e39", "-1e39",
    "1e308", "1e400", "5e-324", "-0.0", "0", "-7", "true", "null", '"1"', "[1]", "NaN",
]  # fmt: skip
SEEDS = [
    None, "0", "7", str(MAX_SEED), str(MAX_SEED + 1), "-1", "1.5", "1e3", "null", '"3"', "true",
    str(2**63), "18446744073709551616000",
]  # fmt: skip
EXTRAS = [None, '"extra": 1', '"images": []', '"seed": 5', '"z": [[0.5]]', '"seed": null']


def _numbers(values: np.ndarray, spell: int) -> list[str]:
    write = SPELLINGS[spell]
    return [write(float(v)) for v in values]


def _body(
    key: str,
    rows: list[list[str]],
    *,
    seed: str | None,
    extra: str | None,
    seed_first: bool,
    spaces: bool,
    bom: bool,
) -> bytes:
    sep = ", " if spaces else ","
    listed = "[" + sep.join("[" + sep.join(row) + "]" for row in rows) + "]"
    members = [f'"{key}":{" " if spaces else ""}{listed}']
    if seed is not None:
        members.insert(0 if seed_first else 1, f'"seed": {seed}')
    if extra is not None:
        members.append(extra)
    text = "{" + sep.join(members) + "}"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@st.composite
def bodies_of(draw: st.DrawFn, key: str, width: int, bad_values: list[str]) -> bytes:
    n = draw(st.integers(0, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if key == "images":
        values = rng.integers(0, 256, (n, width)) / 255.0  # what MNIST-like clients send
    else:
        values = rng.standard_normal((n, width)) * draw(st.sampled_from([1.0, 1e3, 1e37]))
    spell = draw(st.integers(0, len(SPELLINGS) - 1))
    rows = [_numbers(row, spell) for row in values]
    for _ in range(draw(st.integers(0, 3)) if n else 0):
        row, col = draw(st.integers(0, n - 1)), draw(st.integers(0, width - 1))
        change = draw(st.sampled_from(["value", "drop", "add", "nest"]))
        # An earlier change may have shortened (drop, nest) or emptied this row.
        col = min(col, len(rows[row]) - 1)
        if col < 0:
            continue
        if change == "value":
            rows[row][col] = draw(st.sampled_from(bad_values))
        elif change == "drop":
            del rows[row][col]
        elif change == "add":
            rows[row].insert(col, "0.5")
        elif rows[row]:
            rows[row] = ["[" + ", ".join(rows[row][:28]) + "]", *rows[row][28:]]
    return _body(
        key,
        rows,
        seed=draw(st.sampled_from(SEEDS)) if key == "images" else None,
        extra=draw(st.sampled_from(EXTRAS)),
        seed_first=draw(st.booleans()),
        spaces=draw(st.booleans()),
        bom=draw(st.integers(0, 19)) == 0,
    )


def _answer(read: Any, *args: Any) -> tuple[Any, ...]:
    """What a reader answers: its arrays and values exactly (bits, dtype, shape), or its error."""
    try:
        result = read(*args)
    except ApiError as exc:
        return ("error", exc.status, exc.code, exc.field, exc.message)
    arrays, value = (result, None) if isinstance(result, np.ndarray) else result
    return ("ok", arrays.dtype.str, arrays.shape, arrays.tobytes(), value)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(body=bodies_of("images", 784, BAD_PIXELS))
def test_encode_fast_path_answers_as_the_full_path(body):
    full = _answer(bodies.encode_json_full, body, ENCODE, SHAPE)
    fast = bodies.encode_json_fast(body, ENCODE, SHAPE)
    if fast is not None:
        assert _answer(lambda: fast) == full
    assert _answer(bodies.encode_json, body, ENCODE, SHAPE) == full


@PROPERTY
@given(body=bodies_of("z", LATENT_DIM, BAD_LATENTS))
def test_decode_fast_path_answers_as_the_full_path(body):
    full = _answer(bodies.decode_json_full, body, DECODE, LATENT_DIM)
    fast = bodies.decode_json_fast(body, DECODE, LATENT_DIM)
    if fast is not None:
        assert _answer(lambda: fast) == full
    assert _answer(bodies.decode_json, body, DECODE, LATENT_DIM) == full


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, MAX_IMAGES),
    seed=st.sampled_from([None, "0", str(MAX_SEED)]),
    spell=st.integers(0, len(SPELLINGS) - 1),
    data_seed=st.integers(0, 2**32 - 1),
)
def test_valid_bodies_take_the_fast_path(n, seed, spell, data_seed):
    """The property above is not vacuous: valid bodies of every size are answered fast."""
    values = np.random.default_rng(data_seed).integers(0, 256, (n, 784)) / 255.0
    rows = [_numbers(row, spell) for row in values]
    body = _body("images", rows, seed=seed, extra=None, seed_first=False, spaces=True, bom=False)
    fast = bodies.encode_json_fast(body, ENCODE, SHAPE)
    assert fast is not None
    assert _answer(lambda: fast) == _answer(bodies.encode_json_full, body, ENCODE, SHAPE)
    written = np.array([[float(text) for text in row] for row in rows])
    np.testing.assert_array_equal(fast[0], written.astype(np.float32))
