"""The `.npy` codec's header caches must never change what is read or written."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.api.codecs import npy
from service.api.errors import ApiError


def saved(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5),
        np.zeros((1, 784), np.float32),
        np.arange(6, dtype=">f8").reshape(2, 3),
    ],
)
def test_write_npy_is_byte_for_byte_np_save_every_time(array):
    assert npy.write_npy(array) == saved(array)
    assert npy.write_npy(array) == saved(array)  # the second answer comes from the cache


def test_read_npy_gives_the_same_array_from_a_cached_header():
    rng = np.random.default_rng(0)
    first, second = rng.random((2, 2, 784), dtype=np.float32)
    np.testing.assert_array_equal(npy.read_npy(saved(first), "images"), first)
    # Same header bytes, other data: the cached header must not carry the old values.
    np.testing.assert_array_equal(npy.read_npy(saved(second), "images"), second)
    fortran = np.asfortranarray(first)
    np.testing.assert_array_equal(npy.read_npy(saved(fortran), "images"), first)


def test_a_cached_header_still_checks_the_data_length():
    body = saved(np.zeros((2, 784), np.float32))
    npy.read_npy(body, "images")
    with pytest.raises(ApiError, match="data is"):
        npy.read_npy(body[:-4], "images")


def test_a_truncated_header_is_refused():
    body = saved(np.zeros((2, 784), np.float32))
    with pytest.raises(ApiError, match=r"not a valid \.npy file"):
        npy.read_npy(body[:20], "images")
