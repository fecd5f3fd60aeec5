"""The evaluation figures: image grids with Pillow (small PNGs), plots with matplotlib (Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

DPI = 80


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _side(images: np.ndarray) -> int:
    """The side of flat square images (784 -> 28)."""
    side = math.isqrt(images.shape[1])
    assert side * side == images.shape[1], "square images only"
    return side


def image_grid(images: np.ndarray, columns: int, scale: int = 2, pad: int = 2) -> Image.Image:
    """Tile flat [n, side*side] images into a grayscale grid, upscaled `scale` times."""
    n = len(images)
    side = _side(images)
    rows = -(-n // columns)
    cell = side + pad
    canvas = np.full((rows * cell + pad, columns * cell + pad), 40, dtype=np.uint8)
    for i, img in enumerate(_to_uint8(images).reshape(n, side, side)):
        r, c = divmod(i, columns)
        canvas[pad + r * cell : pad + r * cell + side, pad + c * cell : pad + c * cell + side] = img
    grid = Image.fromarray(canvas, mode="L")
    return grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)


def save_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: Path) -> None:
    """Originals in the odd rows, their reconstructions right below."""
    columns = 10
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start : start + columns], reconstructions[start : start + columns]]
    image_grid(np.concatenate(rows), columns).save(path, optimize=True)


def save_samples(images: np.ndarray, path: Path, columns: int = 10) -> None:
    image_grid(images, columns).save(path, optimize=True)


def save_interpolation(frames: np.ndarray, png_path: Path, gif_path: Path) -> None:
    """A strip of all frames, and an animated GIF that goes there and back."""
    image_grid(frames, columns=len(frames)).save(png_path, optimize=True)
    side = _side(frames)
    big = [
        Image.fromarray(f, mode="L").resize((side * 4, side * 4), Image.Resampling.NEAREST)
        for f in _to_uint8(frames).reshape(-1, side, side)
    ]
    loop = big + big[-2:0:-1]
    loop[0].save(gif_path, save_all=True, append_images=loop[1:], duration=120, loop=0)


def save_latent_histograms(
    z: np.ndarray, dims: Sequence[int], kl_per_dim: Sequence[float], path: Path
) -> None:
    """Histograms of sampled codes for a few coordinates, against the N(0, 1) density."""
    cols = 3
    rows = -(-len(dims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.3 * rows), squeeze=False)
    grid = np.linspace(-4, 4, 200)
    density = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    for ax, dim in zip(axes.flat, dims, strict=False):
        ax.hist(z[:, dim], bins=60, range=(-4, 4), density=True, color="tab:blue", alpha=0.6)
        ax.plot(grid, density, color="black", lw=1.2, label="N(0, 1)")
        ax.set_title(f"z[{dim}]  (KL {kl_per_dim[dim]:.2f} nats)", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(dims) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Encodings of the test set (z sampled once) vs N(0, 1)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def pca(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Project onto the top principal components; also return the explained variance ratios."""
    centred = x.astype(np.float64) - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    ratios = s**2 / np.sum(s**2)
    return centred @ vt[:components].T, ratios[:components]


def save_pca(mu: np.ndarray, labels: np.ndarray, path_2d: Path, path_3d: Path) -> None:
    """PCA of the test encodings' means, coloured by digit, in 2-D and 3-D."""
    proj, ratios = pca(mu, 3)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for digit in range(10):
        sel = labels == digit
        ax.scatter(proj[sel, 0], proj[sel, 1], s=2, color=cmap(digit), label=str(digit), alpha=0.6)
    ax.set_xlabel(f"PC1 ({ratios[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ratios[1]:.0%})")
    ax.legend(markerscale=4, fontsize=7, loc="best", ncols=2)
    ax.set_title("PCA of E[z|x] on the test set", fontsize=10)
    fig.tight_layout()
    fig.savefig(path_2d, dpi=DPI)
    plt.close(fig)

    fig = plt.figure(figsize=(5.5, 4.5))
    ax3 = fig.add_subplot(projection="3d")
    for digit in range(10):
        sel = labels == digit
        ax3.scatter(proj[sel, 0], proj[sel, 1], proj[sel, 2], s=1, color=cmap(digit), alpha=0.5)
    ax3.set_title("PCA of E[z|x] on the test set, 3 components", fontsize=10)
    for axis, name, ratio in zip("xyz", ("PC1", "PC2", "PC3"), ratios, strict=True):
        getattr(ax3, f"set_{axis}label")(f"{name} ({ratio:.0%})", fontsize=8)
    ax3.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path_3d, dpi=DPI)
    plt.close(fig)


def save_kl_per_dim(kl_per_dim: Sequence[float], mu_variance: Sequence[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    x = np.arange(len(kl_per_dim))
    ax.bar(x - 0.2, kl_per_dim, width=0.4, label="KL per dimension (nats)")
    ax.bar(x + 0.2, mu_variance, width=0.4, label="Cov_x(E[z|x])")
    ax.set_xlabel("latent dimension")
    ax.set_title("Per latent dimension on the test set (inactive ones are ~0)", fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def save_training_curve(history: Sequence[dict[str, float | None]], path: Path) -> None:
    epochs = [int(h["epoch"] or 0) for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    if all(h.get("validation_loss") is not None for h in history):
        ax.plot(epochs, [h["validation_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image")
    ax.set_title("Training: mean loss per epoch", fontsize=10)
    losses = [float(h["train_loss"] or 0) for h in history]
    ax.set_ylim(min(losses) - 1, min(losses) + 15)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def save_score_histograms(results: Sequence[tuple[str, np.ndarray]], path: Path) -> None:
    """The anomaly score's distribution for each kind of image (log-scaled scores)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    everything = np.concatenate([scores for _, scores in results])
    bins = np.geomspace(max(everything.min(), 1e-3), everything.max(), 80)
    for name, scores in results:
        ax.hist(scores, bins=bins, histtype="step", lw=1.3, label=name, density=True)
    ax.set_xscale("log")
    ax.set_xlabel("neg ELBO (4 draws), log scale")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
