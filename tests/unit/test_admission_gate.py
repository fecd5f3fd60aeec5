"""`AdmissionGate`, the bound the server consults from a request's head: which requests it
admits or refuses early, what the refusal is, how it is counted, and which held connection a
freed slot resumes (the newest, if it has waited less than half its Retry-After; one held
until its hold ran out is refused)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from service.api.admission import AdmissionGate
from service.api.metrics import Metrics
from service.server.early_answers import Admitted

ROUTES = ("/encode", "/decode", "/v2/models/{model_name}/infer")
BODY = b'{"images": []}'
SIZED = [(b"content-length", b"14")]  # a body of declared length within the limit


def gate(
    max_in_flight: int = 1,
    *,
    cors: bool = False,
    retry_after: int = 3,
    early_retry_hold: float = 0.0,
    max_bytes: int = 0,
) -> AdmissionGate:
    return AdmissionGate(
        routes=ROUTES,
        max_in_flight=max_in_flight,
        max_body_bytes_in_flight=max_bytes,
        max_body_bytes=1000,
        retry_after=retry_after,
        early_retry_hold=early_retry_hold,
        metrics=Metrics(),
        access_log=False,
        cors=cors,
    )


def full(g: AdmissionGate) -> AdmissionGate:
    g.in_flight = g.max_in_flight
    return g


def sample(g: AdmissionGate, name: str, **labels: str) -> float | None:
    return g.metrics.registry.get_sample_value(name, labels)


def test_under_the_bound_a_request_is_admitted_from_its_head_and_its_slot_taken_at_once():
    g = gate(max_in_flight=2)
    g.in_flight = 1
    assert g.early_answer(b"POST", b"/encode", SIZED, False) == Admitted(14)
    assert g.in_flight == 2
    assert g.body_bytes_in_flight == 14
    # Taken from the head, the slot is not free for the next request read in the same turn.
    assert g.full
    refused = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert refused is not None
    assert refused.status == 503
    g.release(14)
    assert (g.in_flight, g.body_bytes_in_flight) == (1, 0)


def test_declared_body_bytes_in_flight_are_bounded_but_one_body_always_fits():
    g = gate(max_in_flight=8, max_bytes=20)
    big = [(b"content-length", b"900")]  # over the bytes bound, within the body limit
    assert g.early_answer(b"POST", b"/encode", big, False) == Admitted(900)  # nothing else
    refused = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert refused is not None
    assert refused.status == 503
    g.release(900)
    assert g.early_answer(b"POST", b"/encode", SIZED, False) == Admitted(14)
    assert g.early_answer(b"POST", b"/encode", SIZED, False) is not None  # 28 > 20: refused
    assert g.in_flight == 1


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", b"/model", SIZED),
        (b"POST", b"/healthz", SIZED),
        (b"POST", b"/encode", [(b"transfer-encoding", b"chunked")]),
    ],
)
def test_under_the_bound_other_requests_are_left_to_the_app(method, target, headers):
    g = gate(max_in_flight=2)
    assert g.early_answer(method, target, headers, False) is None
    assert g.in_flight == 0


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", b"/encode", SIZED),  # the app answers 405
        (b"POST", b"/healthz", SIZED),  # not a model route
        (b"POST", b"/%65ncode", SIZED),  # an unusual spelling: the app decodes and refuses it
        (b"POST", b"http://host/encode", SIZED),  # absolute form: left to the app
        (b"POST", b"/encode", [(b"content-length", b"1001")]),  # over the limit: the app's 413
        (b"POST", b"/encode", [(b"transfer-encoding", b"chunked")]),  # length undeclared
        (b"POST", b"/encode", [(b"content-length", b"1"), (b"content-length", b"2")]),
        (b"POST", b"/encode", []),  # no body at all: the app answers
    ],
)
def test_over_the_bound_only_plain_posts_to_model_routes_are_answered_early(
    method, target, headers
):
    assert full(gate()).early_answer(method, target, headers, False) is None


def test_a_cors_request_is_left_to_the_app_whose_answer_carries_the_cors_headers():
    g = full(gate(cors=True))
    origin = [(b"origin", b"https://a.example"), *SIZED]
    assert g.early_answer(b"POST", b"/encode", origin, False) is None
    assert g.early_answer(b"POST", b"/encode", SIZED, False) is not None


def test_the_refusal_is_the_apps_overloaded_answer_counted_in_the_metrics():
    g = full(gate(retry_after=3))
    answer = g.early_answer(b"POST", b"/decode?x=1", [(b"x-request-id", b"req-7"), *SIZED], False)
    assert answer is not None
    assert answer.status == 503
    headers = dict(answer.headers)
    assert headers[b"x-request-id"] == b"req-7"
    assert headers[b"retry-after"] == b"3"
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(answer.body)
    assert b'"code":"overloaded"' in answer.body
    # The next request is held until Retry-After has passed, at least, if it came earlier.
    assert answer.hold_s == 3.0
    assert answer.early_retry_hold_s == 3.0
    assert answer.body_bytes == 14  # the declared body, which the server then drops unread
    labels = {"route": "/decode", "method": "POST", "status": "503"}
    assert sample(g, "vae_http_requests_total", **labels) == 1.0
    assert sample(g, "vae_http_errors_total", route="/decode", code="overloaded") == 1.0


def test_a_request_id_that_is_not_a_plain_token_is_replaced():
    headers = [(b"x-request-id", b"<script>"), *SIZED]
    answer = full(gate()).early_answer(b"POST", b"/encode", headers, False)
    assert answer is not None
    request_id = dict(answer.headers)[b"x-request-id"]
    assert request_id != b"<script>"
    assert len(request_id) == 32


def hold(g: AdmissionGate, log: list[str], name: str, *, alive: bool = True) -> Any:
    """A connection refused early and held: it records its resumption; returns the
    function that withdraws it."""
    answer = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert answer is not None
    assert answer.wait is not None

    def resume() -> bool:
        if alive:
            log.append(name)
        return alive

    return answer.wait(resume)


def test_each_freed_slot_resumes_the_newest_held_connection_still_open():
    g = full(gate())
    resumed: list[str] = []
    withdraws = {name: hold(g, resumed, name) for name in ("first", "second")}
    hold(g, resumed, "closed", alive=False)
    g.release(0)
    assert resumed == ["second"]  # the closed one was skipped
    withdraws["second"](True)  # its next request arrives and takes the slot kept for it
    g.in_flight += 1
    g.release(0)
    assert resumed == ["second", "first"]
    withdraws["first"](True)
    g.in_flight += 1
    g.release(0)  # nobody left: nothing to resume
    assert resumed == ["second", "first"]
    assert not g.full


def test_the_slot_freed_for_a_resumed_connection_is_kept_for_its_next_request():
    g = full(gate())
    resumed: list[str] = []
    withdraw = hold(g, resumed, "held")
    g.release(0)
    assert resumed == ["held"]
    # Until the resumed connection's request arrives, any other request is refused: the
    # resumed one would otherwise be refused again, its body read twice for nothing.
    assert g.full
    refused = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert refused is not None
    assert refused.status == 503
    withdraw(True)
    assert g.early_answer(b"POST", b"/encode", SIZED, False) == Admitted(14)


def test_a_kept_slot_not_taken_in_time_goes_to_the_next_held_connection():
    g = full(gate())
    resumed: list[str] = []
    hold(g, resumed, "older")
    withdraw = hold(g, resumed, "newer")
    g.release(0)
    assert resumed == ["newer"]
    withdraw(False)  # it sent nothing while its slot was kept (or it closed)
    assert resumed == ["newer", "older"]
    assert g.full  # the slot is kept for "older" now


@pytest.mark.parametrize(("early_retry_hold", "held_for"), [(0.0, 3.0), (2.0, 3.0), (10.0, 10.0)])
def test_a_client_that_did_not_wait_is_held_for_the_early_retry_hold(early_retry_hold, held_for):
    answer = full(gate(early_retry_hold=early_retry_hold)).early_answer(
        b"POST", b"/encode", SIZED, False
    )
    assert answer is not None
    assert answer.early_retry_hold_s == held_for  # never less than Retry-After (3 s)


def test_a_request_held_until_its_hold_ran_out_is_refused_with_a_slot_free():
    g = gate()  # idle: admitted, the request would carry its whole hold in its latency
    stale = g.early_answer(b"POST", b"/encode", SIZED, True)
    assert stale is not None
    assert stale.status == 503
    assert g.in_flight == 0


def test_a_parameterised_route_is_refused_in_its_protocols_dialect():
    g = full(gate())
    answer = g.early_answer(b"POST", b"/v2/models/tiny-vae-encoder/infer", SIZED, False)
    assert answer is not None
    assert answer.body == b'{"error":"too many requests in progress; retry later"}'
    labels = {"route": "/v2/models/{model_name}/infer", "method": "POST", "status": "503"}
    assert sample(g, "vae_http_requests_total", **labels) == 1.0
    # One path segment per parameter: anything else is left to the app.
    for target in (b"/v2/models/a/b/infer", b"/v2/models//infer", b"/v2/models/a/infer/x"):
        assert g.early_answer(b"POST", target, SIZED, False) is None


def test_on_an_idle_worker_a_refused_held_out_request_is_followed_at_once_by_its_retry():
    g = gate()
    stale = g.early_answer(b"POST", b"/encode", SIZED, True)
    assert stale is not None
    assert stale.wait is not None
    resumed: list[str] = []
    withdraw = stale.wait(lambda: resumed.append("retry") is None)
    assert resumed == ["retry"]  # room is free: the connection is resumed as it is held
    withdraw(True)
    assert g.early_answer(b"POST", b"/encode", SIZED, False) == Admitted(14)


def test_a_held_connection_is_resumed_only_within_the_first_half_of_its_hold():
    g = full(gate(max_in_flight=2, retry_after=1))
    resumed: list[str] = []
    hold(g, resumed, "old")
    time.sleep(0.6)  # past half of the 1 s hold: resumed now, it would carry that wait
    g.release(0)
    assert resumed == []
    # Read when its hold runs out, it is refused though a slot is free.
    stale = g.early_answer(b"POST", b"/encode", SIZED, True)
    assert stale is not None
    assert stale.status == 503


def test_a_newer_waiter_past_its_window_does_not_stop_an_older_one_being_resumed():
    g = full(gate(max_in_flight=2, retry_after=1))
    resumed: list[str] = []
    slow = g.early_answer(b"POST", b"/encode", SIZED, False)  # its body will take a while
    assert slow is not None
    assert slow.wait is not None
    time.sleep(0.3)
    quick = hold(g, resumed, "quick")  # refused later, its body read at once
    time.sleep(0.3)  # "slow" is past its window when its body has finally been read
    slow.wait(lambda: resumed.append("slow") is None)
    g.release(0)
    assert resumed == ["quick"]
    quick(True)


def test_a_held_connection_is_resumed_only_when_a_body_like_its_last_fits():
    g = gate(max_in_flight=8, max_bytes=20)
    resumed: list[str] = []
    assert g.early_answer(b"POST", b"/encode", SIZED, False) == Admitted(14)
    hold(g, resumed, "second")  # 14 + 14 > 20: refused and held
    g.release(0)  # a slot frees, but the bytes of the one in progress remain
    assert resumed == []
    g.release(14)
    assert resumed == ["second"]
    assert not g.fits(14)  # its room is kept until its request arrives


def test_withdrawn_connections_are_not_kept():
    g = full(gate())
    resumed: list[str] = []
    for i in range(1000):
        hold(g, resumed, f"c{i}")(False)  # each withdraws at once, as a hold that ends itself
    g.release(0)  # nothing to resume: every connection withdrew
    assert resumed == []


def test_a_connection_held_after_a_slot_freed_goes_on_at_once():
    g = full(gate())
    answer = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert answer is not None
    assert answer.wait is not None
    g.release(0)  # the slot frees while the refused request's body still arrives
    resumed: list[str] = []
    answer.wait(lambda: resumed.append("at once") is None)
    assert resumed == ["at once"]


def test_the_middleware_takes_no_second_slot_for_a_request_admitted_from_its_head():
    from service.api.admission import Admission
    from service.server.early_answers import ADMITTED_KEY

    g = gate(max_in_flight=1)
    admitted = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert admitted == Admitted(14)
    seen: list[tuple[int, int]] = []

    async def app(scope, receive, send):
        seen.append((g.in_flight, g.body_bytes_in_flight))

    middleware = Admission(app, gate=g, request_timeout=0)
    scope = {"type": "http", "path": "/encode", "headers": list(SIZED), ADMITTED_KEY: admitted}
    asyncio.run(middleware(scope, None, None))
    assert seen == [(1, 14)]  # served in its own slot, though the gate is full
    assert (g.in_flight, g.body_bytes_in_flight) == (0, 0)  # and that slot given back
