"""The training loop: seeded, deterministic on CPU, a progress bar and a summary line per epoch."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from training.config import TrainConfig
from training.errors import TrainingError
from training.images import pad_images
from training.loss import vae_loss
from training.mnist import MnistData
from training.model import VAE


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float | None
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    model: VAE
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


class ImageBatches(Dataset[torch.Tensor]):
    """Images indexed a whole batch at a time (`__getitems__`), avoiding per-item collation."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(indices)]


def _whole_batch(batch: torch.Tensor) -> torch.Tensor:
    return batch


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return torch.device(device)


def seed_everything(seed: int, device: torch.device, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    if device.type == "cuda":
        # cuBLAS needs this for deterministic matmuls; warn_only as a few CUDA ops have no
        # deterministic kernel.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


def build_model(config: TrainConfig) -> VAE:
    return VAE(
        encoder_hidden=config.encoder_hidden,
        decoder_hidden=config.decoder_hidden,
        latent_dim=config.latent_dim,
        parameterization=config.parameterization,
        image_size=config.image_size,
    )


def _lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.lr_schedule == "constant":
        return 1.0
    floor = config.min_learning_rate / config.learning_rate
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def batch_loss(model: VAE, batch: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The mean per-image loss of one batch, z sampled once per image."""
    rec, mu, scale, _ = model(batch)
    loss, _, _ = vae_loss(
        rec, batch, mu, scale, parameterization=config.parameterization, kind=config.reconstruction
    )
    return loss


@torch.no_grad()
def mean_loss(
    model: VAE, images: torch.Tensor, config: TrainConfig, batch_size: int = 1000
) -> float:
    """Mean per-image loss (z sampled once) over `images`, without touching gradients."""
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        total += batch_loss(model, batch, config).item() * len(batch)
    return total / max(len(images), 1)


def train(
    config: TrainConfig,
    data: MnistData,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a VAE on `data.train_images`; report validation loss each epoch if there is a split.

    `log` receives the summary lines (default: stderr).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device = resolve_device(config.device)
    seed_everything(config.seed, device, config.threads)
    model = build_model(config).to(device)
    side = config.image_side
    train_images = torch.from_numpy(pad_images(data.train_images, side)).to(device)
    val_images = torch.from_numpy(pad_images(data.validation_images, side)).to(device)
    loader = DataLoader(
        ImageBatches(train_images),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
        collate_fn=_whole_batch,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    total_steps = config.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(config, step, total_steps)
    )
    result = TrainResult(model=model, config=config, device=str(device))
    log(
        f"training {config.name}: {len(train_images)} train / {len(val_images)} validation "
        f"images, {config.epochs} epochs, device {device}, "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        running, seen = 0.0, 0
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{config.epochs}",
            leave=False,
            disable=None if progress else True,  # None: drawn only on a terminal, not in CI logs
            unit="batch",
            file=sys.stderr,
            mininterval=0.5,
        )
        for batch in bar:
            loss = batch_loss(model, batch, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(batch)
            seen += len(batch)
            bar.set_postfix(loss=f"{running / seen:.3f}", refresh=False)
        bar.close()
        train_loss = running / max(seen, 1)
        val_loss = mean_loss(model, val_images, config) if len(val_images) else None
        seconds = time.perf_counter() - epoch_start
        result.history.append(EpochRecord(epoch, train_loss, val_loss, lr, seconds))
        val_text = f"{val_loss:.4f}" if val_loss is not None else "n/a"
        log(
            f"epoch {epoch:3d}/{config.epochs}  train loss {train_loss:.4f}  "
            f"validation loss {val_text}  lr {lr:.2e}  {seconds:.1f}s"
        )
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss {train_loss}); lower --learning-rate "
                "or use --parameterization logvar"
            )
    result.seconds = time.perf_counter() - started
    model.eval()
    return result


def save_checkpoint(result: TrainResult, data: MnistData, path: str | Path) -> Path:
    """Save weights, configuration, history and data provenance (loadable with weights_only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "config": result.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
            "history": [vars(r) for r in result.history],
            "train_seconds": result.seconds,
            "device": result.device,
            "dataset": {
                "source": data.source,
                "sha256": data.sha256,
                "train_size": len(data.train_images),
                "validation_size": len(data.validation_images),
                "test_size": len(data.test_images),
            },
        },
        path,
    )
    return path


def load_checkpoint(path: str | Path) -> tuple[VAE, dict[str, Any]]:
    """Rebuild the trained model on CPU; returns (model in eval mode, checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found; run `python -m training train`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(TrainConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:  # a torch pickle can fail in many ways; all mean "not ours"
        raise TrainingError(
            f"{path}: not a checkpoint written by `python -m training train` ({exc})"
        ) from None
    return model.eval(), checkpoint
