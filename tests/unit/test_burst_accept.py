"""`BurstAcceptLoop`: connections waiting together in the accept queue are taken together,
even while the loop is busy (plain uvloop takes about one per loop iteration: a health probe
then waits behind every connection queued before it), and a closed server accepts no more."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from service.server.accept import BurstAcceptLoop

PENDING = 200


class Recorder(asyncio.Protocol):
    made: list[asyncio.Transport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)  # type: ignore[arg-type]


@contextmanager
def burst_loop() -> Iterator[BurstAcceptLoop]:
    loop = BurstAcceptLoop()
    try:
        yield loop
    finally:
        loop.close()


def test_pending_connections_are_all_taken_within_a_few_busy_loop_iterations():
    made: list[asyncio.Transport] = []
    Recorder.made = made
    with burst_loop() as loop:
        server = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0, backlog=1024))
        port = server.sockets[0].getsockname()[1]
        # Connected by the kernel while the loop does not run: all in the accept queue.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(PENDING)]
        busy_iterations = 0

        def busy() -> None:  # a loaded server: every iteration does some blocking work
            nonlocal busy_iterations
            busy_iterations += 1
            time.sleep(0.002)
            loop.call_soon(busy)

        loop.call_soon(busy)

        async def until_all_made() -> None:
            while len(made) < PENDING:
                await asyncio.sleep(0)

        loop.run_until_complete(asyncio.wait_for(until_all_made(), timeout=60))
        # uvloop alone needs about one iteration per connection (PENDING here).
        assert busy_iterations < PENDING // 10
        server.close()
        loop.run_until_complete(server.wait_closed())
        for transport in made:
            transport.close()
        for client in clients:
            client.close()
        loop.run_until_complete(asyncio.sleep(0))


def test_a_closed_server_accepts_nothing_more():
    Recorder.made = []
    with burst_loop() as loop:
        server = loop.run_until_complete(loop.create_server(Recorder, "127.0.0.1", 0, backlog=1024))
        port = server.sockets[0].getsockname()[1]
        server.close()
        loop.run_until_complete(server.wait_closed())
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
