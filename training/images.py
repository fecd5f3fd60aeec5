"""MNIST's 28x28 digits at the model's image size: centred on a black canvas of `side` pixels
(a 32x32 model sees each digit with 2 more black pixels on every side)."""

from __future__ import annotations

import numpy as np

MNIST_SIDE = 28


def check_side(side: int) -> None:
    if side < MNIST_SIDE or (side - MNIST_SIDE) % 2:
        raise ValueError(f"image_side must be {MNIST_SIDE} or more, by an even number, got {side}")


def pad_images(images: np.ndarray, side: int) -> np.ndarray:
    """(n, 784) digits -> (n, side*side), each centred on a black `side` x `side` canvas."""
    check_side(side)
    if side == MNIST_SIDE:
        return images
    border = (side - MNIST_SIDE) // 2
    square = images.reshape(-1, MNIST_SIDE, MNIST_SIDE)
    padded = np.pad(square, ((0, 0), (border, border), (border, border)))
    return np.ascontiguousarray(padded.reshape(len(images), side * side))
