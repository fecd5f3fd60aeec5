"""Dynamic micro-batching: concurrent requests to one graph share one ONNX Runtime call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

from service.runtime.errors import DeadlineExceeded, ModelNotReady, Overloaded
from service.runtime.model import padded_input
from service.runtime.observer import Graph, InferenceObserver

logger = logging.getLogger(__name__)

# One request's share of a call: its row count and the context it was submitted with.
Part = tuple[int, Any]
# (padded rows, real row count, parts in row order) -> outputs of the real rows; see
# `VAEModel.run_encoder_padded` for the padding.
PaddedRunFn = Callable[[np.ndarray, int, Sequence[Part]], Sequence[np.ndarray]]


class _Request:
    __slots__ = ("context", "deadline", "enqueued_at", "future", "rows")

    def __init__(
        self,
        rows: np.ndarray,
        future: asyncio.Future[list[np.ndarray]],
        context: Any,
        deadline: float | None,
    ) -> None:
        self.rows = rows
        self.future = future
        self.context = context
        self.deadline = deadline
        self.enqueued_at = time.perf_counter()


_STOP = object()
T = TypeVar("T")

# The event-loop time (`loop.time()`) by which the current request's inference must have
# finished, or None. The API sets it once per request (admission); it is read where inference
# is awaited, in the caller's own task, so no deadline argument threads through every call.
INFERENCE_DEADLINE: ContextVar[float | None] = ContextVar("vae_inference_deadline", default=None)


def _late(graph: Graph) -> DeadlineExceeded:
    return DeadlineExceeded(f"the {graph} did not finish within the request's deadline")


def _check_deadline(graph: Graph) -> float | None:
    """The current deadline; DeadlineExceeded if it has already passed (nothing is queued)."""
    deadline = INFERENCE_DEADLINE.get()
    if deadline is not None and deadline <= asyncio.get_running_loop().time():
        raise _late(graph)
    return deadline


async def within_deadline(future: asyncio.Future[T], graph: Graph) -> T:
    """`await future` (an executor call: the unbatched path) under the current request's
    deadline (see INFERENCE_DEADLINE): past it, the future is cancelled (a call that has not
    started never starts) and DeadlineExceeded raised."""
    try:
        deadline = _check_deadline(graph)
    except DeadlineExceeded:
        future.cancel()
        raise
    if deadline is None:
        return await future
    handle = asyncio.get_running_loop().call_at(deadline, future.cancel)
    try:
        return await future
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # Our timer, unless the task itself is being cancelled (shutdown, a caller's timeout).
        if future.cancelled() and task is not None and not task.cancelling():
            raise _late(graph) from None
        raise
    finally:
        handle.cancel()


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

    Admission: with ``max_queued_rows`` > 0, a request whose rows would take the rows waiting
    in the queue past it raises `Overloaded` at once (a request always enters an empty queue,
    whatever its size). A request waits for its outputs no later than the caller's
    `INFERENCE_DEADLINE`; then it raises `DeadlineExceeded`, and its rows are skipped if they
    have not run yet (or dropped if they are in a call on the executor).
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
        max_queued_rows: int = 0,
    ) -> None:
        self.graph = graph
        self._run = run
        self._pad_rows = pad_rows
        self._max_rows = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._executor = executor
        self._inline_max_rows = inline_max_rows
        self._observer = observer
        self._max_queued_rows = max_queued_rows
        # Rows submitted and not yet taken by the worker (the running call's are not counted).
        self._queued_rows = 0
        self._queue: asyncio.Queue[_Request | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        # Requests the worker has taken from the queue; their futures are its to settle.
        self._taken: list[_Request] = []
        # Requests with a deadline, in submission order, which is deadline order but for the
        # spread of parse times (one timeout for all). One timer, at the oldest pending
        # request's deadline, expires them: a timer per request cost a measurable share of a
        # one-image request's CPU.
        self._timed: deque[_Request] = deque()
        self._expiry: asyncio.TimerHandle | None = None

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

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def submit(self, rows: np.ndarray, context: Any = None) -> list[np.ndarray]:
        """The run's outputs for these rows. A request split into chunks passes the same
        ``context`` with each chunk, in row order."""
        if self._closed:
            raise ModelNotReady(f"{self.graph} is not accepting requests")
        n = rows.shape[0]
        queued = self._queued_rows
        if queued and self._max_queued_rows and queued + n > self._max_queued_rows:
            raise Overloaded(f"the {self.graph} queue is full; retry later")
        deadline = _check_deadline(self.graph)
        self._queued_rows = queued + n
        loop = asyncio.get_running_loop()
        if n <= self._max_rows:  # the common case, without the list and the slice
            future: asyncio.Future[list[np.ndarray]] = loop.create_future()
            self._enqueue(_Request(rows, future, context, deadline))
            return await future
        futures = []
        for start in range(0, n, self._max_rows):
            chunk: asyncio.Future[list[np.ndarray]] = loop.create_future()
            self._enqueue(_Request(rows[start : start + self._max_rows], chunk, context, deadline))
            futures.append(chunk)
        try:
            parts = [await chunk for chunk in futures]
        finally:
            # After a failure (or a deadline) the chunks not yet run cost nothing, and the
            # errors of those already failed are taken, so asyncio never logs them as lost.
            for chunk in futures:
                if chunk.done() and not chunk.cancelled():
                    chunk.exception()
                chunk.cancel()
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def _enqueue(self, request: _Request) -> None:
        self._queue.put_nowait(request)
        if request.deadline is not None:
            self._timed.append(request)
            if self._expiry is None:
                loop = asyncio.get_running_loop()
                self._expiry = loop.call_at(request.deadline, self._expire)

    def _expire(self) -> None:
        """Fail the requests past their deadline, then wait for the oldest still pending."""
        self._expiry = None
        timed = self._timed
        now = asyncio.get_running_loop().time()
        while timed:
            head = timed[0]
            if not head.future.done():
                if head.deadline is not None and head.deadline > now:
                    self._expiry = asyncio.get_running_loop().call_at(head.deadline, self._expire)
                    return
                head.future.set_exception(_late(self.graph))
            timed.popleft()

    def _forget_done(self) -> None:
        # Answered requests leave the deadline queue as soon as possible: it would otherwise
        # keep their rows and outputs until the next expiry.
        timed = self._timed
        while timed and timed[0].future.done():
            timed.popleft()

    def _take(self, item: _Request | object) -> _Request | object:
        if isinstance(item, _Request):
            self._queued_rows -= item.rows.shape[0]
        return item

    async def _worker(self) -> None:
        try:
            await self._batches()
        finally:
            # Whatever made the worker end (a cancelled task included), nobody may wait forever
            # on a request it took or one still queued.
            pending = list(self._taken)
            while not self._queue.empty():
                pending.append(self._take(self._queue.get_nowait()))
            for item in pending:
                if isinstance(item, _Request) and not item.future.done():
                    item.future.set_exception(ModelNotReady(f"{self.graph} batcher stopped"))
            self._timed.clear()
            if self._expiry is not None:
                self._expiry.cancel()
                self._expiry = None

    async def _batches(self) -> None:
        carried: _Request | None = None
        while True:
            first = carried if carried is not None else self._take(await self._queue.get())
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
            return self._take(self._queue.get_nowait())
        except asyncio.QueueEmpty:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
        try:
            return self._take(await asyncio.wait_for(self._queue.get(), remaining))
        except TimeoutError:
            return None

    async def _run_batch(self, batch: list[_Request]) -> None:
        # A future is already done only if the task awaiting it was cancelled (at shutdown, or
        # by the caller's own timeout; uvicorn does not cancel a handler when its client
        # disconnects). Nobody reads those results, so they need no compute.
        batch = [r for r in batch if not r.future.done()]
        if not batch:
            if self._timed:
                self._forget_done()
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
            self._forget_done()
            return
        self._observe(batch, n, started, seconds)
        offset = 0
        for request in batch:
            end = offset + request.rows.shape[0]
            if not request.future.done():
                request.future.set_result([out[offset:end] for out in outputs])
            offset = end
        if self._timed:
            self._forget_done()

    def _observe(self, batch: list[_Request], rows: int, started: float, seconds: float) -> None:
        # A broken metrics hook must never fail inference.
        try:
            for request in batch:
                self._observer.queued(self.graph, max(0.0, started - request.enqueued_at))
            self._observer.inference(self.graph, rows, len(batch), seconds)
        except Exception:
            logger.exception("inference observer failed")
