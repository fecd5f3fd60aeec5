"""Reads of a connection's socket that bypass its transport (paused meanwhile), for refused
requests under a flood.

Nearly every large request of a flood is refused from its head, yet its body must still be
read to reach the connection's next request. Through the transport, each byte is copied twice
(kernel to libuv's buffer, then into a `bytes` for the parser) and passes two Python
callbacks, and libuv reads 256 KB at a time, so a refused body is mostly read before its head
is even parsed. Two ways around that:

- `read_now` reads a few KB at once: enough for a request head (and a small body), so a
  request likely to be refused is decided before most of its body is read;
- `KernelSkip` drops a known number of bytes in the kernel: `recv(..., MSG_TRUNC)` on a Linux
  TCP socket discards them with no copy (tcp(7)). It watches a duplicate of the socket, so the
  loop's own watcher on the connection stays as it was.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import socket
import sys
from collections.abc import Callable

# A request head and a one-image JSON body (~4 KB), in one read.
HEAD_READ_BYTES = 16 * 1024
# A skip is worth its set-up (a dup, a watcher, a close: about as much as reading a few tens
# of KB through the transport) only for at least this many bytes.
MIN_SKIP_BYTES = 64 * 1024

# At most this many skips at once per worker, each holding a second descriptor of its
# connection (service.__main__ budgets them in the open-files limit); past it, refused
# bodies are read as before.
MAX_SKIPS = 256

_TCP = frozenset({socket.AF_INET, socket.AF_INET6})
# MSG_TRUNC drops TCP bytes without touching the buffer, which must still be large enough for
# the count asked for: an anonymous mapping whose pages, never written, never become resident.
_SCRATCH = mmap.mmap(-1, 1 << 20)
_SCRATCH_LEN = len(_SCRATCH)


def _tcp_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """The transport's socket object (uvloop's stand-in), if plain TCP on Linux."""
    if sys.platform != "linux" or transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in _TCP or sock.type != socket.SOCK_STREAM:
        return None
    return sock


def read_now(transport: asyncio.BaseTransport, size: int) -> bytes | None:
    """Up to `size` bytes that have arrived on the paused `transport`'s socket (b"" at its
    end), or None when there are none yet or the transport's socket cannot be read here."""
    sock = _tcp_socket(transport)
    if sock is None:
        return None
    # A socket object over the same descriptor, detached before it could close it.
    # Non-blocking as the descriptor is, whatever socket.setdefaulttimeout says.
    raw = socket.socket(sock.family, sock.type | socket.SOCK_NONBLOCK, sock.proto, sock.fileno())
    try:
        return raw.recv(size)
    except OSError:  # nothing yet; or reset, which the transport's own read will report
        return None
    finally:
        raw.detach()


class KernelSkip:
    """Drops the next `count` bytes of a connection, then calls `done(True)`; `done(False)` if
    the connection ends first. `stop` ends it early without calling `done`."""

    __slots__ = ("_done", "_fd", "_left", "_loop", "_sock")

    active = 0  # skips in progress in this process

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        count: int,
        done: Callable[[bool], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._left = count
        self._done = done
        loop.add_reader(self._fd, self._ready)
        KernelSkip.active += 1

    @classmethod
    def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.BaseTransport,
        count: int,
        done: Callable[[bool], None],
    ) -> KernelSkip | None:
        """A skip of `transport`'s next `count` bytes, or None where the kernel cannot drop
        them (not Linux, not plain TCP) or `MAX_SKIPS` are under way: the caller then reads
        them as usual."""
        sock = _tcp_socket(transport)
        if sock is None or cls.active >= MAX_SKIPS:
            return None
        try:
            dup = socket.socket(
                sock.family, sock.type | socket.SOCK_NONBLOCK, sock.proto, os.dup(sock.fileno())
            )
        except OSError:
            return None
        try:
            return cls(loop, dup, count, done)
        except BaseException:
            dup.close()
            raise

    def _ready(self) -> None:
        try:
            n = self._sock.recv_into(_SCRATCH, min(self._left, _SCRATCH_LEN), socket.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the client
            n = 0
        if n:
            self._left -= n
            if self._left > 0:
                return
        self.stop()
        self._done(n > 0)

    def stop(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._sock.close()  # the duplicate only: the connection stays open
            self._fd = -1
            KernelSkip.active -= 1
