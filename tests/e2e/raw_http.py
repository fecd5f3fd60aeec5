"""Raw HTTP/1.1 over a socket, for tests that need what an HTTP client hides: the exact head
of an answer, a request sent in parts, a connection kept in a given state."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tests.e2e.conftest import Server


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclass
class Answer:
    status: int
    fields: list[tuple[str, str]]  # header fields in order, names lower-case
    body: bytes = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.fields)

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def read_answer(sock: socket.socket) -> Answer | None:
    """One HTTP/1.1 answer with a Content-Length, or None when the connection ends (closed or
    reset) before a complete one arrives."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = [line.split(":", 1) for line in lines[1:]]
        pairs = [(name.strip().lower(), value.strip()) for name, value in fields]
        length = int(dict(pairs)["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None
    return Answer(int(lines[0].split(" ", 2)[1]), pairs, body)


def read_answers(sock: socket.socket, count: int) -> list[Answer]:
    """Up to `count` answers that may arrive in one read (pipelined), fewer if the connection
    ends first."""
    data = b""
    answers: list[Answer] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            lines = data[:end].decode("latin-1").split("\r\n")
            pairs = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:]]
            fields = [(name.lower(), value) for name, value in pairs]
            length = int(dict(fields)["content-length"])
            if len(data) >= end + 4 + length:
                body = data[end + 4 : end + 4 + length]
                answers.append(Answer(int(lines[0].split(" ", 2)[1]), fields, body))
                data = data[end + 4 + length :]
                continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return answers
