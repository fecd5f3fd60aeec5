"""`AdmissionGate`, the bound the server consults from a request's head: which requests it
refuses early, what the refusal is, how it is counted, and which held connection a freed slot
resumes (the newest; one held until its hold ran out yields to newer ones)."""

from __future__ import annotations

from typing import Any

import pytest

from service.api.admission import AdmissionGate
from service.api.metrics import Metrics

ROUTES = ("/encode", "/decode", "/v2/models/{model_name}/infer")
BODY = b'{"images": []}'
SIZED = [(b"content-length", b"14")]  # a body of declared length within the limit


def gate(max_in_flight: int = 1, *, cors: bool = False, retry_after: int = 3) -> AdmissionGate:
    return AdmissionGate(
        routes=ROUTES,
        max_in_flight=max_in_flight,
        max_body_bytes=1000,
        retry_after=retry_after,
        metrics=Metrics(),
        access_log=False,
        cors=cors,
    )


def full(g: AdmissionGate) -> AdmissionGate:
    g.in_flight = g.max_in_flight
    return g


def sample(g: AdmissionGate, name: str, **labels: str) -> float | None:
    return g.metrics.registry.get_sample_value(name, labels)


def test_under_the_bound_every_request_goes_to_the_app():
    g = gate(max_in_flight=2)
    g.in_flight = 1
    assert g.early_answer(b"POST", b"/encode", SIZED, False) is None


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
    assert answer.hold_s == 3.0
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
    for name in ("first", "second"):
        hold(g, resumed, name)
    hold(g, resumed, "closed", alive=False)
    g.release()
    assert resumed == ["second"]  # the closed one was skipped
    g.in_flight += 1
    g.release()
    assert resumed == ["second", "first"]
    g.in_flight += 1
    g.release()  # nobody left: nothing to resume
    assert resumed == ["second", "first"]


def test_a_request_held_until_its_hold_ran_out_yields_a_free_slot_to_a_newer_one():
    g = full(gate())
    resumed: list[str] = []
    hold(g, resumed, "newer")
    g.in_flight = 0  # a slot is free, and a newer request still waits
    stale = g.early_answer(b"POST", b"/encode", SIZED, True)
    assert stale is not None
    assert stale.status == 503
    assert resumed == ["newer"]
    # With nobody waiting, the same request is admitted.
    assert g.early_answer(b"POST", b"/encode", SIZED, True) is None


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


def test_a_held_out_request_is_admitted_when_no_newer_connection_still_waits():
    g = full(gate())
    resumed: list[str] = []
    withdraw = hold(g, resumed, "gone")
    hold(g, resumed, "closed", alive=False)
    withdraw()  # its hold ended another way (or it closed): the gate forgets it
    g.in_flight = 0
    # An idle worker never refuses: nobody newer is waiting for the free slot.
    assert g.early_answer(b"POST", b"/encode", SIZED, True) is None
    assert resumed == []


def test_withdrawn_connections_are_not_kept():
    g = full(gate())
    resumed: list[str] = []
    for i in range(1000):
        hold(g, resumed, f"c{i}")()  # each withdraws at once, as a hold that ends by itself
    g.release()  # nothing to resume: every connection withdrew
    assert resumed == []


def test_a_connection_held_after_a_slot_freed_goes_on_at_once():
    g = full(gate())
    answer = g.early_answer(b"POST", b"/encode", SIZED, False)
    assert answer is not None
    assert answer.wait is not None
    g.release()  # the slot frees while the refused request's body still arrives
    resumed: list[str] = []
    answer.wait(lambda: resumed.append("at once") is None)
    assert resumed == ["at once"]
