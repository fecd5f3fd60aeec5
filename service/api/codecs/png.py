"""Images <-> numpy with Pillow: base64 images in, PNG grids and animated GIFs out.

Uploaded images are checked against a pixel budget from their header before any pixel is
decoded, so a small file declaring a huge canvas (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings

import numpy as np
from PIL import Image

from service.api.errors import invalid

# (height, width) of the model's images (its manifest's `image_shape`).
ImageShape = tuple[int, int]
MAX_UPLOAD_SIDE = 4096
MAX_UPLOAD_PIXELS = MAX_UPLOAD_SIDE * MAX_UPLOAD_SIDE
# All the uploaded images of one request together: decoding is CPU work on the event loop,
# so a body full of large images must not hold a worker for long.
MAX_REQUEST_PIXELS = MAX_UPLOAD_PIXELS
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# 16-bit grayscale, which Pillow's convert("L") would clip instead of scale.
_WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
SCALE = 4  # answers are upscaled so a person can see a small (e.g. 28x28) image
PADDING = 2
FRAME_MS = 120

# Pillow's own guard as a second line of defence; errors (not warnings) beyond our budget.
Image.MAX_IMAGE_PIXELS = MAX_UPLOAD_PIXELS


class PixelBudget:
    """Pixels that the images of one request may still declare."""

    def __init__(self, pixels: int = MAX_REQUEST_PIXELS) -> None:
        self.left = pixels

    def spend(self, pixels: int, field: str) -> None:
        if pixels > self.left:
            raise invalid(
                field,
                f"the images of one request may hold at most {MAX_REQUEST_PIXELS} pixels together",
            )
        self.left -= pixels


def decode_base64_image(
    text: str, field: str, budget: PixelBudget, shape: ImageShape
) -> np.ndarray:
    """A base64 (optionally `data:` URL) image of any size and mode -> (H*W,) float32 in
    [0, 1], resized to `shape`."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "invalid base64") from None
    return decode_image(raw, field, budget, shape)


def decode_image(raw: bytes, field: str, budget: PixelBudget, shape: ImageShape) -> np.ndarray:
    """Image file bytes -> (H*W,) float32 in [0, 1], resized to `shape`; the size is checked
    before decoding."""
    if not raw:
        raise invalid(field, "empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise invalid(field, _too_big_message()) from None
    except Exception:
        raise invalid(field, "not an image (expected PNG, JPEG, GIF, BMP or WebP)") from None
    width, height = im.size
    if width < 1 or height < 1 or width > MAX_UPLOAD_SIDE or height > MAX_UPLOAD_SIDE:
        raise invalid(field, f"image is {width}x{height}; {_too_big_message()}")
    budget.spend(width * height, field)
    try:
        im.load()
        if im.mode in _WIDE_GRAY_MODES:
            wide = np.asarray(im, dtype=np.float32)
            im = Image.fromarray(np.clip(wide / 257.0 + 0.5, 0, 255).astype(np.uint8))
        gray = im.convert("L")
        height, width = shape
        if gray.size != (width, height):  # Pillow's sizes are (width, height)
            # Area averaging when shrinking (no aliasing), bilinear when enlarging.
            shrinking = gray.width > width or gray.height > height
            method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
            gray = gray.resize((width, height), method)
    except Exception:
        raise invalid(field, "image data is truncated or corrupt") from None
    return np.asarray(gray, dtype=np.float32).reshape(-1) / np.float32(255.0)


def _too_big_message() -> str:
    return f"images may be at most {MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} pixels"


def _to_uint8(images: np.ndarray, shape: ImageShape) -> np.ndarray:
    """(n, H*W) in [0, 1] -> (n, H, W) uint8."""
    clipped = np.clip(images.reshape(-1, *shape), 0.0, 1.0)
    return (clipped * 255.0 + 0.5).astype(np.uint8)


def _upscale(pixels: np.ndarray) -> np.ndarray:
    return pixels.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def tile(images: np.ndarray, shape: ImageShape, columns: int | None = None) -> np.ndarray:
    """(n, H*W) -> one uint8 canvas: a near-square grid, or `columns` wide."""
    tiles = _to_uint8(images, shape)
    height, width = shape
    n = tiles.shape[0]
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full(
        (rows * (height + PADDING) + PADDING, cols * (width + PADDING) + PADDING),
        64,
        dtype=np.uint8,
    )
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = PADDING + r * (height + PADDING), PADDING + c * (width + PADDING)
        canvas[y : y + height, x : x + width] = tiles[i]
    return _upscale(canvas)


def encode_png(images: np.ndarray, shape: ImageShape, *, strip: bool = False) -> bytes:
    """One PNG: the single image, or a grid (a one-row strip with `strip`) of all of them."""
    if images.shape[0] == 1:
        canvas = _upscale(_to_uint8(images, shape)[0])
    else:
        canvas = tile(images, shape, columns=images.shape[0] if strip else None)
    buf = io.BytesIO()
    Image.fromarray(canvas, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_gif(images: np.ndarray, shape: ImageShape) -> bytes:
    """An animated GIF, one frame per image, looping.

    A progress bar under each frame keeps consecutive frames distinct: Pillow merges identical
    frames, and the answer promises exactly one frame per step.
    """
    frames = _to_uint8(images, shape)
    n = frames.shape[0]
    height, width = shape[0] * SCALE, shape[1] * SCALE
    bar = max(1, SCALE)
    pictures = []
    for i in range(n):
        canvas = np.zeros((height + bar, width), dtype=np.uint8)
        canvas[:height] = _upscale(frames[i])
        canvas[height:, : max(1, round(width * (i + 1) / n))] = 160
        pictures.append(Image.fromarray(canvas, mode="L"))
    buf = io.BytesIO()
    pictures[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=FRAME_MS,
        loop=0,
        optimize=False,
    )
    return buf.getvalue()
