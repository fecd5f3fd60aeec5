"""The training configuration: one dataclass, recorded in full in the model manifest."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from training.images import check_side

Parameterization = Literal["sigma", "logvar"]
ReconstructionKind = Literal["sse", "bce"]
LrSchedule = Literal["constant", "cosine"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (given the data).

    The defaults are the project's default recipe: the tutorial's architecture
    (784-250-(30, 30) encoder, 30-320-784 decoder) and loss (SSE + KL), trained with the
    log-variance head (the linear sigma head diverged with small batches), batches of 100,
    Adam at 2e-3 with a cosine decay, and 150 epochs (see README for the measurements).
    """

    name: str = "mnist-vae"
    version: str = "1.0.0"
    # Images are MNIST digits centred on an image_side x image_side canvas (28: as they are).
    image_side: int = 28
    encoder_hidden: int = 250
    decoder_hidden: int = 320
    latent_dim: int = 30
    parameterization: Parameterization = "logvar"
    reconstruction: ReconstructionKind = "sse"
    epochs: int = 150
    batch_size: int = 100
    learning_rate: float = 2e-3
    lr_schedule: LrSchedule = "cosine"
    min_learning_rate: float = 1e-5
    validation_size: int = 2000
    seed: int = 0
    device: Device = "auto"
    # One CPU thread: results then do not depend on the machine's core count, and for a model
    # this small it is also the fastest on a busy machine (more threads measured slower).
    threads: int = 1

    def __post_init__(self) -> None:
        # The name becomes a directory name (runs/<name>, models/<name>) and the manifest's name.
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name) or self.name in (".", ".."):
            raise ValueError(f"name {self.name!r} may hold only letters, digits, '.', '_' and '-'")
        for name in (
            "encoder_hidden",
            "decoder_hidden",
            "latent_dim",
            "epochs",
            "batch_size",
            "threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_learning_rate <= self.learning_rate or self.learning_rate <= 0:
            raise ValueError(
                f"need 0 <= min_learning_rate <= learning_rate and learning_rate > 0, got "
                f"{self.min_learning_rate} and {self.learning_rate}"
            )
        if self.validation_size < 0:
            raise ValueError("validation_size must be >= 0")
        check_side(self.image_side)

    @property
    def image_size(self) -> int:
        return self.image_side * self.image_side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


TUTORIAL_RECIPE = TrainConfig(
    parameterization="sigma", epochs=50, batch_size=250, learning_rate=1e-3, lr_schedule="constant"
)
"""The tutorial's own recipe, for comparison (`python -m training all --recipe tutorial`)."""

TUTORIAL_RECIPE_TEST_LOSS = 28.910
"""Test loss of TUTORIAL_RECIPE as measured here (seed 0, CPU, this project's data split)."""
