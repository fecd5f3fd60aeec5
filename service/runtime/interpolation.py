"""Paths between two latent vectors, both ends included exactly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.runtime.errors import InvalidInput

# Below this sin(angle) the great circle through the two directions is ill-defined
# ((anti)parallel vectors), so slerp falls back to the straight line.
_MIN_SIN_ANGLE = 1e-6
_MIN_NORM = 1e-12


def _endpoints(a: np.ndarray, b: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or a.size == 0:
        raise InvalidInput("start_z", f"must be a non-empty vector, got shape {a.shape}")
    if b.shape != a.shape:
        raise InvalidInput("end_z", f"must have the shape of start_z {a.shape}, got {b.shape}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 2:
        raise InvalidInput("steps", f"must be an integer >= 2, got {steps!r}")
    return a.astype(np.float64), b.astype(np.float64)


def _with_exact_ends(path: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = path.astype(np.float32)
    out[0] = a.astype(np.float32)
    out[-1] = b.astype(np.float32)
    return out


def linear(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` evenly spaced points on the segment from ``a`` to ``b``: float32 (steps, d)."""
    a64, b64 = _endpoints(a, b, steps)
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    with np.errstate(all="ignore"):
        path = (1.0 - t) * a64 + t * b64
    return _with_exact_ends(path, a64, b64)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Spherical interpolation: the direction moves along the great circle at constant angular
    speed while the norm moves linearly, so every point's norm lies between the ends' norms.

    Zero, non-finite and (anti)parallel endpoints fall back to :func:`linear` (for antiparallel
    ends the line passes near the origin: there is no unique great circle to follow).
    """
    a64, b64 = _endpoints(a, b, steps)
    norm_a = float(np.linalg.norm(a64))
    norm_b = float(np.linalg.norm(b64))
    if not (np.isfinite(norm_a) and np.isfinite(norm_b)) or min(norm_a, norm_b) < _MIN_NORM:
        return linear(a, b, steps)
    unit_a = a64 / norm_a
    unit_b = b64 / norm_b
    angle = float(np.arccos(np.clip(unit_a @ unit_b, -1.0, 1.0)))
    sin_angle = np.sin(angle)
    if sin_angle < _MIN_SIN_ANGLE:
        return linear(a, b, steps)
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    directions = (np.sin((1.0 - t) * angle) * unit_a + np.sin(t * angle) * unit_b) / sin_angle
    # Renormalise to remove the rounding drift of the sine weights.
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = (1.0 - t) * norm_a + t * norm_b
    return _with_exact_ends(directions * norms, a64, b64)


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "linear": linear,
    "slerp": slerp,
}
