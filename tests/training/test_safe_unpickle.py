import gzip
import io
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

from training.mnist import DataError
from training.mnist.mnist_pickle import load_mnist_pickle
from training.mnist.safe_unpickle import restricted_loads


class _RunsCode:
    """Unpickling this with plain pickle would call os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evals:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes, like the real file (Python 3 would use _codecs)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _py2_style(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 2 pickles name numpy._core; the real (Python 2 era) file names numpy.core.
    return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_loads_numpy_arrays_as_the_real_file_names_them():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    data = _py2_style(arrays)
    globals_used = {
        arg for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL")
    }
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    loaded = restricted_loads(data)
    np.testing.assert_array_equal(loaded[0], arrays[0])
    assert loaded[0].dtype == np.float32
    np.testing.assert_array_equal(loaded[1], arrays[1])


def test_refuses_os_system_and_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsCode(f"touch {marker}"), protocol=2)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to load global (posix|os|nt)\.system"
    ):
        restricted_loads(data)
    assert not marker.exists()


def test_refuses_builtins_eval():
    with pytest.raises(pickle.UnpicklingError, match=r"(builtins|__builtin__)\.eval"):
        restricted_loads(pickle.dumps(_Evals(), protocol=2))


def test_refuses_other_numpy_callables():
    # numpy.load would unpickle a file itself: anything not on the list is refused.
    data = b"\x80\x02cnumpy\nload\nq\x00X\x03\x00\x00\x00x.pq\x01\x85q\x02Rq\x03."
    with pytest.raises(pickle.UnpicklingError, match=r"numpy\.load"):
        restricted_loads(data)


def test_malicious_mnist_file_is_a_data_error(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(_RunsCode(f"touch {marker}"), protocol=2)))
    with pytest.raises(DataError, match="refusing to load global"):
        load_mnist_pickle(path)
    assert not marker.exists()


def test_pickle_with_wrong_structure_is_a_data_error(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    split = (np.zeros((2, 784), np.float32), np.zeros(2, np.int64))
    path.write_bytes(gzip.compress(_py2_style((split, split))))
    with pytest.raises(DataError, match="three"):
        load_mnist_pickle(path)
    bad = (np.zeros((2, 700), np.float32), np.zeros(2, np.int64))
    path.write_bytes(gzip.compress(_py2_style((split, bad, split))))
    with pytest.raises(DataError, match="validation split has shapes"):
        load_mnist_pickle(path)


def test_loads_a_small_mnist_shaped_pickle(tmp_path):
    rng = np.random.default_rng(0)
    splits = tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (5, 3, 4)
    )
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(_py2_style(splits)))
    loaded = load_mnist_pickle(path)
    assert loaded["train_images"].shape == (5, 784)
    assert loaded["validation_labels"].shape == (3,)
    assert loaded["validation_labels"].dtype == np.int64
    np.testing.assert_array_equal(loaded["test_images"], splits[2][0])
