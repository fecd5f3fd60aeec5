"""HTTP-layer limits and shutdown against the real server, driven by raw-socket clients.

Issue 14, rows 1, 3, 5 and 6: endless or huge heads, slowloris and slow bodies, idle
connections, the per-worker connection cap, and SIGTERM with a slow upload or during a burst
of keep-alive requests. Timeouts are set small through the environment; the only timing
assertions are generous liveness bounds (a few times the configured timeout).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, ServerFactory, start_server
from tests.e2e.raw_http import connect, read_answer

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0  # header, body and keep-alive timeouts of the `limited` server
LIMITS_ENV = {
    "VAE_HEADER_TIMEOUT": str(TIMEOUT_S),
    "VAE_BODY_TIMEOUT": str(TIMEOUT_S),
    "VAE_KEEP_ALIVE_TIMEOUT": str(TIMEOUT_S),
}
MAX_HEADER_BYTES = 16384  # the defaults, which these tests hold
MAX_HEADERS = 100
ENCODE_BODY = json.dumps({"images": [[0.5] * 784]}).encode()


@pytest.fixture(scope="module")
def limited(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("limits"), **LIMITS_ENV)
    yield server
    server.stop()


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server ends the connection within `seconds` (reading whatever it sends)."""
    deadline = time.monotonic() + seconds
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def _healthz_seconds(server: Server) -> float:
    start = time.monotonic()
    response = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert response.status_code == 200
    return time.monotonic() - start


def _error_code(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert re.search(rb"(?i)\r\nconnection: close\r\n", head + b"\r\n"), head
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]["code"]


# Request heads


def test_endless_headers_are_cut_and_healthz_still_answers(limited):
    """Row 1: four connections streaming a never-ending header at full speed."""
    cut_after: list[float] = []

    def stream() -> None:
        with connect(limited) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            start = time.monotonic()
            try:
                while time.monotonic() - start < 10:  # 10 s: never cut
                    sock.sendall(b"a" * 65536)
            except OSError:
                pass
            cut_after.append(time.monotonic() - start)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    probes = [_healthz_seconds(limited) for _ in range(5)]
    for thread in threads:
        thread.join()
    assert len(cut_after) == 4
    assert max(cut_after) < 3.0, cut_after
    assert max(probes) < 2.0, probes


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4 * MAX_HEADER_BYTES + b"\r\n\r\n",
        b"GET /healthz?q=" + b"a" * 4 * MAX_HEADER_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEADER_BYTES // 1000 + 1))
        + b"\r\n",
    ],
    ids=["one-huge-header", "huge-url", "head-over-the-byte-limit"],
)
def test_a_head_over_the_byte_limit_is_answered_431(limited, request_head):
    with connect(limited) as sock:
        sock.sendall(request_head)
        closed, raw = _closed_within(sock, 3 * TIMEOUT_S)
    assert closed
    assert _error_code(raw) == (431, "headers_too_large")
    assert _healthz_seconds(limited) < 2.0


def test_too_many_headers_are_answered_431_and_a_head_at_the_limits_is_served(limited):
    many = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")
        closed, raw = _closed_within(sock, 3 * TIMEOUT_S)
    assert closed
    assert _error_code(raw) == (431, "headers_too_large")
    # Just under both limits, and the body in the same packet as the head: served.
    head = (
        b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(ENCODE_BODY)
    )
    value = b"v" * ((MAX_HEADER_BYTES - 500 - len(head)) // (MAX_HEADERS - 3) - 9)
    head += b"".join(b"X-%d: %s\r\n" % (i, value) for i in range(MAX_HEADERS - 3))
    assert MAX_HEADER_BYTES - 1000 < len(head) < MAX_HEADER_BYTES
    with connect(limited) as sock:
        sock.sendall(head + b"\r\n" + ENCODE_BODY)
        answer = read_answer(sock)
    assert answer is not None
    assert answer.status == 200


# Slow clients


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(limited):
    with connect(limited) as sock:
        closed, raw = _closed_within(sock, 3 * TIMEOUT_S)
    assert closed
    assert raw == b""  # nothing was asked, nothing is answered


def test_slowloris_is_closed_after_the_header_timeout(limited):
    """Row 3: a header arriving one byte per 0.2 s."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(limited) as sock:
        received, closed, elapsed = _trickle(sock, (bytes([byte]) for byte in head))
    assert closed, "still open after the whole header"
    assert elapsed < 3 * TIMEOUT_S
    assert _error_code(received) == (408, "header_timeout")


def _trickle(
    sock: socket.socket, pieces: Iterable[bytes], limit_s: float = 60.0
) -> tuple[bytes, bool, float]:
    """Send `pieces` one per 0.2 s until the server closes the connection (or `limit_s`):
    (what it answered, whether it closed, seconds taken)."""
    received, closed = b"", False
    sock.settimeout(0.2)
    start = time.monotonic()
    for piece in pieces:
        if time.monotonic() - start > limit_s:
            break
        try:
            sock.send(piece)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
        received += chunk
        if not chunk:
            closed = True
            break
    return received, closed, time.monotonic() - start


def test_a_slow_body_is_answered_408_after_the_body_timeout(limited):
    """Row 3: a body arriving one byte per 0.2 s."""
    with connect(limited) as sock:
        sock.sendall(
            b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        received, closed, elapsed = _trickle(sock, itertools.repeat(b" "), limit_s=10)
    assert closed
    assert elapsed < 3 * TIMEOUT_S
    assert _error_code(received) == (408, "body_timeout")
    assert _healthz_seconds(limited) < 2.0


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(limited):
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_answer(sock)
        assert answer is not None
        assert (answer.status, answer.closes) == (200, False)
        start = time.monotonic()
        closed, raw = _closed_within(sock, 3 * TIMEOUT_S)
    assert closed
    assert raw == b""
    assert time.monotonic() - start < 3 * TIMEOUT_S


def test_connections_over_the_cap_are_closed_at_once(server_factory: ServerFactory):
    server = server_factory(VAE_MAX_CONNECTIONS="8")
    time.sleep(0.5)  # the readiness probes' connections are gone
    held = [connect(server) for _ in range(8)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(sock)
            assert answer is not None
            assert answer.status == 200
        with connect(server) as extra:
            with contextlib.suppress(OSError):
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, raw = _closed_within(extra, 2.0)
        assert closed
        assert raw == b""
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert _healthz_seconds(server) < 2.0


# Shutdown


def _log_is_clean(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log
    assert "CancelledError" not in log
    assert '"level":"error"' not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_with_a_slow_upload_refuses_new_clients_and_exits_cleanly(
    server_factory: ServerFactory, workers: int
):
    """Row 5: new clients are refused at once (not left to hang in the backlog); the upload
    that never finishes is answered 503 at the grace deadline; exit 0, no traceback."""
    grace = 2.0
    server = server_factory(workers=workers, VAE_SHUTDOWN_TIMEOUT=str(grace))
    with connect(server) as upload:
        upload.sendall(
            b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n["
        )
        time.sleep(0.5)  # read by a worker, in the app
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        refused_after = None
        while time.monotonic() - sent < grace:
            attempt = time.monotonic()
            try:
                # A connection accepted before the workers stop listening is answered;
                # none may hang.
                response = httpx.get(f"{server.base_url}/healthz", timeout=1.5)
                assert response.status_code == 200
            except httpx.ConnectError:
                refused_after = attempt - sent
                break
            time.sleep(0.05)
        assert refused_after is not None, "never refused"
        assert refused_after < 1.5
        upload.settimeout(3 * grace)
        answer = read_answer(upload)
    assert answer is not None
    assert answer.status == 503
    assert json.loads(answer.body)["error"]["code"] == "shutting_down"
    assert server.process.wait(timeout=10 * grace) == 0
    _log_is_clean(server)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_keep_alive_requests_answers_every_request_it_received(
    server_factory: ServerFactory, workers: int
):
    """Row 6: SIGTERM while 16 clients loop on keep-alive connections, and 4 more sit idle
    between two requests and send the next one just after the workers start draining (the
    server never told them to close). Every request sent is answered; each connection's last
    answer says Connection: close; exit 0, no traceback."""
    server = server_factory(workers=workers)
    request = (
        b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(ENCODE_BODY)
    ) + ENCODE_BODY
    sent = answered = unanswered = closed_politely = 0
    statuses: set[int] = set()
    lock = threading.Lock()
    draining = threading.Event()
    idle_ready = threading.Semaphore(0)

    def client(idle: bool) -> None:
        nonlocal sent, answered, unanswered, closed_politely
        with connect(server) as sock:
            while True:
                try:
                    sock.sendall(request)
                except OSError:
                    with lock:
                        unanswered += 1
                    return
                with lock:
                    sent += 1
                answer = read_answer(sock)
                with lock:
                    if answer is None:
                        unanswered += 1
                        return
                    statuses.add(answer.status)
                    answered += 1
                    if answer.closes:
                        closed_politely += 1
                        return
                if idle:
                    idle = False
                    idle_ready.release()
                    draining.wait(timeout=30)

    clients = [threading.Thread(target=client, args=(i < 4,)) for i in range(20)]
    for thread in clients:
        thread.start()
    for _ in range(4):
        assert idle_ready.acquire(timeout=30)
    time.sleep(1.0)
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while server.log().count("Shutting down") < workers and time.monotonic() < deadline:
        time.sleep(0.01)
    draining.set()
    for thread in clients:
        thread.join(timeout=30)
    assert server.process.wait(timeout=30) == 0
    assert sent > len(clients)
    assert unanswered == 0, f"{unanswered} of {sent} requests unanswered"
    assert answered == sent
    assert statuses == {200}
    assert closed_politely == len(clients)
    _log_is_clean(server)
