import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.runtime.errors import InvalidInput
from service.runtime.interpolation import METHODS, linear, slerp

vectors = arrays(np.float32, 6, elements=st.floats(-10, 10, width=32))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_ends_equal_inputs_exactly(method):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 30)).astype(np.float32)
    path = METHODS[method](a, b, 7)
    assert path.shape == (7, 30)
    assert path.dtype == np.float32
    np.testing.assert_array_equal(path[0], a)
    np.testing.assert_array_equal(path[-1], b)


def test_linear_midpoint_is_the_average():
    a = np.array([0.0, 2.0, -4.0], np.float32)
    b = np.array([2.0, 2.0, 4.0], np.float32)
    np.testing.assert_allclose(linear(a, b, 3)[1], [1.0, 2.0, 0.0])


def test_linear_steps_are_evenly_spaced():
    a, b = np.zeros(4, np.float32), np.ones(4, np.float32)
    np.testing.assert_allclose(np.diff(linear(a, b, 5), axis=0), 0.25, rtol=1e-6)


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, st.integers(2, 12))
def test_slerp_norms_lie_between_the_ends_norms(a, b, steps):
    path = slerp(a, b, steps)
    assert np.isfinite(path).all()
    norms = np.linalg.norm(path.astype(np.float64), axis=1)
    lo, hi = sorted((np.linalg.norm(a.astype(np.float64)), np.linalg.norm(b.astype(np.float64))))
    cos = a.astype(np.float64) @ b / max(lo * hi, 1e-30)
    if cos < -0.999999:
        return  # antiparallel: documented fallback to the straight line through the origin
    assert (norms >= lo * (1 - 1e-5) - 1e-6).all()
    assert (norms <= hi * (1 + 1e-5) + 1e-6).all()


def test_slerp_of_orthogonal_unit_vectors_stays_on_the_circle():
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 1.0], np.float32)
    path = slerp(a, b, 3)
    np.testing.assert_allclose(path[1], [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, rtol=1e-6)


def test_slerp_moves_at_constant_angular_speed():
    a = np.array([1.0, 0.0, 0.0], np.float32)
    b = np.array([0.0, 0.0, 3.0], np.float32)
    path = slerp(a, b, 5).astype(np.float64)
    units = path / np.linalg.norm(path, axis=1, keepdims=True)
    angles = np.arccos(np.clip(np.sum(units[:-1] * units[1:], axis=1), -1, 1))
    np.testing.assert_allclose(angles, np.pi / 8, rtol=1e-5)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),  # parallel
        ([1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]),  # antiparallel
        ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]),  # zero start
        ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]),  # zero end
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # both zero
    ],
)
def test_slerp_falls_back_to_linear_for_degenerate_ends(a, b):
    a, b = np.array(a, np.float32), np.array(b, np.float32)
    path = slerp(a, b, 6)
    assert np.isfinite(path).all()
    np.testing.assert_allclose(path, linear(a, b, 6), rtol=1e-6, atol=1e-7)


def test_non_finite_ends_give_a_path_that_keeps_them_exactly():
    a = np.array([np.nan, 1.0], np.float32)
    b = np.array([np.inf, 0.0], np.float32)
    for method in METHODS.values():
        path = method(a, b, 3)
        assert (path.shape, path.dtype) == ((3, 2), np.float32)
        np.testing.assert_array_equal(path[0], a)  # NaN where a has NaN
        np.testing.assert_array_equal(path[-1], b)


@pytest.mark.parametrize("steps", [1, 0, -3, 2.5, True])
def test_steps_below_two_are_refused(steps):
    with pytest.raises(InvalidInput) as info:
        linear(np.zeros(2), np.ones(2), steps)
    assert info.value.field == "steps"


def test_mismatched_ends_are_refused():
    with pytest.raises(InvalidInput) as info:
        slerp(np.zeros(2), np.ones(3), 4)
    assert info.value.field == "end_z"
