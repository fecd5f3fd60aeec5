"""Client text quoted back in error messages: clipped first, then quoted, so a huge header,
name or value is never echoed (or logged) whole. No dependencies: every layer's messages
use it."""

from __future__ import annotations

SHOWN_CHARS = 48


def quoted(value: object) -> str:
    """`repr` of the text, clipped to SHOWN_CHARS (repr escapes control characters)."""
    text = str(value)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")
