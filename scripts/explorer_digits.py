"""Write the explorer's test digits (service/explorer/assets/digits.json) from the MNIST test
digits in tests/fixtures/mnist_test_digits.npy (one per class, 0-9, 8-bit grey levels).

    python scripts/explorer_digits.py

tests/api/test_explorer.py checks that the shipped file holds exactly these digits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from service.explorer import DIGITS_FILE  # noqa: E402

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "mnist_test_digits.npy"
SHAPE = (28, 28)
SOURCE = "MNIST test set (Y. LeCun, C. Cortes, C. Burges), one digit per class"


def digits_document(fixture: Path = FIXTURE) -> dict[str, Any]:
    """The JSON document of the fixture's digits: row k is a k, as 0-255 integers."""
    pixels = np.load(fixture, allow_pickle=False)
    if pixels.dtype != np.uint8 or pixels.shape != (10, SHAPE[0] * SHAPE[1]):
        raise ValueError(f"{fixture}: expected (10, 784) uint8, got {pixels.shape} {pixels.dtype}")
    return {
        "source": SOURCE,
        "shape": list(SHAPE),
        "digits": [{"label": label, "pixels": row.tolist()} for label, row in enumerate(pixels)],
    }


def main() -> None:
    # Compact: the file is downloaded by every visitor of the page.
    DIGITS_FILE.write_text(json.dumps(digits_document(), separators=(",", ":")) + "\n")
    print(f"wrote {DIGITS_FILE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
