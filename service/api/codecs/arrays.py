"""numpy conversions every codec shares."""

from __future__ import annotations

import numpy as np

from service.runtime.model import NUMERIC_KINDS

__all__ = ["NUMERIC_KINDS", "as_float32"]


def as_float32(arr: np.ndarray) -> np.ndarray:
    """`arr` as C-contiguous float32; values beyond float32 become +-inf, which the
    finiteness checks then name."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        return arr  # what binary clients send; errstate alone costs a few us per request
    with np.errstate(over="ignore"):
        return arr.astype(np.float32, order="C", copy=False)
