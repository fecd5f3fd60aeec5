import gzip

import numpy as np
import pytest

from tests.training.idx_files import idx_bytes, write_gz, write_idx_dir
from training.mnist import DataError, load_mnist, load_mnist_test
from training.mnist.idx import (
    IDX_FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    load_idx_dir,
    read_idx_images,
    read_idx_labels,
)


def test_reads_images_as_pixel_over_256(tmp_path):
    raw = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    path = write_gz(tmp_path / "img.gz", idx_bytes(raw, IMAGES_MAGIC))
    images = read_idx_images(path)
    assert images.shape == (3, 784)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, raw.reshape(3, 784).astype(np.float32) / 256)


def test_reads_labels(tmp_path):
    path = write_gz(tmp_path / "lab.gz", idx_bytes(np.array([7, 2, 1, 0]), LABELS_MAGIC))
    labels = read_idx_labels(path)
    assert labels.dtype == np.int64
    assert labels.tolist() == [7, 2, 1, 0]


def test_wrong_magic_is_a_clear_error(tmp_path):
    path = write_gz(tmp_path / "lab.gz", idx_bytes(np.array([1, 2]), LABELS_MAGIC))
    with pytest.raises(DataError, match=r"wrong magic number 0x00000801 \(expected 0x00000803\)"):
        read_idx_images(path)


def test_truncated_data_is_a_clear_error(tmp_path):
    payload = idx_bytes(np.zeros((4, 28, 28)), IMAGES_MAGIC)[:-10]
    path = write_gz(tmp_path / "img.gz", payload)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx_images(path)


def test_truncated_header_is_a_clear_error(tmp_path):
    path = write_gz(tmp_path / "img.gz", idx_bytes(np.zeros((4, 28, 28)), IMAGES_MAGIC)[:9])
    with pytest.raises(DataError, match="truncated header"):
        read_idx_images(path)


def test_wrong_image_size_is_rejected(tmp_path):
    path = write_gz(tmp_path / "img.gz", idx_bytes(np.zeros((2, 32, 32)), IMAGES_MAGIC))
    with pytest.raises(DataError, match="32x32, expected 28x28"):
        read_idx_images(path)


def test_label_out_of_range_is_rejected(tmp_path):
    path = write_gz(tmp_path / "lab.gz", idx_bytes(np.array([3, 12]), LABELS_MAGIC))
    with pytest.raises(DataError, match="label 12 is not a digit"):
        read_idx_labels(path)


def test_not_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "img.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx_images(path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_idx_dir(tmp_path / "nowhere")


def test_missing_file_names_the_expected_file(tmp_path):
    write_idx_dir(tmp_path, 5, 5)
    (tmp_path / IDX_FILES["test_images"]).unlink()
    with pytest.raises(DataError, match=r"file not found.*t10k-images-idx3-ubyte\.gz"):
        load_idx_dir(tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_idx_dir(tmp_path, 10, 5)
    write_gz(tmp_path / IDX_FILES["train_labels"], idx_bytes(np.zeros(9), LABELS_MAGIC))
    with pytest.raises(DataError, match="10 images but 9 labels"):
        load_idx_dir(tmp_path)


def test_load_mnist_from_idx_dir_splits_train_and_validation(tmp_path):
    write_idx_dir(tmp_path, 50, 20)
    data = load_mnist(idx_dir=tmp_path, validation_size=10, split_seed=1)
    assert data.train_images.shape == (40, 784)
    assert data.validation_images.shape == (10, 784)
    assert data.test_images.shape == (20, 784)
    assert len(data.train_labels) == 40
    assert data.source == f"idx:{tmp_path.name}"
    assert len(data.sha256) == 64
    # The split is a permutation of the pool: nothing lost, nothing duplicated.
    pool = np.concatenate([data.train_images, data.validation_images])
    all_train = load_idx_dir(tmp_path)["train_images"]
    assert sorted(map(bytes, pool)) == sorted(map(bytes, all_train))
    images, labels = load_mnist_test(idx_dir=tmp_path)
    np.testing.assert_array_equal(images, data.test_images)
    assert labels.shape == (20,)


def test_gzip_roundtrip_helper_is_really_gzip(tmp_path):
    path = write_gz(tmp_path / "x.gz", b"abc")
    assert gzip.decompress(path.read_bytes()) == b"abc"


def test_test_set_alone_checks_its_counts(tmp_path):
    write_idx_dir(tmp_path, 10, 5)
    write_gz(tmp_path / IDX_FILES["test_labels"], idx_bytes(np.zeros(4), LABELS_MAGIC))
    with pytest.raises(DataError, match="test set has 5 images but 4 labels"):
        load_mnist_test(idx_dir=tmp_path)
