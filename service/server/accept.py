"""uvloop, accepting every pending connection when the listening socket is readable.

libuv (under uvloop) takes about one new connection per event-loop iteration. Under a flood an
iteration lasts tens of milliseconds, so new connections, a supervisor's health probe among
them, wait seconds in the kernel's accept queue: measured here, 28 accepts a second while 1,800
connections flooded one worker, and `/healthz` on a new connection took 3-10 s. This loop adds
its own reader on a duplicate of each listening socket's descriptor: when it is readable it
accepts up to `ACCEPT_BURST` connections and hands each to the same protocol factory, as
asyncio's own loop does. uvloop's server stays in place (its close, its sockets); whichever
reader runs first takes a connection.

Chosen with `uvicorn.Config(loop="service.server.accept:BurstAcceptLoop")` (a custom loop
is named by its factory: the class).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import uvloop

log = logging.getLogger("service.server")

ACCEPT_BURST = 512  # at most this many connections per readiness, so the loop keeps turning
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _BurstAcceptServer:
    """uvloop's server with the burst readers removed when it closes."""

    def __init__(self, server: asyncio.AbstractServer, stop: Callable[[], None]) -> None:
        self._server = server
        self._stop = stop

    def close(self) -> None:
        self._stop()
        self._server.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class BurstAcceptLoop(uvloop.Loop):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._connecting: set[asyncio.Task[None]] = set()

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Callable[[], asyncio.Protocol], *args: Any, **kwargs: Any
    ) -> Any:
        server = await super().create_server(protocol_factory, *args, **kwargs)
        if kwargs.get("ssl") is not None:
            return server
        listeners = []
        for sock in server.sockets:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            listener = socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
            listener.setblocking(False)
            self.add_reader(listener.fileno(), self._accept_burst, listener, protocol_factory)
            listeners.append(listener)

        def stop() -> None:
            for listener in listeners:
                if listener.fileno() != -1:
                    self.remove_reader(listener.fileno())
                    listener.close()

        return _BurstAcceptServer(server, stop)

    def _accept_burst(
        self, listener: socket.socket, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    log.warning("cannot accept a connection: %s", exc.strerror)
                    return
                raise
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The loop keeps only weak references to tasks: without this one a pending
            # connection's task could be collected before its transport exists.
            task = self.create_task(self._connect(conn, protocol_factory))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(
        self, conn: socket.socket, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        try:
            await self.connect_accepted_socket(protocol_factory, conn)
        except OSError:  # the client is gone already
            conn.close()
