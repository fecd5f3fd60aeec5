"""Dynamic micro-batching: concurrent requests to one graph share one ONNX Runtime call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from service.runtime.errors import ModelNotReady
from service.runtime.model import padded_input
from service.runtime.observer import Graph, InferenceObserver

logger = logging.getLogger(__name__)

# One request's share of a call: its row count and the context it was submitted with.
Part = tuple[int, Any]
# (padded rows, real row count, parts in row order) -> outputs of the real rows; see
# `VAEModel.run_encoder_padded` for the padding.
PaddedRunFn = Callable[[np.ndarray, int, Sequence[Part]], Sequence[np.ndarray]]


class _Request:
    __slots__ = ("context", "enqueued_at", "future", "rows")

    def __init__(
        self, rows: np.ndarray, future: asyncio.Future[list[np.ndarray]], context: Any
    ) -> None:
        self.rows = rows
        self.future = future
        self.context = context
        self.enqueued_at = time.perf_counter()


_STOP = object()


def timed_run(
    run: PaddedRunFn, padded: np.ndarray, n: int, parts: Sequence[Part]
) -> tuple[Sequence[np.ndarray], float, float]:
    """Run where it is called (the loop or an executor thread); returns outputs, the start
    time and the seconds spent in the run."""
    started = time.perf_counter()
    outputs = run(padded, n, parts)
    return outputs, started, time.perf_counter() - started


class MicroBatcher:
    """One worker task per graph takes everything queued (up to ``max_batch_size`` rows),
    runs it as one call (on the event loop up to ``inline_max_rows`` rows, else in the
    executor), and splits the outputs back in request order.
    Each request's ``context`` reaches the run function with its row count, so per-request
    work that follows the call (the encoder's seeded noise) is done there, in one pass.

    A request larger than ``max_batch_size`` is split into chunks that are queued in order.
    Only one call per graph is in flight; requests arriving meanwhile form the next batch.
    Before a batch is taken the worker yields one event-loop turn, so requests whose
    handlers were already scheduled join it (``max_wait_ms`` 0 still never waits on a timer).
    Every request's rows are written once, straight into the call's zero-padded input buffer
    (``pad_rows`` zero rows at the end, see `service.runtime.model.TAIL_PADDING_ELEMENTS`).
    """

    def __init__(
        self,
        graph: Graph,
        run: PaddedRunFn,
        *,
        pad_rows: int,
        max_batch_size: int,
        max_wait_ms: float,
        executor: Executor,
        observer: InferenceObserver,
        inline_max_rows: int = 0,
    ) -> None:
        self.graph = graph
        self._run = run
        self._pad_rows = pad_rows
        self._max_rows = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._executor = executor
        self._inline_max_rows = inline_max_rows
        self._observer = observer
        self._queue: asyncio.Queue[_Request | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        # Requests the worker has taken from the queue; their futures are its to settle.
        self._taken: list[_Request] = []

    def start(self) -> None:
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(
            self._worker(), name=f"vae-batcher-{self.graph}"
        )

    async def stop(self) -> None:
        """Refuse new requests, finish everything already queued, end the worker."""
        if self._task is None:
            return
        self._closed = True
        self._queue.put_nowait(_STOP)
        await self._task
        self._task = None

    async def submit(self, rows: np.ndarray, context: Any = None) -> list[np.ndarray]:
        """The run's outputs for these rows. A request split into chunks passes the same
        ``context`` with each chunk, in row order."""
        if self._closed:
            raise ModelNotReady(f"{self.graph} is not accepting requests")
        loop = asyncio.get_running_loop()
        if rows.shape[0] <= self._max_rows:  # the common case, without the list and the slice
            future: asyncio.Future[list[np.ndarray]] = loop.create_future()
            self._queue.put_nowait(_Request(rows, future, context))
            return await future
        futures = []
        for start in range(0, rows.shape[0], self._max_rows):
            chunk: asyncio.Future[list[np.ndarray]] = loop.create_future()
            self._queue.put_nowait(_Request(rows[start : start + self._max_rows], chunk, context))
            futures.append(chunk)
        parts = await asyncio.gather(*futures)
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    async def _worker(self) -> None:
        try:
            await self._batches()
        finally:
            # Whatever made the worker end (a cancelled task included), nobody may wait forever
            # on a request it took or one still queued.
            pending = list(self._taken)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            for item in pending:
                if isinstance(item, _Request) and not item.future.done():
                    item.future.set_exception(ModelNotReady(f"{self.graph} batcher stopped"))

    async def _batches(self) -> None:
        carried: _Request | None = None
        while True:
            first = carried if carried is not None else await self._queue.get()
            carried = None
            if first is _STOP:
                return
            assert isinstance(first, _Request)
            # Requests the loop has already read are one turn away from the queue: their
            # handlers are scheduled behind this wake-up. One turn (no timer) lets them join
            # this batch, so under load each call carries more rows and there are fewer calls.
            batch = self._taken = [first]
            await asyncio.sleep(0)
            rows = first.rows.shape[0]
            stop_after = False
            deadline = time.perf_counter() + self._max_wait
            while rows < self._max_rows:
                item = await self._next(deadline)
                if item is None:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                assert isinstance(item, _Request)
                if rows + item.rows.shape[0] > self._max_rows:
                    carried = item
                    self._taken = [*batch, item]
                    break
                batch.append(item)
                rows += item.rows.shape[0]
            await self._run_batch(batch)
            if stop_after:
                if carried is not None:
                    await self._run_batch([carried])
                return

    async def _next(self, deadline: float) -> _Request | object | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            return None

    async def _run_batch(self, batch: list[_Request]) -> None:
        # A future is already done only if the task awaiting it was cancelled (at shutdown, or
        # by the caller's own timeout; uvicorn does not cancel a handler when its client
        # disconnects). Nobody reads those results, so they need no compute.
        batch = [r for r in batch if not r.future.done()]
        if not batch:
            return
        padded, n = padded_input([request.rows for request in batch], self._pad_rows)
        parts = [(request.rows.shape[0], request.context) for request in batch]
        try:
            if n <= self._inline_max_rows:
                outputs, started, seconds = timed_run(self._run, padded, n, parts)
            else:
                outputs, started, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, timed_run, self._run, padded, n, parts
                )
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        self._observe(batch, n, started, seconds)
        offset = 0
        for request in batch:
            end = offset + request.rows.shape[0]
            if not request.future.done():
                request.future.set_result([out[offset:end] for out in outputs])
            offset = end

    def _observe(self, batch: list[_Request], rows: int, started: float, seconds: float) -> None:
        # A broken metrics hook must never fail inference.
        try:
            for request in batch:
                self._observer.queued(self.graph, max(0.0, started - request.enqueued_at))
            self._observer.inference(self.graph, rows, len(batch), seconds)
        except Exception:
            logger.exception("inference observer failed")
