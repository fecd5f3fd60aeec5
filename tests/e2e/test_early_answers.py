"""Admission control's refusals answered by the server from a request's head
(service.server.early_answers), on a real server with room for one request in flight.

- The early refusal is byte for byte the app's own refusal (the reference: the app answers
  the same request when its path is spelled so that only the app's router recognises it).
- A refused connection stays open; its next request is not read until a slot is free, and is
  then served (here the hold would last 60 s, so only the freed slot can explain the answer).
- On SIGTERM a held request is read and answered, with `Connection: close`.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from tests.e2e.conftest import Server, ServerFactory
from tests.e2e.raw_http import Answer, connect, read_answer, read_answers

ENV = {"VAE_MAX_IN_FLIGHT": "1", "VAE_RETRY_AFTER": "60", "VAE_ACCESS_LOG": "false"}
BODY = orjson.dumps({"images": [[0.25] * 784], "seed": 3})
LIVENESS_S = 30.0  # far below the 60 s hold: an answer before it means a freed slot


def request(path: str, body: bytes = BODY, headers: tuple[str, ...] = ()) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    head += [*headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def ask(server: Server, raw: bytes) -> tuple[socket.socket, Answer]:
    sock = connect(server, timeout=LIVENESS_S)
    sock.sendall(raw)
    answer = read_answer(sock)
    assert answer is not None, "the connection ended without an answer"
    return sock, answer


def status_of_one_request(server: Server) -> int:
    probe, answer = ask(server, request("/encode"))
    probe.close()
    return answer.status


def has_answer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(LIVENESS_S)


@contextmanager
def slots_taken(server: Server, count: int = 1) -> Iterator[list[socket.socket]]:
    """The server's `count` slots each held by a request whose headers are in and whose body
    is not; closing one (or sending its body) frees its slot."""
    raw = request("/encode")
    for _ in range(20):
        # The previous test's slot is freed once the server has seen its connection close.
        while status_of_one_request(server) != 200:
            pass
        holders = []
        for _ in range(count):
            holders.append(holder := connect(server, timeout=LIVENESS_S))
            holder.sendall(raw[: raw.index(b"\r\n\r\n") + 4])
        # Taken once another request is refused; unless a request that has not finished
        # yet (a probe) held a slot when a holder's head arrived, and it was refused.
        for _ in range(50):
            if status_of_one_request(server) == 503:
                break
        if not any(has_answer(h) for h in holders) and status_of_one_request(server) == 503:
            break
        for holder in holders:
            holder.close()
    else:
        raise AssertionError("held requests never took the slots")
    try:
        yield holders
    finally:
        for holder in holders:
            holder.close()


@contextmanager
def slot_taken(server: Server) -> Iterator[socket.socket]:
    """The one slot of a server with one, as `slots_taken`."""
    with slots_taken(server) as (holder,):
        yield holder


@pytest.fixture(scope="module")
def one_slot(tiny_model_dir, tmp_path_factory) -> Iterator[Server]:
    from tests.e2e.conftest import start_server

    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("early"), **ENV)
    yield server
    server.stop()


def comparable(answer: Answer) -> tuple[int, list[tuple[str, str]], bytes]:
    """The answer without what differs between any two answers (the date; a generated id)."""
    fields = [(name, "" if name == "date" else value) for name, value in answer.fields]
    return answer.status, fields, answer.body


@pytest.mark.parametrize(
    ("query", "headers", "body"),
    [
        ("", (), BODY),
        ("?seed=4", ("X-Request-ID: client-id-1",), BODY),
        ("", ("X-Request-ID: not a token", "Accept: application/x-npy"), BODY),
        ("", ("Expect: 100-continue",), BODY * 40),
    ],
)
def test_the_early_refusal_is_the_apps_own_refusal(one_slot, query, headers, body):
    with slot_taken(one_slot):
        early_sock, early = ask(one_slot, request("/encode" + query, body, headers))
        app_sock, reference = ask(one_slot, request("/%65ncode" + query, body, headers))
        early_sock.close()
        app_sock.close()
    assert early.status == 503
    assert early.headers["retry-after"] == "60"
    assert orjson.loads(early.body)["error"]["code"] == "overloaded"
    if "X-Request-ID: client-id-1" in headers:
        assert early.headers["x-request-id"] == reference.headers["x-request-id"] == "client-id-1"
    else:  # a new id each: compared by shape only
        assert len(early.headers["x-request-id"]) == len(reference.headers["x-request-id"]) == 32
        early.fields = [(n, v) for n, v in early.fields if n != "x-request-id"]
        reference.fields = [(n, v) for n, v in reference.fields if n != "x-request-id"]
    assert comparable(early) == comparable(reference)


def test_an_oip_inference_is_refused_in_the_oip_dialect_by_either_path(one_slot):
    name = "tiny-vae-encoder"
    oip = b'{"inputs":[{"name":"images","datatype":"FP32","shape":[1,784],"data":[%s]}]}' % (
        b",".join([b"0.5"] * 784)
    )
    with slot_taken(one_slot):
        early_sock, early = ask(one_slot, request(f"/v2/models/{name}/infer", oip))
        app_sock, reference = ask(one_slot, request(f"/v2/models/{name}/%69nfer", oip))
        early_sock.close()
        app_sock.close()
    assert early.status == reference.status == 503
    assert orjson.loads(early.body) == {"error": "too many requests in progress; retry later"}
    assert early.body == reference.body
    assert early.headers["retry-after"] == reference.headers["retry-after"] == "60"


def test_a_refused_connection_stays_open_and_its_next_request_waits_for_a_free_slot(one_slot):
    with slot_taken(one_slot) as holder:
        sock, refused = ask(one_slot, request("/encode"))
        assert refused.status == 503
        assert not refused.closes
        sock.sendall(request("/encode"))  # at once, ignoring Retry-After: held back
        holder.sendall(BODY)  # the slot's request completes and frees it
        assert (first := read_answer(holder)) is not None
        assert first.status == 200
        served = read_answer(sock)
    assert served is not None, "the held request was never answered"
    assert served.status == 200
    assert orjson.loads(served.body)["z"] == orjson.loads(first.body)["z"]  # same seed, image
    sock.close()


def test_sigterm_answers_a_held_request_and_closes(server_factory: ServerFactory):
    server = server_factory(**ENV)
    with slot_taken(server) as holder:
        sock, refused = ask(server, request("/encode"))
        assert refused.status == 503
        sock.sendall(request("/encode"))  # held back
        server.process.send_signal(signal.SIGTERM)
        held = read_answer(sock)
        holder.sendall(BODY)
        last = read_answer(holder)
    assert held is not None
    assert held.closes
    assert held.status in (200, 503)
    assert last is not None
    assert last.status == 200
    assert last.closes
    assert server.process.wait(timeout=60) == 0


def test_a_body_that_would_pass_the_bytes_in_flight_bound_is_refused(
    server_factory,
):
    bound = len(BODY) + 1  # one body fits, two do not
    server = server_factory(
        **{**ENV, "VAE_MAX_IN_FLIGHT": "8", "VAE_MAX_BODY_BYTES_IN_FLIGHT": str(bound)}
    )
    raw = request("/encode")
    # The holder's declared body counts from its head on, though none of it has come.
    with slot_taken(server) as holder:
        refused_sock, refused = ask(server, raw)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "60"
        assert orjson.loads(refused.body)["error"]["code"] == "overloaded"
        holder.sendall(raw[raw.index(b"\r\n\r\n") + 4 :])
        served = read_answer(holder)
        assert served is not None
        assert served.status == 200
        refused_sock.close()
    # Its bytes were given back (a refused probe's held connection may hold the room for a
    # moment: closed by its client, it is resumed before the server reads its end).
    assert any(status_of_one_request(server) == 200 for _ in range(50))


def test_a_slot_kept_for_a_resumed_connection_that_sends_nothing_goes_back(one_slot):
    with slot_taken(one_slot):
        quiet, refused = ask(one_slot, request("/encode"))  # honours Retry-After: sends nothing
        assert refused.status == 503
    # The holder closed: its slot is kept for `quiet`, the newest held connection, which sends
    # nothing; the slot goes back long before quiet's 60 s hold runs out, and before its idle
    # keep-alive connection would be closed (5 s), which would also give the slot back.
    deadline = time.monotonic() + 2.5
    while status_of_one_request(one_slot) != 200:
        assert time.monotonic() < deadline, "the slot kept for a quiet connection never came back"
        time.sleep(0.05)
    assert not has_answer(quiet)
    quiet.close()


def test_a_held_request_is_served_once_a_newer_waiters_kept_slot_lapses(server_factory):
    """Review finding: once the only newer waiter had been woken and gone quiet, the older
    held request was refused again and again on an idle server. (Retry-After 3 s: the older
    one must be resumed within the first half of it, after the newer one's 0.25 s claim.)"""
    server = server_factory(**{**ENV, "VAE_RETRY_AFTER": "3"})
    with slot_taken(server):
        mover, refused = ask(server, request("/encode"))
        assert refused.status == 503
        mover.sendall(request("/encode"))  # at once: held for up to 1 s
        quiet, also_refused = ask(server, request("/encode"))  # honours Retry-After
        assert also_refused.status == 503
    # The holder closed: its slot went to `quiet` (the newest), which sends nothing.
    served = read_answer(mover)
    assert served is not None
    assert served.status == 200
    mover.close()
    quiet.close()


def test_a_request_held_until_its_hold_ran_out_is_refused_while_others_wait(server_factory):
    """Found in review of the head-first read of a held request: the request was decided
    before it was marked as held out, so a busy worker admitted it after its whole hold."""
    server = server_factory(**{**ENV, "VAE_MAX_IN_FLIGHT": "2", "VAE_RETRY_AFTER": "4"})
    with slots_taken(server, 2) as (_, other):
        waiters = []
        for _ in range(2):
            sock, refused = ask(server, request("/encode"))
            assert refused.status == 503
            # At once, ignoring Retry-After: held back. Large: once refused, it is dropped.
            sock.sendall(request("/encode", body=LARGE_BODY))
            waiters.append(sock)
        time.sleep(3)  # past their wake windows (the first half of their 4 s holds)
        other.sendall(BODY)  # a slot frees, and no held connection may be resumed
        assert (done := read_answer(other)) is not None
        assert done.status == 200
        # The first hold runs out: its request is read while the other connection waits and
        # a request is in flight.
        held_out = read_answer(waiters[0])
        for sock in waiters:
            sock.close()
    assert held_out is not None
    assert held_out.status == 503


def test_a_client_that_did_not_wait_for_retry_after_waits_the_early_retry_hold(server_factory):
    server = server_factory(**{**ENV, "VAE_RETRY_AFTER": "1", "VAE_EARLY_RETRY_HOLD": "3"})
    with slot_taken(server):  # busy throughout
        sock, refused = ask(server, request("/encode"))
        assert refused.status == 503
        sock.sendall(request("/encode"))  # at once, ignoring Retry-After
        time.sleep(2)  # past Retry-After, and past the hold of a client that waited
        assert not has_answer(sock), "answered before VAE_EARLY_RETRY_HOLD had passed"
        again = read_answer(sock)
    assert again is not None
    assert again.status == 503
    assert again.headers["retry-after"] == "1"
    sock.close()


def test_a_client_that_waited_for_retry_after_sends_a_new_request(server_factory):
    """Its request is not one held until its hold ran out (which is refused): it came after
    the hold, as from any new client, and takes a free slot though other connections wait."""
    env = {"VAE_MAX_IN_FLIGHT": "2", "VAE_RETRY_AFTER": "2", "VAE_EARLY_RETRY_HOLD": "30"}
    server = server_factory(**{**ENV, **env})
    with slots_taken(server, 2) as (_, other):
        polite, refused = ask(server, request("/encode"))
        assert refused.status == 503
        impolite, also_refused = ask(server, request("/encode"))
        assert also_refused.status == 503
        impolite.sendall(request("/encode"))  # at once: held for 30 s
        time.sleep(1.2)  # past both wake windows (the first half of Retry-After)
        other.sendall(BODY)  # a slot frees, and no held connection may be resumed
        assert (done := read_answer(other)) is not None
        assert done.status == 200
        time.sleep(1.2)  # the polite client's Retry-After has passed
        polite.sendall(request("/encode"))
        served = read_answer(polite)
        assert not has_answer(impolite)  # still held
        impolite.close()
    assert served is not None
    assert served.status == 200
    polite.close()


def test_a_pipelined_request_behind_a_refused_one_is_answered_in_order(one_slot):
    with slot_taken(one_slot):
        sock = connect(one_slot, timeout=LIVENESS_S)
        sock.sendall(request("/encode") + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        refused, health = read_answer(sock), read_answer(sock)
    assert refused is not None
    assert refused.status == 503
    assert health is not None
    assert health.status == 200
    sock.close()


def test_an_upgrade_request_over_the_bound_is_left_to_the_app_without_a_traceback(one_slot):
    """Review finding: answered early, such a request crashed the protocol's upgrade path
    (a KeyError traceback at error level for every one). The app's path (uvicorn: an
    unsupported upgrade, a warning) is what it gets now."""
    with slot_taken(one_slot):
        sock = connect(one_slot, timeout=LIVENESS_S)
        sock.sendall(request("/encode", headers=("Connection: Upgrade", "Upgrade: websocket")))
        # Handled by now: a later request of another connection has been answered.
        assert status_of_one_request(one_slot) == 503
        sock.close()
    assert "KeyError" not in one_slot.log()
    assert "Fatal error" not in one_slot.log()


def test_a_body_over_the_limit_gets_the_apps_413_not_a_refusal(server_factory):
    server = server_factory(**ENV, VAE_MAX_BODY_BYTES="8192")  # above the probes' ~4 KB
    with slot_taken(server):
        sock = connect(server, timeout=LIVENESS_S)
        head = request("/encode", body=b"x" * 20000)
        sock.sendall(head[: head.index(b"\r\n\r\n") + 4])  # the app refuses from the head
        answer = read_answer(sock)
        sock.close()
    assert answer is not None
    assert answer.status == 413


def test_a_request_arriving_with_the_tail_of_a_refused_one_is_read_in_full(one_slot):
    """Found by the overload benchmark: the second request's head came in the same read as
    the first one's body; its hold was dropped with reading still paused, so the rest of its
    body (and everything after it) was never read. (TCP may also deliver the two in separate
    reads; then the second is held until the slot frees. Either way, all three are answered.)"""
    with slot_taken(one_slot) as holder:
        sock = connect(one_slot, timeout=LIVENESS_S)
        second = request("/encode")
        split = second.index(b"\r\n\r\n") + 4 + 100
        sock.sendall(request("/encode") + second[:split])
        # Both refused from their heads when they share a read (the case of the bug); when
        # TCP splits them, only the first (after the socket timeout), the second being held.
        answers = read_answers(sock, 2)
        sock.sendall(second[split:] + request("/encode"))
        holder.sendall(BODY)
        assert (freed := read_answer(holder)) is not None
        assert freed.status == 200
        answers += read_answers(sock, 3 - len(answers))
        sock.close()
    assert len(answers) == 3, f"the connection stopped reading after {len(answers)} answers"
    assert answers[0].status == 503
    assert {a.status for a in answers[1:]} <= {200, 503}


# A refused body this large arriving after its head is dropped in the kernel
# (service.server.direct_reads), not read through the parser.
LARGE_BODY = orjson.dumps({"images": [[0.25] * 784] * 64, "seed": 3})


def send_in_parts(sock: socket.socket, data: bytes, parts: int = 4) -> None:
    """`data` in separate reads of the server (a pause between parts)."""
    step = -(-len(data) // parts)
    for start in range(0, len(data), step):
        sock.sendall(data[start : start + step])
        time.sleep(0.05)


def test_a_large_refused_body_is_dropped_exactly_up_to_the_next_request(one_slot):
    raw = request("/encode", body=LARGE_BODY)
    split = raw.index(b"\r\n\r\n") + 4
    with slot_taken(one_slot) as holder:
        sock = connect(one_slot, timeout=LIVENESS_S)
        sock.sendall(raw[:split])
        refused = read_answer(sock)  # from the head alone: the whole body is still to come
        assert refused is not None
        assert refused.status == 503
        # The body's last part and the next request in one read: one byte dropped too many
        # or too few and the next request is lost or unparseable.
        send_in_parts(sock, raw[split:-1000])
        sock.sendall(raw[-1000:] + request("/encode"))
        holder.sendall(BODY)  # frees the slot: the held request is read
        assert (first := read_answer(holder)) is not None
        served = read_answer(sock)
    assert served is not None, "the request after the dropped body was never answered"
    assert served.status == 200
    assert orjson.loads(served.body)["z"] == orjson.loads(first.body)["z"]
    sock.close()


def open_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def test_a_client_gone_in_the_middle_of_a_large_refused_body_costs_nothing(one_slot):
    raw = request("/encode", body=LARGE_BODY)
    split = raw.index(b"\r\n\r\n") + 4
    with slot_taken(one_slot):
        before = open_fds(one_slot)
        for close in (True, True, False):
            sock = connect(one_slot, timeout=LIVENESS_S)
            sock.sendall(raw[:split])
            assert (refused := read_answer(sock)) is not None
            assert refused.status == 503
            send_in_parts(sock, raw[split : split + 100_000], parts=2)
            if close:
                sock.close()
            else:  # the client's end of the stream, mid-body: the server closes too
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(1) == b"", "answered, not closed, when the client ended"
                sock.close()
        # Each connection, and the descriptor its body was being dropped through, is closed.
        deadline = time.monotonic() + LIVENESS_S
        while open_fds(one_slot) > before:
            assert time.monotonic() < deadline, "descriptors of closed connections left open"
            time.sleep(0.05)
    assert "Traceback" not in one_slot.log()


def test_a_large_refused_body_that_stops_arriving_meets_the_body_timeout(server_factory):
    server = server_factory(**ENV, VAE_BODY_TIMEOUT="1")
    raw = request("/encode", body=LARGE_BODY)
    split = raw.index(b"\r\n\r\n") + 4
    with slot_taken(server):
        sock = connect(server, timeout=LIVENESS_S)
        sock.sendall(raw[:split])
        assert (refused := read_answer(sock)) is not None
        assert refused.status == 503
        send_in_parts(sock, raw[split : split + 100_000], parts=2)
        # The rest never comes: 408 and a close, before the socket's 30 s timeout (the
        # deadline is not suspended while the body is being dropped).
        late = read_answer(sock)
        assert late is not None
        assert late.status == 408
        assert sock.recv(1) == b""
    sock.close()
