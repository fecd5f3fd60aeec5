import json
import logging
import shutil
from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest

from service.runtime import providers as providers_module
from service.runtime.errors import InvalidInput, ModelLoadError
from service.runtime.model import VAEModel, ort_session_options
from service.runtime.options import SessionOptions
from tests.fixtures.recording import RecordingSession
from tests.fixtures.tiny_model import build_tiny_model
from vae_manifest import sha256_file


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return VAEModel.load(tiny_model_dir)


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_load_reports_manifest_dims_and_providers(model):
    assert model.latent_dim == 4
    assert model.image_size == 784
    assert model.manifest.name == "tiny-vae"
    assert model.providers == ["CPUExecutionProvider"]


def test_encoder_and_decoder_shapes_and_ranges(model):
    images = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    mu, sigma = model.run_encoder(images)
    assert mu.shape == sigma.shape == (5, 4)
    assert mu.dtype == sigma.dtype == np.float32
    assert (sigma >= 0).all()
    decoded = model.run_decoder(mu)
    assert decoded.shape == (5, 784)
    assert decoded.dtype == np.float32
    assert ((decoded >= 0) & (decoded <= 1)).all()


def test_inputs_of_other_numeric_dtypes_are_accepted(model):
    images = np.random.default_rng(1).random((2, 784))
    np.testing.assert_array_equal(
        model.run_encoder(images)[0], model.run_encoder(images.astype(np.float32))[0]
    )


def test_rows_are_bit_identical_whatever_batch_they_run_in(tmp_path):
    # latent_dim 30 makes the element-wise Softplus end in a partial SIMD register.
    wide = VAEModel.load(build_tiny_model(tmp_path, latent_dim=30, seed=3))
    images = np.random.default_rng(2).random((37, 784), dtype=np.float32)
    z = np.random.default_rng(3).standard_normal((37, 30)).astype(np.float32)
    mu_all, sigma_all = wide.run_encoder(images)
    decoded_all = wide.run_decoder(z)
    for start, stop in [(0, 1), (5, 6), (3, 6), (10, 27), (36, 37)]:
        mu, sigma = wide.run_encoder(images[start:stop])
        np.testing.assert_array_equal(mu, mu_all[start:stop])
        np.testing.assert_array_equal(sigma, sigma_all[start:stop])
        np.testing.assert_array_equal(wide.run_decoder(z[start:stop]), decoded_all[start:stop])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 783), np.float32), "784 values"),
        (np.zeros(784, np.float32), "2-D"),
        (np.zeros((1, 28, 28), np.float32), "2-D"),
        (np.zeros((0, 784), np.float32), "at least one row"),
        (np.array([["a"] * 784]), "numbers"),
        (np.zeros((1, 784), np.complex64), "numbers"),
    ],
)
def test_encoder_refuses_bad_shapes(model, array, message):
    with pytest.raises(InvalidInput, match=message) as info:
        model.run_encoder(array)
    assert info.value.field == "images"


@pytest.mark.parametrize("shape", [(1, 5), (3,), (0, 4)])
def test_decoder_refuses_wrong_latent_shapes(model, shape):
    with pytest.raises(InvalidInput) as info:
        model.run_decoder(np.zeros(shape, np.float32))
    assert info.value.field == "z"


def test_non_finite_values_are_computed_and_stay_in_their_rows(model):
    # The runtime does not range-check values (the API layer does): NaN and Inf rows reach
    # ONNX Runtime without an error, and since a micro-batch mixes callers' rows, they must
    # not change any other row's result, nor give a different result themselves when mixed.
    finite = np.random.default_rng(5).random((2, 784), dtype=np.float32)
    bad = np.stack([np.full(784, np.nan, np.float32), np.full(784, np.inf, np.float32)])
    mixed = np.stack([bad[0], finite[0], bad[1], finite[1]])
    mu, sigma = model.run_encoder(mixed)
    for rows, alone in (([1, 3], model.run_encoder(finite)), ([0, 2], model.run_encoder(bad))):
        np.testing.assert_array_equal(mu[rows], alone[0])
        np.testing.assert_array_equal(sigma[rows], alone[1])
    assert np.isfinite(mu[[1, 3]]).all()

    z = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    z[0, 0], z[2, 1] = np.nan, np.inf
    decoded = model.run_decoder(z)
    assert decoded.shape == (3, 784)
    np.testing.assert_array_equal(decoded[1], model.run_decoder(z[1:2])[0])
    assert np.isfinite(decoded[1]).all()


def test_sha256_mismatch_is_refused_naming_the_file(model_copy):
    with open(model_copy / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match="sha256 mismatch") as info:
        VAEModel.load(model_copy)
    assert "decoder.onnx" in str(info.value)


def test_missing_onnx_file_is_refused_naming_it(model_copy):
    (model_copy / "encoder.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"encoder\.onnx"):
        VAEModel.load(model_copy)


def test_missing_manifest_field_is_refused(model_copy):
    path = model_copy / "model.json"
    data = json.loads(path.read_text())
    del data["latent_dim"]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="latent_dim") as info:
        VAEModel.load(model_copy)
    assert "model.json" in str(info.value)


def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="manifest not found"):
        VAEModel.load(tmp_path)


def test_graph_disagreeing_with_manifest_is_refused(model_copy, tmp_path):
    other = build_tiny_model(tmp_path / "other", latent_dim=5)
    path = model_copy / "model.json"
    data = json.loads(path.read_text())
    for graph in ("encoder", "decoder"):
        shutil.copy(other / f"{graph}.onnx", model_copy / f"{graph}.onnx")
        data[graph]["sha256"] = sha256_file(model_copy / f"{graph}.onnx")
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match=r"encoder\.onnx: graph 'mu'"):
        VAEModel.load(model_copy)


def test_unknown_provider_is_refused(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="available in this onnxruntime build"):
        VAEModel.load(tiny_model_dir, SessionOptions(providers=("NoSuchExecutionProvider",)))


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here"
)
def test_cuda_then_cpu_falls_back_to_cpu_with_a_warning(tiny_model_dir, caplog):
    options = SessionOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    with caplog.at_level(logging.WARNING):
        model = VAEModel.load(tiny_model_dir, options)
    assert model.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" in caplog.text


def test_provider_whose_session_fails_falls_back_to_the_next(tiny_model_dir, monkeypatch, caplog):
    real_session = ort.InferenceSession

    def session_failing_first(path, sess_options=None, providers=None):
        if providers and providers[0] == "AzureExecutionProvider":
            raise RuntimeError("simulated provider failure")
        return real_session(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(providers_module.ort, "InferenceSession", session_failing_first)
    monkeypatch.setattr(
        providers_module.ort,
        "get_available_providers",
        lambda: ["AzureExecutionProvider", "CPUExecutionProvider"],
    )
    options = SessionOptions(providers=("AzureExecutionProvider", "CPUExecutionProvider"))
    with caplog.at_level(logging.WARNING):
        model = VAEModel.load(tiny_model_dir, options)
    assert model.providers == ["CPUExecutionProvider"]
    assert "simulated provider failure" in caplog.text


def test_session_options_are_translated():
    so = ort_session_options(
        SessionOptions(
            intra_op_threads=3, inter_op_threads=2, graph_optimization="basic", allow_spinning=True
        )
    )
    assert so.intra_op_num_threads == 3
    assert so.inter_op_num_threads == 2
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "1"
    off = ort_session_options(SessionOptions())
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_optimisation_level_loads_and_agrees(tiny_model_dir, model, level):
    other = VAEModel.load(tiny_model_dir, SessionOptions(graph_optimization=level))
    images = np.random.default_rng(4).random((3, 784), dtype=np.float32)
    np.testing.assert_allclose(
        other.run_encoder(images)[0], model.run_encoder(images)[0], rtol=1e-5, atol=1e-6
    )


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="thread"):
        SessionOptions(intra_op_threads=-1)
    with pytest.raises(ValueError, match="sequence"):
        SessionOptions(providers="auto")  # type: ignore[arg-type]


def test_warmup_runs_both_graphs_at_several_batch_sizes(model, monkeypatch):
    feeds = []
    for attr in ("encoder_session", "decoder_session"):
        monkeypatch.setattr(model, attr, RecordingSession(getattr(model, attr), feeds.append))
    model.warmup(rounds=2)
    # (input name, real rows, width) of every run; each run's input ends in pad_rows zero rows.
    runs = Counter()
    for feed in feeds:
        ((name, array),) = feed.items()
        assert array.dtype == np.float32
        assert not array[array.shape[0] - model.pad_rows :].any()
        runs[name, array.shape[0] - model.pad_rows, array.shape[1]] += 1
    sizes = {rows for _, rows, _ in runs}
    # Single-row calls are the commonest request, so they must be among the warmed sizes.
    assert 1 in sizes
    assert len(sizes) >= 2
    # Every batch size ran `rounds` times on each graph, with that graph's input.
    assert runs == {
        **{("images", rows, model.image_size): 2 for rows in sizes},
        **{("z", rows, model.latent_dim): 2 for rows in sizes},
    }
