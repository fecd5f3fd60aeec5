"""numpy conversions every codec shares."""

from __future__ import annotations

import numpy as np

# Array kinds that hold numbers: float, signed and unsigned integers (not bool, not objects).
NUMERIC_KINDS = "fiu"


def as_float32(arr: np.ndarray) -> np.ndarray:
    """`arr` as C-contiguous float32; values beyond float32 become +-inf, which the
    finiteness checks then name."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        return arr  # what binary clients send; errstate alone costs a few us per request
    with np.errstate(over="ignore"):
        return arr.astype(np.float32, order="C", copy=False)
