"""`evaluate`: measure an exported model directory on the test set and write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training import report
from training.anomaly import AnomalyResult, anomaly_results
from training.calibrate import SAMPLES, SEED
from training.config import TUTORIAL_RECIPE_TEST_LOSS
from training.images import pad_images
from training.metrics import ACTIVE_UNIT_THRESHOLD, EVAL_SEED, Evaluation, evaluate_onnx
from training.onnx_model import OnnxVAE
from vae_manifest import ModelManifest, load_manifest

REPORT_DIR = "report"
ANOMALY_FIGURE = "anomaly_scores.png"
FIGURE_SEED = 0


def _interpolation_pair(labels: np.ndarray) -> tuple[int, int]:
    """Indices of the first test images of two different digits (a 3 and an 8 when present)."""
    start = np.flatnonzero(labels == 3)
    end = np.flatnonzero(labels == 8)
    if len(start) and len(end):
        return int(start[0]), int(end[0])
    first = int(np.flatnonzero(labels != labels[0])[0]) if (labels != labels[0]).any() else 1
    return 0, min(first, len(labels) - 1)


def _with_article(digit: int) -> str:
    return f"an {digit}" if digit == 8 else f"a {digit}"


def write_figures(
    vae: OnnxVAE,
    evaluation: Evaluation,
    images: np.ndarray,
    labels: np.ndarray,
    out: Path,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Write every figure into `out`; returns {title: file name} in report order."""
    rng = np.random.default_rng(FIGURE_SEED)
    d = evaluation.mu.shape[1]
    figures: dict[str, str] = {}

    shown = np.arange(min(30, len(images)))
    report.save_reconstructions(
        images[shown], vae.decode(evaluation.mu[shown]), out / "reconstructions.png"
    )
    figures["Test images (odd rows) and their reconstructions from E[z|x]"] = "reconstructions.png"

    samples = vae.decode(rng.standard_normal((100, d)).astype(np.float32))
    report.save_samples(samples, out / "samples.png")
    figures["Samples: decoded z ~ N(0, I)"] = "samples.png"

    a, b = _interpolation_pair(labels)
    t = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None]
    frames = vae.decode((1 - t) * evaluation.mu[a] + t * evaluation.mu[b])
    report.save_interpolation(frames, out / "interpolation.png", out / "interpolation.gif")
    figures[
        f"Linear interpolation of E[z|x] between {_with_article(int(labels[a]))} and "
        f"{_with_article(int(labels[b]))} ([GIF](interpolation.gif))"
    ] = "interpolation.png"

    # The most informative coordinates (highest KL) and the least, to show both behaviours.
    order = np.argsort(evaluation.kl_per_dim)[::-1]
    dims = sorted({int(i) for i in [*order[:4], *order[-2:]]})
    report.save_latent_histograms(
        evaluation.z, dims, evaluation.kl_per_dim, out / "latent_histograms.png"
    )
    figures[
        "Histograms of encoding coordinates (the 4 most and 2 least informative) against "
        "the N(0, 1) density"
    ] = "latent_histograms.png"

    report.save_pca(evaluation.mu, labels, out / "pca_2d.png", out / "pca_3d.png")
    figures["2-D PCA of the test encodings, coloured by digit"] = "pca_2d.png"
    figures["3-D PCA of the test encodings"] = "pca_3d.png"

    report.save_kl_per_dim(evaluation.kl_per_dim, evaluation.mu_variance, out / "kl_per_dim.png")
    figures["KL and Cov_x(E[z|x]) per latent dimension"] = "kl_per_dim.png"

    if history:
        report.save_training_curve(history, out / "training_curve.png")
    if history or (out / "training_curve.png").is_file():  # kept when re-evaluated without it
        figures["Loss per image during training"] = "training_curve.png"
    return figures


def _anomaly_markdown(
    results: list[AnomalyResult], figure: str, manifest: ModelManifest
) -> list[str]:
    digits = results[0].scores
    lines = [
        "## Anomaly scores",
        "",
        f"The anomaly score `POST /score` answers (neg ELBO with {SAMPLES} draws, seed {SEED}; "
        "`vae_manifest/scoring.py`) of the MNIST test digits and of five kinds of images "
        "made from them that are not MNIST digits. AUROC: the chance that such an image "
        "scores higher than a test digit (0.5 is chance, 1.0 perfect). Reproduce with "
        "`python -m training evaluate --model-dir <this model>`.",
        "",
        "| images | median score | 99th percentile | AUROC vs test digits |",
        "|---|---|---|---|",
    ]
    for result in results:
        auroc = "-" if result.auroc is None else f"{result.auroc:.4f}"
        lines.append(
            f"| {result.name} ({len(result.scores)}) | {np.median(result.scores):.1f} | "
            f"{np.percentile(result.scores, 99):.1f} | {auroc} |"
        )
    calibration = manifest.calibration
    if calibration is None:
        placed = "No calibration in the manifest yet (`python -m training calibrate`)."
    else:
        threshold = calibration.quantiles[99]
        placed = (
            f"Against the calibration ({calibration.data}), the outlier threshold at its 99th "
            f"percentile is {threshold:.1f}: {int((digits > threshold).sum())} of {len(digits)} "
            "test digits are above it."
        )
    return [*lines, "", placed, "", f"![{figure}]({figure})", ""]


def _report_markdown(
    manifest: ModelManifest, evaluation: Evaluation, figures: dict[str, str], n_test: int
) -> str:
    m = manifest
    t = m.training
    kind = m.metrics.reconstruction_kind.upper()
    lines = [
        f"# {m.name} {m.version}: evaluation report",
        "",
        f"{m.description}. Created {m.created_at.isoformat()}.",
        "",
        f"Trained on {m.dataset.train_size} images ({m.dataset.source}, sha256 "
        f"`{m.dataset.sha256[:16]}...`), {m.dataset.validation_size} held out for validation; "
        f"measured on the {n_test} test images with z sampled once (seed {EVAL_SEED}).",
        "",
        "## Metrics (per test image)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| total loss ({kind} + KL) | **{evaluation.loss:.3f}** |",
        f"| reconstruction error ({kind}) | {evaluation.reconstruction:.3f} |",
        f"| KL(q(z\\|x) \\|\\| N(0, I)) | {evaluation.kl:.3f} |",
        f"| active units (Cov_x(E[z\\|x]) > {ACTIVE_UNIT_THRESHOLD}) | "
        f"{evaluation.active_units} of {len(evaluation.kl_per_dim)} |",
        "",
        "## Training",
        "",
        f"Parameterisation `{t.get('parameterization')}`, {t.get('epochs')} epochs, batch "
        f"{t.get('batch_size')}, Adam lr {t.get('learning_rate')} ({t.get('lr_schedule')} "
        f"schedule, floor {t.get('min_learning_rate')}), seed {t.get('seed')}.",
    ]
    if "train_seconds" in t:
        lines.append(
            f"Trained in {float(t['train_seconds']):.0f} s on `{t.get('trained_on', '?')}`."
        )
    extra = m.metrics.extra
    if "final_train_loss" in extra:
        lines.append(
            f"Final epoch: train loss {extra['final_train_loss']:.3f}"
            + (
                f", validation loss {extra['final_validation_loss']:.3f}."
                if "final_validation_loss" in extra
                else "."
            )
        )
    lines += [
        "",
        f"For comparison, the tutorial's own recipe (`sigma`, 50 epochs, batch 250, constant "
        f"Adam 1e-3; `python -m training all --recipe tutorial`) measured a test loss of "
        f"{TUTORIAL_RECIPE_TEST_LOSS:.3f} on the same data and metric; this model's is "
        f"{evaluation.loss - TUTORIAL_RECIPE_TEST_LOSS:+.3f}. The README's training section "
        "lists the recipes tried and why this one was chosen.",
    ]
    lines += [
        "",
        "## KL per dimension",
        "",
        "| dim | KL (nats) | Cov_x(E[z\\|x]) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {i} | {kl:.3f} | {var:.3f} |"
        for i, (kl, var) in enumerate(
            zip(evaluation.kl_per_dim, evaluation.mu_variance, strict=True)
        )
    ]
    lines += ["", "## Figures", ""]
    for title, file in figures.items():
        lines += [f"### {title}", "", f"![{file}]({file})", ""]
    return "\n".join(lines)


def evaluate_model_dir(
    model_dir: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    history: list[dict[str, Any]] | None = None,
    report_dir: str | Path | None = None,
) -> tuple[Evaluation, Path]:
    """Verify the model directory, measure the test set, and write `report/report.md` + figures."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    height, width = manifest.image_shape
    if height != width:
        raise ValueError(f"{model_dir}: MNIST digits fit square models only, got {height}x{width}")
    raw_images = images
    images = pad_images(images, height)
    vae = OnnxVAE(model_dir)
    evaluation = evaluate_onnx(vae, images, manifest.metrics.reconstruction_kind, EVAL_SEED)
    out = Path(report_dir) if report_dir is not None else model_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(vae, evaluation, images, labels, out, history)
    kind = manifest.metrics.reconstruction_kind
    results = anomaly_results(vae, raw_images, height, kind)
    report.save_score_histograms([(r.name, r.scores) for r in results], out / ANOMALY_FIGURE)
    anomaly = "\n".join(_anomaly_markdown(results, ANOMALY_FIGURE, manifest))
    path = out / "report.md"
    path.write_text(
        _report_markdown(manifest, evaluation, figures, len(images)) + "\n" + anomaly,
        encoding="utf-8",
    )
    return evaluation, path
