"""A restricted unpickler for the MNIST pickle: it rebuilds numpy arrays and nothing else.

Plain `pickle.load` runs whatever callable the file names, so a tampered cache file could
execute code. This unpickler resolves only the three globals a protocol-2 numpy array
pickle needs, and refuses every other one before it is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

# Python 2 era pickles name numpy.core; numpy 2 moved it to numpy._core (the old name warns).
try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 1.26
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows only the globals in :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name!s}: only numpy arrays are allowed "
                "in an MNIST pickle (the file may be tampered with)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in an MNIST pickle")


def restricted_loads(data: bytes) -> Any:
    """Unpickle `data` (a Python 2 protocol-2 pickle, so bytes are read as latin-1)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
