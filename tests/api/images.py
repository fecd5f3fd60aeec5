"""Test images: real PNG bytes made with Pillow, and crafted broken ones."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


def digit(seed: int = 0) -> np.ndarray:
    """A 28x28 float image in [0, 1] with exact 8-bit levels (so PNG round trips are exact)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(28, 28)) / 255.0).astype(np.float32)


def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    im = Image.fromarray((pixels * 255).round().astype(np.uint8), mode="L").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking grayscale PNG whose header declares width x height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im
