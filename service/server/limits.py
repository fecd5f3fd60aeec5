"""The HTTP connection limits, apart from the protocol that enforces them (which imports
uvicorn), so the settings can take their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits of one worker's HTTP connections (seconds and bytes)."""

    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 4096


DEFAULT_LIMITS = HttpLimits()
