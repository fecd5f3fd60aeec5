"""`service.server.direct_reads` on real TCP connections of a uvloop server: a kernel skip
drops exactly its count and leaves what follows to the transport, reports a connection that
ends first, gives way to the transport's own reads past its cap; `read_now` reads what has
come to a paused transport."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvloop

from service.server import direct_reads
from service.server.direct_reads import KernelSkip, read_now

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="MSG_TRUNC drops are Linux's")

TIMEOUT_S = 30.0


class Paused(asyncio.Protocol):
    """A server connection that reads nothing until told to, recording what it is given."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.more = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.more.set()


@contextmanager
def connections(
    count: int,
) -> Iterator[tuple[asyncio.AbstractEventLoop, list[tuple[socket.socket, Paused]]]]:
    """`count` client sockets, each with the paused server side of its connection."""
    loop = uvloop.new_event_loop()
    made: list[Paused] = []

    def factory() -> Paused:
        made.append(protocol := Paused())
        return protocol

    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    clients = []
    try:
        for _ in range(count):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S))

        async def all_made() -> None:
            while len(made) < count or any(p.transport is None for p in made):
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(all_made(), TIMEOUT_S))
        # Paused once made (uvloop starts reading after connection_made, whatever it did).
        for protocol in made:
            assert protocol.transport is not None
            protocol.transport.pause_reading()
        yield loop, list(zip(clients, made, strict=True))
    finally:
        for client in clients:
            client.close()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def skip_and_wait(
    loop: asyncio.AbstractEventLoop, protocol: Paused, count: int
) -> tuple[KernelSkip | None, list[bool]]:
    assert protocol.transport is not None
    outcome: list[bool] = []
    skip = KernelSkip.start(loop, protocol.transport, count, outcome.append)
    return skip, outcome


def run_until(loop: asyncio.AbstractEventLoop, condition) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(wait(), TIMEOUT_S))


def test_a_skip_drops_exactly_its_count_and_the_transport_reads_what_follows():
    body = bytes(range(256)) * 1000  # 256,000 bytes, sent in parts
    with connections(1) as (loop, [(client, protocol)]):
        skip, outcome = skip_and_wait(loop, protocol, len(body))
        assert skip is not None
        for start in range(0, len(body), 60_000):
            client.sendall(body[start : start + 60_000])
        client.sendall(b"NEXT REQUEST")
        run_until(loop, lambda: outcome)
        assert outcome == [True]
        assert protocol.transport is not None
        protocol.transport.resume_reading()
        run_until(loop, lambda: len(protocol.received) >= len(b"NEXT REQUEST"))
        assert bytes(protocol.received) == b"NEXT REQUEST"
    assert KernelSkip.active == 0


def test_a_connection_that_ends_first_is_reported_and_its_skip_ends():
    with connections(1) as (loop, [(client, protocol)]):
        skip, outcome = skip_and_wait(loop, protocol, 100_000)
        assert skip is not None
        client.sendall(b"x" * 10_000)
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: outcome)
        assert outcome == [False]
    assert KernelSkip.active == 0


def test_past_the_cap_no_skip_starts_until_one_ends(monkeypatch):
    monkeypatch.setattr(direct_reads, "MAX_SKIPS", 2)
    with connections(3) as (loop, pairs):
        first, _ = skip_and_wait(loop, pairs[0][1], 1000)
        second, _ = skip_and_wait(loop, pairs[1][1], 1000)
        assert first is not None
        assert second is not None
        assert skip_and_wait(loop, pairs[2][1], 1000)[0] is None  # read by the transport
        first.stop()
        third, _ = skip_and_wait(loop, pairs[2][1], 1000)
        assert third is not None
        second.stop()
        third.stop()
    assert KernelSkip.active == 0


def test_read_now_reads_what_has_come_to_a_paused_transport_and_nothing_more():
    with connections(1) as (loop, [(client, protocol)]):
        assert protocol.transport is not None
        assert read_now(protocol.transport, 16) is None  # nothing yet
        client.sendall(b"GET / HTTP/1.1\r\n\r\nand the rest")
        run_until(loop, lambda: _readable(protocol.transport))
        assert read_now(protocol.transport, 18) == b"GET / HTTP/1.1\r\n\r\n"
        protocol.transport.resume_reading()
        run_until(loop, lambda: protocol.received == b"and the rest")


def _readable(transport: asyncio.Transport | None) -> bool:
    assert transport is not None
    sock = transport.get_extra_info("socket")
    raw = socket.socket(sock.family, sock.type, sock.proto, sock.fileno())
    try:
        raw.setblocking(False)
        return bool(raw.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        raw.detach()
