"""One epoch on a small generated MNIST-format set: train, export, parity, manifest, report."""

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.training.idx_files import write_idx_dir
from training.cli import main
from training.config import TrainConfig
from training.export import ExportError, check_parity, export_model
from training.images import pad_images
from training.mnist import load_mnist
from training.onnx_model import OnnxVAE
from training.train import load_checkpoint, save_checkpoint, train
from vae_manifest import ModelManifest, load_manifest, sha256_file

REPORT_FILES = {
    "report.md",
    "reconstructions.png",
    "samples.png",
    "interpolation.png",
    "interpolation.gif",
    "latent_histograms.png",
    "pca_2d.png",
    "pca_3d.png",
    "kl_per_dim.png",
    "training_curve.png",
    "anomaly_scores.png",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python -m training all` on 400 + 100 generated images, one epoch."""
    root = tmp_path_factory.mktemp("e2e")
    idx_dir = write_idx_dir(root / "idx", n_train=400, n_test=100)
    model_dir = root / "model"
    checkpoint = root / "ckpt.pt"
    args = ["all", "--idx-dir", str(idx_dir), "--epochs", "1", "--batch-size", "50"]
    args += ["--validation-size", "50", "--model-dir", str(model_dir)]
    args += ["--checkpoint", str(checkpoint), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    return root, idx_dir, model_dir, checkpoint


def test_manifest_is_complete_and_checksums_are_true(trained):
    _, _, model_dir, _ = trained
    manifest = load_manifest(model_dir)  # verifies both sha256
    assert manifest.encoder.sha256 == sha256_file(model_dir / "encoder.onnx")
    assert manifest.decoder.sha256 == sha256_file(model_dir / "decoder.onnx")
    assert manifest.name == "mnist-vae"
    assert manifest.latent_dim == 30
    assert manifest.parameterization == "logvar"
    assert [t.name for t in manifest.encoder.inputs] == ["images"]
    assert [t.name for t in manifest.encoder.outputs] == ["mu", "sigma"]
    assert [t.name for t in manifest.decoder.inputs] == ["z"]
    assert [t.name for t in manifest.decoder.outputs] == ["images"]
    assert manifest.encoder.inputs[0].shape == ["batch", 784]
    assert manifest.decoder.outputs[0].shape == ["batch", 784]
    assert manifest.encoder.opset >= 17
    assert manifest.dataset.source.startswith("idx:")
    assert (manifest.dataset.train_size, manifest.dataset.validation_size) == (350, 50)
    assert manifest.dataset.test_size == 100
    for field in TrainConfig().to_dict():
        assert field in manifest.training
    assert manifest.training["epochs"] == 1
    assert {"torch", "onnx", "onnxruntime", "numpy", "python"} <= set(manifest.libraries)
    m = manifest.metrics
    assert np.isfinite(m.loss)
    assert m.loss == pytest.approx(m.reconstruction + m.kl)
    assert len(m.kl_per_dim) == 30
    assert sum(m.kl_per_dim) == pytest.approx(m.kl)
    assert m.extra["parity_encoder_max_abs_diff"] <= 1e-5
    # Every field of the schema is written (nothing left to a default by accident).
    written = json.loads((model_dir / "model.json").read_text())
    assert set(written) == set(ModelManifest.model_fields)


def test_exported_graphs_have_a_dynamic_batch_axis(trained):
    _, _, model_dir, _ = trained
    vae = OnnxVAE(model_dir)
    for n in (1, 7):
        mu, sigma = vae.encode(np.random.default_rng(n).random((n, 784), dtype=np.float32))
        assert mu.shape == sigma.shape == (n, 30)
        assert (sigma >= 0).all()
        images = vae.decode(np.zeros((n, 30), np.float32))
        assert images.shape == (n, 784)
        assert images.min() >= 0
        assert images.max() <= 1


def test_parity_holds_and_a_mismatch_fails_the_export(trained):
    _, idx_dir, model_dir, checkpoint = trained
    model, _ = load_checkpoint(checkpoint)
    images = load_mnist(idx_dir=idx_dir, validation_size=0).test_images
    report = check_parity(model, OnnxVAE(model_dir), images)
    assert report.samples >= 256
    assert report.encoder_max_abs_diff <= 1e-5
    assert report.decoder_max_abs_diff <= 1e-5
    with torch.no_grad():
        model.decoder.out.bias += 1e-3
    with pytest.raises(ExportError, match="disagree"):
        check_parity(model, OnnxVAE(model_dir), images)


def test_evaluate_writes_the_report(trained):
    _, _, model_dir, _ = trained
    report_dir = model_dir / "report"
    assert {p.name for p in report_dir.iterdir()} >= REPORT_FILES
    text = (report_dir / "report.md").read_text()
    manifest = load_manifest(model_dir)
    assert f"{manifest.metrics.loss:.3f}" in text
    assert "active units" in text
    for name in REPORT_FILES - {"report.md", "interpolation.gif"}:
        assert f"({name})" in text


def test_training_is_deterministic_on_cpu(tmp_path):
    idx_dir = write_idx_dir(tmp_path / "idx", n_train=120, n_test=10)
    data = load_mnist(idx_dir=idx_dir, validation_size=20)
    config = TrainConfig(epochs=1, batch_size=40, latent_dim=4, device="cpu")
    first = train(config, data, progress=False, log=lambda _: None)
    second = train(config, data, progress=False, log=lambda _: None)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert first.history[0].train_loss == second.history[0].train_loss
    assert first.history[0].validation_loss is not None


def test_the_progress_bar_stays_out_of_logs_that_are_not_a_terminal(tmp_path, capsys):
    idx_dir = write_idx_dir(tmp_path / "idx", n_train=120, n_test=10)
    data = load_mnist(idx_dir=idx_dir, validation_size=20)
    config = TrainConfig(epochs=1, batch_size=40, latent_dim=4, device="cpu")
    lines: list[str] = []
    train(config, data, progress=True, log=lines.append)
    assert "\r" not in capsys.readouterr().err  # pytest's capture is not a terminal
    assert any("train loss" in line for line in lines)  # the summary line is still logged


def test_export_of_a_sigma_model_reports_abs_sigma(tmp_path):
    idx_dir = write_idx_dir(tmp_path / "idx", n_train=60, n_test=20)
    data = load_mnist(idx_dir=idx_dir, validation_size=0)
    config = TrainConfig(epochs=1, batch_size=30, parameterization="sigma", device="cpu")
    result = train(config, data, progress=False, log=lambda _: None)
    ckpt = save_checkpoint(result, data, tmp_path / "ckpt.pt")
    model, checkpoint = load_checkpoint(ckpt)
    manifest = export_model(
        model,
        config,
        model_dir=tmp_path / "model",
        dataset=checkpoint["dataset"],
        test_images=data.test_images,
    )
    assert manifest.parameterization == "sigma"
    _, sigma = OnnxVAE(tmp_path / "model").encode(data.test_images)
    with torch.no_grad():
        _, scale = model.encoder(torch.from_numpy(data.test_images))
    np.testing.assert_allclose(sigma, scale.abs().numpy(), atol=1e-5)


def test_cli_reports_data_errors_without_a_traceback(tmp_path, capsys):
    code = main(["evaluate", "--idx-dir", str(tmp_path), "--model-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "t10k-images-idx3-ubyte.gz" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--checkpoint", "{tmp}/missing.pt"], "checkpoint not found"),
        (["export", "--checkpoint", "{tmp}/garbage.pt"], "not a checkpoint written by"),
        (["train", "--epochs", "0", "--idx-dir", "{tmp}"], "epochs must be >= 1"),
        (["train", "--name", "../x", "--idx-dir", "{tmp}"], "may hold only letters"),
        (["train", "--device", "cuda", "--idx-dir", "{idx}", "--validation-size", "5"], "CUDA"),
    ],
)
def test_cli_reports_user_errors_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    idx_dir = write_idx_dir(tmp_path / "idx", n_train=20, n_test=5)
    argv = [a.format(tmp=tmp_path, idx=idx_dir) for a in args]
    argv += ["--checkpoint", str(tmp_path / "c.pt")] if argv[0] == "train" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


def test_a_failed_export_leaves_the_model_directory_untouched(trained, tmp_path, monkeypatch):
    _, idx_dir, _, checkpoint = trained
    target = tmp_path / "model"
    target.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", "model.json"):
        (target / name).write_text(f"the previous {name}")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def fail(*_args, **_kwargs):
        raise ExportError("simulated failure after both graphs passed their checks")

    # The last step before the files move: nothing may have been replaced yet.
    monkeypatch.setattr("training.export.library_versions", fail)
    argv = ["export", "--checkpoint", str(checkpoint), "--idx-dir", str(idx_dir)]
    assert main([*argv, "--model-dir", str(target)]) == 2
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_a_model_of_another_image_side_is_trained_exported_evaluated_and_served(tmp_path):
    """Digits centred on 32x32: the manifest, graphs and report follow; the service's launcher
    check and HTTP layer serve it (its image shape comes from the manifest)."""
    idx_dir = write_idx_dir(tmp_path / "idx", n_train=200, n_test=60)
    model_dir = tmp_path / "model32"
    args = ["all", "--idx-dir", str(idx_dir), "--epochs", "1", "--batch-size", "50"]
    args += ["--validation-size", "50", "--model-dir", str(model_dir), "--image-side", "32"]
    args += ["--latent-dim", "8", "--checkpoint", str(tmp_path / "c.pt"), "--no-progress"]
    assert main(args) == 0
    manifest = load_manifest(model_dir)
    assert manifest.image_shape == (32, 32)
    assert manifest.encoder.inputs[0].shape == ["batch", 1024]
    assert manifest.decoder.outputs[0].shape == ["batch", 1024]
    assert (model_dir / "report" / "reconstructions.png").is_file()
    # Padded digits: the border stays black in reconstructions of the test set.
    data = load_mnist(idx_dir=idx_dir, validation_size=0)
    padded = pad_images(data.test_images, 32).reshape(-1, 32, 32)
    assert padded[:, :2].max() == 0
    assert padded[:, 2:30, 2:30].max() > 0
    settings = Settings(model_dir=model_dir, workers=1, access_log=False)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/encode", json={"images": padded[:2].tolist()})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["mu"][0]) == 8


@pytest.mark.parametrize("side", [27, 29, 31])
def test_an_image_side_below_28_or_of_odd_padding_is_refused(side):
    with pytest.raises(ValueError, match="image_side"):
        TrainConfig(image_side=side)


def test_all_calibrates_the_anomaly_score_on_the_held_out_split(trained):
    _, _, model_dir, _ = trained
    calibration = load_manifest(model_dir).calibration
    assert calibration is not None
    assert calibration.size == 50  # the validation split of the fixture run
    assert len(calibration.quantiles) == 101
    assert calibration.quantiles == sorted(calibration.quantiles)
    assert "validation" in calibration.data


def test_auroc_is_the_mann_whitney_statistic():
    from training.anomaly import auroc

    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])) == 1.0
    assert auroc(np.array([4.0, 5.0]), np.array([1.0, 2.0, 3.0])) == 0.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert auroc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == 0.75
