import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest

from service.runtime.batching import MicroBatcher
from service.runtime.errors import InvalidInput, ModelNotReady, NonFiniteOutput
from service.runtime.model import VAEModel
from service.runtime.observer import NULL_OBSERVER
from service.runtime.options import BatchingOptions
from service.runtime.service import VAEService
from tests.fixtures.recording import RecordingSession
from tests.fixtures.tiny_model import build_tiny_model

D = 30


@dataclass
class RecordingObserver:
    batches: list[tuple[str, int, int]] = field(default_factory=list)
    queued_graphs: list[str] = field(default_factory=list)

    def inference(self, graph, batch_rows, requests, seconds):
        assert seconds >= 0
        self.batches.append((graph, batch_rows, requests))

    def queued(self, graph, seconds):
        assert seconds >= 0
        self.queued_graphs.append(graph)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # latent_dim 30 like the default model, so element-wise kernels end in partial registers.
    return VAEModel.load(build_tiny_model(tmp_path_factory.mktemp("vae30"), latent_dim=D))


def serve(model, scenario, **kwargs):
    """Start a service on a fresh event loop, run ``scenario(service)``, always stop."""

    async def main():
        service = VAEService(model, **kwargs)
        await service.start()
        try:
            return await scenario(service)
        finally:
            await service.stop()

    return asyncio.run(main())


def images(n, seed):
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def latents(n, seed):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def mixed_calls(service):
    """Many concurrent calls of every kind and several row counts, all seeded."""
    calls = []
    for i in range(12):
        n = 1 + (i * 5) % 9
        calls.append(service.encode(images(n, i), seed=100 + i))
        calls.append(service.encode_mean(images(n, 50 + i)))
        calls.append(service.decode(latents(n, i)))
        calls.append(service.sample(n, seed=200 + i, temperature=0.5 + i / 10))
    calls.append(service.interpolate(latents(1, 1)[0], latents(1, 2)[0], 6, "slerp"))
    return calls


def flatten(result):
    if isinstance(result, np.ndarray):
        return [result]
    return [v for v in vars(result).values() if isinstance(v, np.ndarray)] + [result.seed]


def assert_same(results, expected):
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        for g, w in zip(flatten(got), flatten(want), strict=True):
            if isinstance(w, np.ndarray):
                np.testing.assert_array_equal(g, w)
            else:
                assert g == w


def test_shapes_and_ranges(model):
    async def scenario(service):
        assert service.ready
        assert (service.latent_dim, service.image_size) == (D, 784)
        enc = await service.encode(images(3, 0), seed=1)
        assert enc.mu.shape == enc.sigma.shape == enc.z.shape == (3, D)
        assert enc.z.dtype == np.float32
        assert (enc.sigma >= 0).all()
        assert (await service.encode_mean(images(3, 0))).shape == (3, D)
        decoded = await service.decode(latents(4, 0))
        assert decoded.shape == (4, 784)
        assert ((decoded >= 0) & (decoded <= 1)).all()
        sampled = await service.sample(5, seed=2)
        assert sampled.z.shape == (5, D)
        assert sampled.images.shape == (5, 784)
        path = await service.interpolate(enc.mu[0], enc.mu[1], 7, "linear")
        assert path.z.shape == (7, D)
        assert path.images.shape == (7, 784)
        assert path.seed is None
        np.testing.assert_array_equal(path.z[0], enc.mu[0])
        np.testing.assert_array_equal(path.z[-1], enc.mu[1])

    serve(model, scenario)


def test_encode_draws_z_from_the_seed(model):
    async def scenario(service):
        enc = await service.encode(images(4, 0), seed=7)
        w = np.random.default_rng(7).standard_normal((4, D)).astype(np.float32)
        np.testing.assert_array_equal(enc.z, enc.mu + enc.sigma * w)
        assert enc.seed == 7
        np.testing.assert_array_equal(enc.mu, await service.encode_mean(images(4, 0)))

    serve(model, scenario)


@pytest.mark.parametrize(
    "batching",
    [BatchingOptions(max_batch_size=5), BatchingOptions(enabled=False)],
    ids=["split-across-batches", "unbatched"],
)
def test_z_noise_is_one_seeded_stream_even_when_a_call_is_split(model, batching):
    # 12 rows with max_batch_size 5 run as three chunks, in batches shared with other calls;
    # w must still be the first 12 x D draws of default_rng(seed), as plain numpy gives them.
    async def scenario(service):
        big, small = images(12, 1), images(3, 2)
        results = await asyncio.gather(
            service.encode(big, seed=9),
            service.encode_mean(small),
            service.encode(small, seed=10),
        )
        return big, small, results

    big, small, (enc_big, mean_small, enc_small) = serve(model, scenario, batching=batching)
    for enc, rows, seed in ((enc_big, big, 9), (enc_small, small, 10)):
        w = np.random.default_rng(seed).standard_normal((rows.shape[0], D)).astype(np.float32)
        np.testing.assert_array_equal(enc.z, enc.mu + enc.sigma * w)
    np.testing.assert_array_equal(mean_small, enc_small.mu)


def test_same_seed_same_output_and_other_seed_other_output(model):
    async def scenario(service):
        a = await service.sample(3, seed=11)
        b = await service.sample(3, seed=11)
        c = await service.sample(3, seed=12)
        np.testing.assert_array_equal(a.images, b.images)
        assert not np.array_equal(a.z, c.z)
        e1 = await service.encode(images(2, 0), seed=5)
        e2 = await service.encode(images(2, 0), seed=5)
        np.testing.assert_array_equal(e1.z, e2.z)

    serve(model, scenario)


def test_sample_z_is_temperature_times_standard_normal(model):
    async def scenario(service):
        result = await service.sample(4, seed=3, temperature=0.25)
        want = (np.random.default_rng(3).standard_normal((4, D)) * 0.25).astype(np.float32)
        np.testing.assert_array_equal(result.z, want)
        zero = await service.sample(2, seed=3, temperature=0.0)
        assert not zero.z.any()

    serve(model, scenario)


def test_missing_seed_is_drawn_and_returned_so_it_replays(model):
    async def scenario(service):
        first = await service.sample(2)
        assert 0 <= first.seed < 2**63
        replay = await service.sample(2, seed=first.seed)
        np.testing.assert_array_equal(first.images, replay.images)
        enc = await service.encode(images(1, 0))
        assert enc.seed != first.seed
        replay_enc = await service.encode(images(1, 0), seed=enc.seed)
        np.testing.assert_array_equal(enc.z, replay_enc.z)

    serve(model, scenario)


def test_concurrent_calls_equal_the_same_calls_alone(model):
    observer = RecordingObserver()

    async def scenario(service):
        alone = [await call for call in mixed_calls(service)]
        together = await asyncio.gather(*mixed_calls(service))
        return alone, together

    alone, together = serve(model, scenario, observer=observer)
    assert_same(together, alone)
    # The gathered calls really shared ONNX Runtime runs.
    assert max(requests for _, _, requests in observer.batches) > 1


def test_batching_on_and_off_give_identical_results(model):
    async def scenario(service):
        return await asyncio.gather(*mixed_calls(service))

    batched = serve(model, scenario, batching=BatchingOptions(enabled=True))
    unbatched = serve(model, scenario, batching=BatchingOptions(enabled=False))
    waited = serve(model, scenario, batching=BatchingOptions(max_wait_ms=2.0, max_batch_size=16))
    assert_same(batched, unbatched)
    assert_same(waited, unbatched)


def _record_run_threads(model, monkeypatch) -> list[tuple[int, bool]]:
    """(rows, ran on the event loop's thread) for every encoder and decoder call."""
    calls: list[tuple[int, bool]] = []
    for name in ("run_encoder_padded", "run_decoder_padded"):
        original = getattr(model, name)

        def recording(padded, n, original=original):
            calls.append((n, threading.current_thread() is threading.main_thread()))
            return original(padded, n)

        monkeypatch.setattr(model, name, recording)
    return calls


def test_small_micro_batches_run_on_the_loop_with_identical_results(model, monkeypatch):
    async def scenario(service):
        return await asyncio.gather(*mixed_calls(service))

    threaded = serve(model, scenario, batching=BatchingOptions(inline_max_rows=0))
    calls = _record_run_threads(model, monkeypatch)
    inline = BatchingOptions(max_batch_size=8, inline_max_rows=4)
    assert_same(serve(model, scenario, batching=inline), threaded)
    assert {on_loop for n, on_loop in calls if n <= 4} == {True}
    assert {on_loop for n, on_loop in calls if n > 4} == {False}


def test_unbatched_calls_always_take_the_executor(model, monkeypatch):
    # One call per request on the loop lets some connections starve (see `VAEService._infer`).
    calls = _record_run_threads(model, monkeypatch)

    async def scenario(service):
        return await asyncio.gather(*mixed_calls(service))

    serve(model, scenario, batching=BatchingOptions(enabled=False, inline_max_rows=1024))
    assert calls
    assert not any(on_loop for _, on_loop in calls)


def test_inline_max_rows_must_not_be_negative():
    with pytest.raises(ValueError, match="inline_max_rows"):
        BatchingOptions(inline_max_rows=-1)


def test_unbatched_calls_run_one_request_each(model):
    observer = RecordingObserver()

    async def scenario(service):
        await asyncio.gather(*(service.decode(latents(2, i)) for i in range(5)))

    serve(model, scenario, batching=BatchingOptions(enabled=False), observer=observer)
    assert observer.batches == [("decoder", 2, 1)] * 5
    assert observer.queued_graphs == ["decoder"] * 5


def test_row_order_is_preserved_under_batching(model):
    # Each request's rows are distinct constants, so any mix-up shows in its means.
    requests = [np.full((n, 784), (i + 1) / 20, np.float32) for i, n in enumerate([3, 1, 4, 1, 5])]

    async def scenario(service):
        together = await asyncio.gather(*(service.encode_mean(r) for r in requests))
        alone = [await service.encode_mean(r[:1]) for r in requests]
        return together, alone

    together, alone = serve(model, scenario)
    for got, one, request in zip(together, alone, requests, strict=True):
        assert got.shape == (request.shape[0], D)
        np.testing.assert_array_equal(got, np.repeat(one, request.shape[0], axis=0))


def test_max_batch_size_is_respected_and_big_requests_are_split(model):
    observer = RecordingObserver()
    sizes = [1, 4, 2, 12, 3, 5, 1]

    async def scenario(service):
        together = await asyncio.gather(*(service.decode(latents(n, n)) for n in sizes))
        alone = [await service.decode(latents(n, n)) for n in sizes]
        return together, alone

    together, alone = serve(
        model, scenario, batching=BatchingOptions(max_batch_size=5), observer=observer
    )
    assert_same(together, alone)
    rows = [batch_rows for _, batch_rows, _ in observer.batches]
    assert max(rows) <= 5
    assert sum(rows) == 2 * sum(sizes)


def test_requests_scheduled_behind_the_batchers_wake_up_join_its_batch(model):
    # Handlers of requests the event loop read together can be scheduled only after the first
    # of them has queued its rows and woken the batcher. With the default wait of 0 (no timer)
    # they must still share the first call's ONNX Runtime call.
    observer = RecordingObserver()
    sizes = (1, 2, 3)

    async def scenario(service):
        late = []

        def schedule_late_handlers():
            late.extend(asyncio.create_task(service.decode(latents(n, n))) for n in sizes[1:])

        first = asyncio.create_task(service.decode(latents(sizes[0], sizes[0])))
        # Callbacks run in the order they are scheduled: this one runs after `first` has
        # started (queued its rows, woken the batcher), before the batcher runs, and the
        # handlers it creates are scheduled behind the batcher's wake-up.
        asyncio.get_running_loop().call_soon(schedule_late_handlers)
        return [await first, *await asyncio.gather(*late)]

    results = serve(model, scenario, observer=observer)
    assert observer.batches == [("decoder", sum(sizes), len(sizes))]
    for got, n in zip(results, sizes, strict=True):
        np.testing.assert_array_equal(got, model.run_decoder(latents(n, n)))


class HeldRun:
    """A run function for a bare MicroBatcher that records each call's request contexts and
    holds every call in the executor thread until `release`, so a test knows for certain
    that the batcher is inside a call (``running``) without counting event-loop turns."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.calls: list[list[object]] = []
        self.running = asyncio.Event()
        self._released = threading.Event()

    def __call__(self, padded, n, parts):
        self.calls.append([context for _, context in parts])
        self.loop.call_soon_threadsafe(self.running.set)
        # The bound only keeps a broken test from holding the thread for good.
        if not self._released.wait(timeout=60):
            raise RuntimeError("the test never released the run")
        return [padded[:n]]

    def release(self) -> None:
        self._released.set()


@contextlib.asynccontextmanager
async def held_batcher(max_queued_rows: int = 0) -> AsyncIterator[tuple[MicroBatcher, HeldRun]]:
    """A started MicroBatcher on a HeldRun; released and stopped on the way out."""
    run = HeldRun()
    with ThreadPoolExecutor(1) as executor:
        # inline_max_rows 0: every call goes to the executor, so the loop stays free while held.
        batcher = MicroBatcher(
            "decoder",
            run,
            pad_rows=1,
            max_batch_size=8,
            max_wait_ms=0.0,
            executor=executor,
            observer=NULL_OBSERVER,
            inline_max_rows=0,
            max_queued_rows=max_queued_rows,
        )
        batcher.start()
        try:
            yield batcher, run
        finally:
            run.release()
            # A test may already have cancelled the worker; awaiting it then re-raises that.
            with contextlib.suppress(asyncio.CancelledError):
                await batcher.stop()


def rows_of(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 4), value, np.float32)


async def settle(tasks):
    """Wait for ``tasks``; the bound turns a caller left waiting forever into a failure."""
    done, pending = await asyncio.wait(tasks, timeout=30)
    assert not pending, "callers were left waiting"
    return done


def test_a_batcher_cancelled_while_holding_requests_fails_every_caller():
    # A shutdown that stops waiting for the batcher (stop() under a deadline already past)
    # cancels its worker mid-call. The caller whose rows are in that call and the caller still
    # queued must both get ModelNotReady instead of waiting forever.
    async def main():
        async with held_batcher() as (batcher, run):
            in_call = asyncio.create_task(batcher.submit(rows_of(1.0), "in call"))
            await run.running.wait()

            async def stop_without_waiting():
                async with asyncio.timeout(0):
                    await batcher.stop()

            # Tasks start in the order they were created: `queued` submits before the stop.
            queued = asyncio.create_task(batcher.submit(rows_of(2.0), "queued"))
            stopper = asyncio.create_task(stop_without_waiting())
            with pytest.raises(TimeoutError):
                await stopper
            await settle({in_call, queued})
            for caller in (in_call, queued):
                with pytest.raises(ModelNotReady):
                    caller.result()
            assert run.calls == [["in call"]]

    asyncio.run(main())


def test_a_caller_that_gives_up_costs_no_compute_and_the_batcher_keeps_serving():
    # A caller's own timeout cancels its wait while its rows are queued: they must not be
    # computed, and the callers around it still get their own rows back.
    async def main():
        async with held_batcher() as (batcher, run):
            first = asyncio.create_task(batcher.submit(rows_of(1.0), "first"))
            await run.running.wait()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0):  # gives up once its rows are queued
                    await batcher.submit(rows_of(2.0, 2), "gave up")
            after = asyncio.create_task(batcher.submit(rows_of(3.0, 3), "after"))
            run.release()
            await settle({first, after})
            np.testing.assert_array_equal(first.result()[0], rows_of(1.0))
            np.testing.assert_array_equal(after.result()[0], rows_of(3.0, 3))
            assert run.calls == [["first"], ["after"]]

    asyncio.run(main())


def test_inference_errors_reach_every_waiting_caller(tmp_path):
    broken = VAEModel.load(build_tiny_model(tmp_path, latent_dim=4))

    def failing_decoder(*args):
        raise RuntimeError("decoder exploded")

    async def scenario(service):
        broken.run_decoder = failing_decoder
        broken.run_decoder_padded = failing_decoder
        results = await asyncio.gather(
            *(service.decode(np.zeros((1, 4), np.float32)) for _ in range(4)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        # The batcher survives and the other graph still works.
        assert (await service.encode_mean(images(1, 0))).shape == (1, 4)

    serve(broken, scenario)


def test_start_warms_both_graphs_before_reporting_ready(model, monkeypatch):
    service = VAEService(model)
    runs = []  # (graph, service.ready at that moment)
    for graph in ("encoder", "decoder"):
        attr = f"{graph}_session"

        def record(feed, graph=graph):
            runs.append((graph, service.ready))

        monkeypatch.setattr(model, attr, RecordingSession(getattr(model, attr), record))

    async def main():
        await service.start()
        try:
            assert service.ready
            return list(runs)
        finally:
            await service.stop()

    # Before any request: only the warm-up can have run the graphs.
    warm = asyncio.run(main())
    assert {graph for graph, _ in warm} == {"encoder", "decoder"}
    assert not any(ready for _, ready in warm)


def test_calls_before_start_and_after_stop_are_refused(model):
    async def scenario():
        service = VAEService(model)
        assert not service.ready
        with pytest.raises(ModelNotReady):
            await service.decode(latents(1, 0))
        await service.start()
        await service.decode(latents(1, 0))
        await service.stop()
        assert not service.ready
        with pytest.raises(ModelNotReady):
            await service.decode(latents(1, 0))

    asyncio.run(scenario())


def test_stop_finishes_queued_requests(model):
    async def scenario():
        service = VAEService(model)
        await service.start()
        # Both graphs: the stop reaches each batcher at a different point of its work.
        encodes = [asyncio.create_task(service.encode_mean(images(2, i))) for i in range(5)]
        decodes = [asyncio.create_task(service.decode(latents(2, i))) for i in range(5)]
        # Tasks start in the order they were created: every call is queued before the stop.
        stopper = asyncio.create_task(service.stop())
        means = await asyncio.gather(*encodes)
        decoded = await asyncio.gather(*decodes)
        await stopper
        assert not service.ready
        for i in range(5):
            np.testing.assert_array_equal(means[i], model.run_encoder(images(2, i))[0])
            np.testing.assert_array_equal(decoded[i], model.run_decoder(latents(2, i)))

    asyncio.run(scenario())


@pytest.mark.parametrize("enabled", [True, False], ids=["batched", "unbatched"])
def test_a_failing_observer_is_called_logged_and_does_not_fail_inference(model, enabled, caplog):
    class Broken:
        def __init__(self):
            self.calls = []

        def inference(self, *args):
            self.calls.append("inference")
            raise ValueError("metrics down")

        def queued(self, *args):
            self.calls.append("queued")
            raise ValueError("metrics down")

    async def scenario(service):
        return await service.decode(latents(1, 0))

    observer = Broken()
    with caplog.at_level(logging.ERROR, logger="service.runtime"):
        result = serve(model, scenario, observer=observer, batching=BatchingOptions(enabled))
    # The hook really ran (and failed) on this call, and the caller still got its images.
    assert "queued" in observer.calls
    assert "inference observer failed" in caplog.text
    np.testing.assert_array_equal(result, model.run_decoder(latents(1, 0)))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.encode(np.zeros((1, 10), np.float32)), "images"),
        (lambda s: s.encode(images(1, 0), seed=-1), "seed"),
        (lambda s: s.encode(images(1, 0), seed=2**64), "seed"),
        (lambda s: s.encode(images(1, 0), seed=1.5), "seed"),
        (lambda s: s.encode_mean(np.zeros((0, 784), np.float32)), "images"),
        (lambda s: s.decode(np.zeros((2, D + 1), np.float32)), "z"),
        (lambda s: s.sample(0), "n"),
        (lambda s: s.sample(2, temperature=-1.0), "temperature"),
        (lambda s: s.sample(2, temperature=float("nan")), "temperature"),
        (lambda s: s.interpolate(np.zeros(D), np.ones(D), 5, "cubic"), "method"),
        (lambda s: s.interpolate(np.zeros(D - 1), np.ones(D), 5), "start_z"),
        (lambda s: s.interpolate(np.zeros(D), np.ones((2, D)), 5), "end_z"),
        (lambda s: s.interpolate(np.zeros(D), np.ones(D), 1), "steps"),
    ],
)
def test_bad_arguments_raise_invalid_input_naming_the_field(model, call, field):
    async def scenario(service):
        with pytest.raises(InvalidInput) as info:
            await call(service)
        assert info.value.field == field
        # The service keeps serving after a refusal.
        assert (await service.decode(latents(1, 0))).shape == (1, 784)

    serve(model, scenario)


def test_interpolate_accepts_a_one_row_matrix(model):
    async def scenario(service):
        a, b = latents(2, 9)
        path = await service.interpolate(a[None, :], b, 3, "slerp")
        np.testing.assert_array_equal(path.z[0], a)

    serve(model, scenario)


def test_default_model_serves_reproducibly(default_model_dir):
    default = VAEModel.load(default_model_dir)
    d = default.latent_dim

    async def scenario(service):
        calls = [service.encode(images(1 + i % 3, i), seed=i) for i in range(8)]
        calls += [service.sample(2, seed=i) for i in range(4)]
        together = await asyncio.gather(*calls)
        again = [await service.encode(images(1 + i % 3, i), seed=i) for i in range(8)]
        again += [await service.sample(2, seed=i) for i in range(4)]
        return together, again

    together, again = serve(default, scenario)
    assert_same(together, again)
    assert together[0].mu.shape == (1, d)
    assert together[-1].images.shape == (2, 784)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("enabled", [True, False], ids=["batched", "unbatched"])
def test_non_finite_outputs_are_never_returned(model, bad, enabled):
    async def scenario(service):
        z = latents(2, 0)
        z[1, 0] = bad
        with pytest.raises(NonFiniteOutput, match="decoder"):
            await service.decode(z)
        return await service.decode(latents(2, 0))  # and the service carries on

    images = serve(model, scenario, batching=BatchingOptions(enabled=enabled))
    np.testing.assert_array_equal(images, model.run_decoder(latents(2, 0)))
