"""A loaded, verified VAE model: two ONNX Runtime sessions behind synchronous numpy calls."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.runtime.errors import InvalidInput, ModelLoadError
from service.runtime.options import DEFAULT_SESSION_OPTIONS, SessionOptions
from service.runtime.providers import create_session, resolve_providers
from vae_manifest import GraphSpec, ManifestError, ModelManifest, load_manifest

logger = logging.getLogger(__name__)

ENCODER_INPUT = "images"
ENCODER_OUTPUTS = ("mu", "sigma")
DECODER_INPUT = "z"
DECODER_OUTPUTS = ("images",)

# Vectorised element-wise kernels (Softplus, Exp, Sigmoid, ...) compute the last few
# elements of a buffer on a different code path (half-width or scalar), so a row's result
# could change in the last bit with the number of rows sharing its call. Every call therefore
# ends with at least this many elements of zero padding in every [batch, width] tensor
# (assuming hidden layers are no narrower than the latent space): the real rows always go
# through full SIMD registers, and a request is bit-identical alone or micro-batched.
TAIL_PADDING_ELEMENTS = 64

_GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


# Array kinds that hold numbers: float, signed and unsigned integers (not bool, not objects).
NUMERIC_KINDS = "fiu"


def ort_session_options(options: SessionOptions) -> ort.SessionOptions:
    """Translate our options into ONNX Runtime's."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _GRAPH_OPTIMIZATION[options.graph_optimization]
    spinning = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    so.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return so


def numeric_array(value: object, field: str) -> np.ndarray:
    """``value`` as a numpy array of numbers (any shape), or InvalidInput naming ``field``."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(field, f"must be a numeric array: {exc}") from None
    if array.dtype.kind not in NUMERIC_KINDS:
        raise InvalidInput(field, f"must contain numbers, got dtype {array.dtype}")
    return array


def as_rows(value: object, field: str, width: int) -> np.ndarray:
    """Check an (n, width) numeric array with n >= 1; return it as C-contiguous float32.

    Values are not range-checked here (the API layer does that); NaN or Inf never crash.
    """
    array = numeric_array(value, field)
    if array.ndim != 2:
        raise InvalidInput(field, f"must be 2-D (n, {width}), got shape {array.shape}")
    if array.shape[1] != width:
        raise InvalidInput(field, f"each row must have {width} values, got {array.shape[1]}")
    if array.shape[0] < 1:
        raise InvalidInput(field, "must contain at least one row")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_graph(
    session: ort.InferenceSession,
    spec: GraphSpec,
    file: Path,
    inputs: dict[str, int],
    outputs: dict[str, int],
) -> None:
    """The manifest, the fixed I/O contract and the graph itself must all agree."""
    for kind, declared, actual_args, expected in (
        ("inputs", spec.inputs, session.get_inputs(), inputs),
        ("outputs", spec.outputs, session.get_outputs(), outputs),
    ):
        names = [t.name for t in declared]
        if names != list(expected):
            raise ModelLoadError(
                f"{file}: manifest declares {kind} {names}, expected {list(expected)}"
            )
        actual_names = [a.name for a in actual_args]
        if actual_names != names:
            raise ModelLoadError(
                f"{file}: graph has {kind} {actual_names}, manifest declares {names}"
            )
        for tensor, arg in zip(declared, actual_args, strict=True):
            width = expected[tensor.name]
            if len(tensor.shape) != 2 or tensor.shape[1] != width:
                raise ModelLoadError(
                    f"{file}: manifest shape of {tensor.name!r} is {tensor.shape}, "
                    f"expected [batch, {width}]"
                )
            shape = list(arg.shape)
            if arg.type != "tensor(float)" or len(shape) != 2 or shape[1] != width:
                raise ModelLoadError(
                    f"{file}: graph {tensor.name!r} is {arg.type} {shape}, "
                    f"expected tensor(float) [batch, {width}]"
                )
            if isinstance(shape[0], int):
                raise ModelLoadError(
                    f"{file}: graph {tensor.name!r} has a fixed batch size {shape[0]}; "
                    "the batch axis must be dynamic"
                )


class VAEModel:
    """Synchronous and thread-safe (ONNX Runtime sessions allow concurrent ``run`` calls)."""

    def __init__(
        self,
        manifest: ModelManifest,
        encoder_session: ort.InferenceSession,
        decoder_session: ort.InferenceSession,
        model_dir: Path,
    ) -> None:
        self.manifest = manifest
        self.model_dir = model_dir
        self.latent_dim = manifest.latent_dim
        self.image_size = manifest.image_size
        self.encoder_session = encoder_session
        self.decoder_session = decoder_session
        providers = list(encoder_session.get_providers())
        providers += [p for p in decoder_session.get_providers() if p not in providers]
        self.providers: list[str] = providers
        narrowest = min(self.latent_dim, self.image_size)
        self.pad_rows = -(-TAIL_PADDING_ELEMENTS // narrowest)

    @classmethod
    def load(
        cls, model_dir: str | Path, options: SessionOptions = DEFAULT_SESSION_OPTIONS
    ) -> VAEModel:
        """Verify and load a model directory; any problem raises :class:`ModelLoadError`."""
        model_dir = Path(model_dir)
        try:
            manifest = load_manifest(model_dir, verify=True)
        except ManifestError as exc:
            raise ModelLoadError(str(exc)) from None
        providers = resolve_providers(options.providers)
        so = ort_session_options(options)
        d, size = manifest.latent_dim, manifest.image_size
        sessions = []
        for spec, inputs, outputs in (
            (manifest.encoder, {ENCODER_INPUT: size}, dict.fromkeys(ENCODER_OUTPUTS, d)),
            (manifest.decoder, {DECODER_INPUT: d}, dict.fromkeys(DECODER_OUTPUTS, size)),
        ):
            file = model_dir / spec.file
            session = create_session(file, so, providers)
            _check_graph(session, spec, file, inputs, outputs)
            sessions.append(session)
        model = cls(manifest, sessions[0], sessions[1], model_dir)
        logger.info(
            "loaded model %s %s from %s (latent_dim %d) on providers %s",
            manifest.name,
            manifest.version,
            model_dir,
            d,
            model.providers,
        )
        return model

    def warmup(self, rounds: int = 3) -> None:
        """Run both graphs at a few batch sizes so first requests don't pay for allocation."""
        for rows in (1, 64):
            for _ in range(rounds):
                self.run_encoder(np.zeros((rows, self.image_size), np.float32))
                self.run_decoder(np.zeros((rows, self.latent_dim), np.float32))

    def check_images(self, images: object) -> np.ndarray:
        return as_rows(images, "images", self.image_size)

    def check_latents(self, z: object) -> np.ndarray:
        return as_rows(z, "z", self.latent_dim)

    def run_encoder(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, H*W) -> mu, sigma, each float32 (n, latent_dim)."""
        mu, sigma = _run(
            self.encoder_session, ENCODER_INPUT, self.check_images(images), self.pad_rows
        )
        return mu, sigma

    def run_decoder(self, z: np.ndarray) -> np.ndarray:
        """(n, latent_dim) -> images, float32 (n, H*W) in [0, 1]."""
        (images,) = _run(self.decoder_session, DECODER_INPUT, self.check_latents(z), self.pad_rows)
        return images

    # The padded variants take a float32 C-contiguous (n + pad_rows, width) buffer whose rows
    # past n are zeros (see TAIL_PADDING_ELEMENTS): the micro-batcher writes every request's
    # rows straight into one such buffer instead of concatenating and then padding a copy.

    def run_encoder_padded(self, padded: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.encoder_session.run(None, {ENCODER_INPUT: padded})
        return mu[:n], sigma[:n]

    def run_decoder_padded(self, padded: np.ndarray, n: int) -> tuple[np.ndarray]:
        (images,) = self.decoder_session.run(None, {DECODER_INPUT: padded})
        return (images[:n],)


def padded_input(chunks: Sequence[np.ndarray], pad_rows: int) -> tuple[np.ndarray, int]:
    """The chunks' rows, in order, in one float32 buffer with ``pad_rows`` zero rows after
    them (see TAIL_PADDING_ELEMENTS), and the number of real rows."""
    n = 0
    for chunk in chunks:
        n += chunk.shape[0]
    padded = np.empty((n + pad_rows, chunks[0].shape[1]), np.float32)
    offset = 0
    for chunk in chunks:
        end = offset + chunk.shape[0]
        padded[offset:end] = chunk
        offset = end
    padded[n:] = 0.0
    return padded, n


def _run(
    session: ort.InferenceSession, name: str, rows: np.ndarray, pad_rows: int
) -> list[np.ndarray]:
    padded, n = padded_input((rows,), pad_rows)
    return [out[:n] for out in session.run(None, {name: padded})]
