"""The async facade the HTTP routes call: validation, per-call randomness, micro-batching."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.runtime.batching import MicroBatcher, PaddedRunFn, Part, timed_run, within_deadline
from service.runtime.errors import InvalidInput, ModelNotReady, NonFiniteOutput
from service.runtime.interpolation import METHODS
from service.runtime.model import (
    DECODER_OUTPUTS,
    ENCODER_OUTPUTS,
    VAEModel,
    numeric_array,
    padded_input,
)
from service.runtime.observer import NULL_OBSERVER, Graph, InferenceObserver
from service.runtime.options import DEFAULT_BATCHING_OPTIONS, BatchingOptions
from vae_manifest import scoring

logger = logging.getLogger(__name__)

# Seeds the service draws itself fit in 63 bits so every JSON client and int64 column holds them.
SEED_BITS = 63
MAX_SEED = 2**64 - 1
# The executor runs the warm-up, unbatched calls (batching off) and micro-batched calls above
# `BatchingOptions.inline_max_rows` rows. With the default options every micro-batched call
# runs inline on the event loop (in the GPU image too), so requests never reach these threads.
# When calls do take them, ORT releases the GIL during a run, and two threads let an encoder
# and a decoder call overlap without oversubscribing a worker that has intra-op threads.
EXECUTOR_THREADS = 2


@dataclass
class EncodeResult:
    mu: np.ndarray
    sigma: np.ndarray
    z: np.ndarray
    seed: int


@dataclass
class ScoreResult:
    neg_elbo: np.ndarray  # (n,) float64
    iwae: np.ndarray  # (n,) float64
    seed: int
    samples: int


@dataclass
class GenerateResult:
    z: np.ndarray
    images: np.ndarray
    seed: int | None


def resolve_seed(seed: int | None) -> int:
    """The caller's seed after checking it, or a fresh one (returned so it can be replayed)."""
    if seed is None:
        # os.urandom: cheaper than SeedSequence's entropy gathering, equally unpredictable.
        return int.from_bytes(os.urandom(8), "little") & ((1 << SEED_BITS) - 1)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidInput("seed", f"must be an integer, got {type(seed).__name__}")
    if not 0 <= seed <= MAX_SEED:
        raise InvalidInput("seed", f"must be between 0 and {MAX_SEED}, got {seed}")
    return int(seed)


def _standard_normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    # float64 draws (cast after) match np.random.default_rng(seed).standard_normal(shape),
    # so a client can reproduce the noise with plain numpy.
    return np.random.default_rng(seed).standard_normal(shape)


def _finite(graph: Graph, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The outputs, unless one holds NaN or infinity: a caller never gets those as a result."""
    for out in outputs:
        if not np.isfinite(out).all():
            raise NonFiniteOutput(f"the {graph} produced non-finite values")
    return list(outputs)


class SeededNoise:
    """One call's w ~ N(0, I) from its own `numpy.random.default_rng(seed)`.

    The draw happens where the encoder ran (the event loop or the executor thread, once per
    batch for every request in it), rows in order: a call split across batches keeps drawing
    from the same generator, so its w equals ``default_rng(seed).standard_normal((n, d))``.
    """

    __slots__ = ("_rng", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng: np.random.Generator | None = None

    def draw_into(self, out: np.ndarray) -> None:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        self._rng.standard_normal(out=out)


def sample_z(mu: np.ndarray, sigma: np.ndarray, parts: Sequence[Part]) -> np.ndarray:
    """z = mu + sigma * w for a whole call; rows of parts without noise get w = 0 (z = mu)."""
    if all(noise is None for _, noise in parts):
        return mu
    w = np.zeros(mu.shape, np.float64)
    offset = 0
    for rows, noise in parts:
        if noise is not None:
            noise.draw_into(w[offset : offset + rows])
        offset += rows
    return mu + sigma * w.astype(np.float32)


class VAEService:
    def __init__(
        self,
        model: VAEModel,
        batching: BatchingOptions = DEFAULT_BATCHING_OPTIONS,
        observer: InferenceObserver = NULL_OBSERVER,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.model = model
        self.latent_dim = model.latent_dim
        self.image_size = model.image_size
        self.image_shape: tuple[int, int] = model.manifest.image_shape  # (height, width)
        self.batching = batching
        self.observer = observer
        self.ready = False
        self._given_executor = executor
        self._executor: ThreadPoolExecutor | None = executor
        self._encoder_batcher: MicroBatcher | None = None
        self._decoder_batcher: MicroBatcher | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm up off the event loop, start the batchers, then report ready."""
        if self.ready:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="vae-ort")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        await loop.run_in_executor(self._executor, self.model.warmup)
        logger.info("model warm in %.3f s", time.perf_counter() - started)
        if self.batching.enabled:
            self._encoder_batcher = self._batcher("encoder", self._encode_padded)
            self._decoder_batcher = self._batcher("decoder", self._decode_padded)
            self._encoder_batcher.start()
            self._decoder_batcher.start()
        self.ready = True

    async def stop(self) -> None:
        """Stop taking requests, finish queued ones, release the executor if it is ours."""
        self.ready = False
        for batcher in (self._encoder_batcher, self._decoder_batcher):
            if batcher is not None:
                await batcher.stop()
        self._encoder_batcher = self._decoder_batcher = None
        if self._executor is not None and self._given_executor is None:
            executor, self._executor = self._executor, None
            # Waits for unbatched runs still in flight without blocking the event loop.
            await asyncio.to_thread(executor.shutdown, wait=True)

    def _batcher(self, graph: Graph, run: PaddedRunFn) -> MicroBatcher:
        assert self._executor is not None
        return MicroBatcher(
            graph,
            run,
            pad_rows=self.model.pad_rows,
            max_batch_size=self.batching.max_batch_size,
            max_wait_ms=self.batching.max_wait_ms,
            executor=self._executor,
            observer=self.observer,
            inline_max_rows=self.batching.inline_max_rows,
            max_queued_rows=self.batching.max_queued_rows,
        )

    # Looked up on the model at call time (not bound at start) so tests can swap a graph.
    # The encoder answers (mu, sigma, z); see `sample_z` for z.

    def _encode_padded(self, padded: np.ndarray, n: int, parts: Sequence[Part]) -> list[np.ndarray]:
        mu, sigma = self.model.run_encoder_padded(padded, n)
        return [mu, sigma, sample_z(mu, sigma, parts)]

    def _decode_padded(self, padded: np.ndarray, n: int, parts: Sequence[Part]) -> list[np.ndarray]:
        return list(self.model.run_decoder_padded(padded, n))

    # -- inference -------------------------------------------------------------------------

    async def _infer(
        self, graph: Graph, rows: np.ndarray, noise: SeededNoise | None = None
    ) -> list[np.ndarray]:
        if not self.ready or self._executor is None:
            raise ModelNotReady("the model is not loaded and warm yet")
        batcher = self._encoder_batcher if graph == "encoder" else self._decoder_batcher
        if batcher is not None:
            return _finite(graph, await batcher.submit(rows, noise))
        # Unbatched calls always take the executor: run on the loop one per request, they
        # block it for every call in turn, and some connections wait far longer (the p99).
        run = self._encode_padded if graph == "encoder" else self._decode_padded
        padded, n = padded_input((rows,), self.model.pad_rows)
        submitted = time.perf_counter()
        outputs, started, seconds = await within_deadline(
            asyncio.get_running_loop().run_in_executor(
                self._executor, timed_run, run, padded, n, ((n, noise),)
            ),
            graph,
        )
        try:
            self.observer.queued(graph, max(0.0, started - submitted))
            self.observer.inference(graph, n, 1, seconds)
        except Exception:
            logger.exception("inference observer failed")
        return _finite(graph, outputs)

    async def encode(self, images: np.ndarray, seed: int | None = None) -> EncodeResult:
        """mu, sigma and one sample z = mu + sigma * w, w ~ N(0, I) from this call's seed."""
        rows = self.model.check_images(images)
        seed = resolve_seed(seed)
        mu, sigma, z = await self._infer("encoder", rows, SeededNoise(seed))
        return EncodeResult(mu=mu, sigma=sigma, z=z, seed=seed)

    async def encode_mean(self, images: np.ndarray) -> np.ndarray:
        """The posterior means only: (n, latent_dim)."""
        outputs = await self._infer("encoder", self.model.check_images(images))
        return outputs[0]

    async def run_graph(self, graph: Graph, rows: np.ndarray) -> dict[str, np.ndarray]:
        """One graph's own outputs by name (encoder: mu, sigma; decoder: images), through the
        same micro-batcher as every other call."""
        if graph == "encoder":
            mu, sigma, _ = await self._infer(graph, self.model.check_images(rows))
            return dict(zip(ENCODER_OUTPUTS, (mu, sigma), strict=True))
        outputs = await self._infer(graph, self.model.check_latents(rows))
        return dict(zip(DECODER_OUTPUTS, outputs, strict=True))

    async def score(self, images: np.ndarray, seed: int | None, samples: int) -> ScoreResult:
        """How unusual each image is for the model (`vae_manifest.scoring`): the encoder once,
        the decoder on `samples` draws per image drawn from `seed`, both micro-batched."""
        rows = self.model.check_images(images)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InvalidInput("samples", f"must be an integer >= 1, got {samples!r}")
        seed = resolve_seed(seed)
        mu, sigma, _ = await self._infer("encoder", rows)
        n, d = mu.shape
        eps = _standard_normal(seed, (samples, n, d))
        z = (mu[None] + sigma[None] * eps.astype(np.float32)).astype(np.float32)
        (decoded,) = await self._infer("decoder", z.reshape(samples * n, d))
        neg_elbo, iwae = scoring.scores(
            rows,
            mu,
            sigma,
            eps,
            decoded.reshape(samples, n, -1),
            self.model.manifest.metrics.reconstruction_kind,
        )
        return ScoreResult(neg_elbo=neg_elbo, iwae=iwae, seed=seed, samples=samples)

    async def decode(self, z: np.ndarray) -> np.ndarray:
        """(n, latent_dim) -> (n, H*W) in [0, 1]."""
        (images,) = await self._infer("decoder", self.model.check_latents(z))
        return images

    async def sample(
        self, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> GenerateResult:
        """n images decoded from z ~ N(0, temperature^2 I)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise InvalidInput("n", f"must be an integer >= 1, got {n!r}")
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float | np.floating | np.integer)
            or not math.isfinite(temperature)
            or temperature < 0
        ):
            raise InvalidInput("temperature", f"must be a finite number >= 0, got {temperature!r}")
        seed = resolve_seed(seed)
        z = (_standard_normal(seed, (int(n), self.latent_dim)) * float(temperature)).astype(
            np.float32
        )
        (images,) = await self._infer("decoder", z)
        return GenerateResult(z=z, images=images, seed=seed)

    async def interpolate(
        self, start_z: np.ndarray, end_z: np.ndarray, steps: int, method: str = "linear"
    ) -> GenerateResult:
        """``steps`` latents from start_z to end_z (both included) and their images."""
        if method not in METHODS:
            raise InvalidInput("method", f"must be one of {sorted(METHODS)}, got {method!r}")
        start = self._latent_vector(start_z, "start_z")
        end = self._latent_vector(end_z, "end_z")
        z = METHODS[method](start, end, steps)
        (images,) = await self._infer("decoder", z)
        return GenerateResult(z=z, images=images, seed=None)

    def _latent_vector(self, value: np.ndarray, field: str) -> np.ndarray:
        array = numeric_array(value, field)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.shape != (self.latent_dim,):
            raise InvalidInput(
                field, f"must be a vector of {self.latent_dim} numbers, got shape {array.shape}"
            )
        return array.astype(np.float32)
