"""The runtime's admission bounds: rows queued per graph (`MicroBatcher.submit`) and the
per-request inference deadline (`INFERENCE_DEADLINE`), on a bare batcher whose run is held
in an executor thread so a test knows exactly what is running and what is queued."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.runtime.batching import INFERENCE_DEADLINE, within_deadline
from service.runtime.errors import DeadlineExceeded, Overloaded
from service.runtime.options import BatchingOptions
from tests.unit.test_service import held_batcher, rows_of, settle


def run_held(scenario, max_queued_rows: int = 0):
    """Run ``scenario(batcher, run)`` with a started batcher; always release and stop."""

    async def main():
        async with held_batcher(max_queued_rows) as (batcher, run):
            return await scenario(batcher, run)

    return asyncio.run(main())


def in_seconds(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


def test_a_request_past_the_queued_rows_bound_is_refused_at_once():
    async def scenario(batcher, run):
        running = asyncio.create_task(batcher.submit(rows_of(1.0), "running"))
        await run.running.wait()  # taken by the worker: its rows no longer count as queued
        assert batcher.queued_rows == 0
        queued = asyncio.create_task(batcher.submit(rows_of(2.0, 4), "queued"))
        await asyncio.sleep(0)
        assert batcher.queued_rows == 4
        with pytest.raises(Overloaded, match="decoder queue is full"):
            await batcher.submit(rows_of(3.0, 3), "refused")  # 4 + 3 > 6
        fits = asyncio.create_task(batcher.submit(rows_of(4.0, 2), "fits"))  # 4 + 2 = 6
        await asyncio.sleep(0)
        assert batcher.queued_rows == 6
        run.release()
        await settle({running, queued, fits})
        np.testing.assert_array_equal(fits.result()[0], rows_of(4.0, 2))
        assert run.calls == [["running"], ["queued", "fits"]]  # the refused rows never ran
        assert batcher.queued_rows == 0
        # Drained: the same request is admitted now.
        np.testing.assert_array_equal((await batcher.submit(rows_of(3.0, 3)))[0], rows_of(3.0, 3))

    run_held(scenario, max_queued_rows=6)


def test_an_empty_queue_takes_a_request_larger_than_the_bound():
    # Otherwise a request over the bound could never be served, however idle the worker.
    async def scenario(batcher, run):
        run.release()
        out = await batcher.submit(rows_of(5.0, 20))  # 20 rows, bound 6, split into 8-row calls
        np.testing.assert_array_equal(out[0], rows_of(5.0, 20))
        assert batcher.queued_rows == 0

    run_held(scenario, max_queued_rows=6)


def test_zero_means_no_bound():
    async def scenario(batcher, run):
        first = asyncio.create_task(batcher.submit(rows_of(1.0)))
        await run.running.wait()
        waiting = [asyncio.create_task(batcher.submit(rows_of(2.0, 8))) for _ in range(50)]
        await asyncio.sleep(0)
        assert batcher.queued_rows == 400
        run.release()
        await settle({first, *waiting})

    run_held(scenario, max_queued_rows=0)


def test_a_request_past_its_deadline_raises_and_its_rows_are_never_computed():
    async def scenario(batcher, run):
        running = asyncio.create_task(batcher.submit(rows_of(1.0), "running"))
        await run.running.wait()

        async def with_deadline():
            INFERENCE_DEADLINE.set(in_seconds(0.05))  # this task's own context
            return await batcher.submit(rows_of(2.0, 2), "late")

        with pytest.raises(DeadlineExceeded, match="decoder did not finish"):
            await asyncio.create_task(with_deadline())  # its own context
        after = asyncio.create_task(batcher.submit(rows_of(3.0), "after"))
        run.release()
        await settle({running, after})
        np.testing.assert_array_equal(after.result()[0], rows_of(3.0))
        assert run.calls == [["running"], ["after"]]
        assert batcher.queued_rows == 0  # the late request was taken, skipped and uncounted

    run_held(scenario)


def test_a_deadline_already_past_queues_nothing():
    async def scenario(batcher, run):
        INFERENCE_DEADLINE.set(in_seconds(-1.0))
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(rows_of(1.0))
        assert batcher.queued_rows == 0
        INFERENCE_DEADLINE.set(None)
        run.release()
        await batcher.submit(rows_of(2.0), "served")
        assert run.calls == [["served"]]

    run_held(scenario)


def test_a_split_request_past_its_deadline_leaves_no_chunk_to_compute():
    async def scenario(batcher, run):
        running = asyncio.create_task(batcher.submit(rows_of(1.0), "running"))
        await run.running.wait()

        async def with_deadline():
            INFERENCE_DEADLINE.set(in_seconds(0.05))
            return await batcher.submit(rows_of(2.0, 20), "split")  # three chunks of <= 8

        with pytest.raises(DeadlineExceeded):
            await asyncio.create_task(with_deadline())  # its own context
        run.release()
        await settle({running})
        await batcher.submit(rows_of(3.0), "after")
        assert run.calls == [["running"], ["after"]]

    run_held(scenario)


def test_a_deadline_never_hides_a_real_cancellation():
    # A task cancelled for another reason (shutdown, a caller's own timeout) stays cancelled.
    async def scenario(batcher, run):
        running = asyncio.create_task(batcher.submit(rows_of(1.0)))
        await run.running.wait()

        async def with_deadline():
            INFERENCE_DEADLINE.set(in_seconds(60.0))
            return await batcher.submit(rows_of(2.0))

        waiting = asyncio.create_task(with_deadline())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        run.release()
        await settle({running})

    run_held(scenario)


def test_within_deadline_cancels_an_executor_call_that_has_not_started():
    # The unbatched path: a call still waiting for the executor's thread never runs.
    async def main():
        loop = asyncio.get_running_loop()
        gate, ran = threading.Event(), []
        with ThreadPoolExecutor(1) as executor:
            busy = loop.run_in_executor(executor, gate.wait, 30)
            INFERENCE_DEADLINE.set(in_seconds(0.05))
            with pytest.raises(DeadlineExceeded, match="encoder"):
                await within_deadline(loop.run_in_executor(executor, ran.append, "late"), "encoder")
            gate.set()
            await busy
        assert ran == []

    asyncio.run(main())


def test_max_queued_rows_must_not_be_negative():
    with pytest.raises(ValueError, match="max_queued_rows"):
        BatchingOptions(max_queued_rows=-1)
