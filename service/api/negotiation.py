"""Content negotiation: which codec reads the request body and which writes the answer."""

from __future__ import annotations

from fastapi import Request

from service.api.codecs.npy import NPY_MEDIA_TYPE, RAW_MEDIA_TYPE
from service.api.errors import ApiError

JSON = "application/json"
PNG = "image/png"
GIF = "image/gif"
NPY = NPY_MEDIA_TYPE
RAW = RAW_MEDIA_TYPE


def negotiate(
    request: Request, bodies: tuple[str, ...], answers: tuple[str, ...]
) -> tuple[str, str]:
    """(body media type, answer media type) from one pass over the raw headers; 415 / 406."""
    content_type = accept = None
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"accept":  # repeated Accept headers form one list (RFC 9110)
            part = value.decode("latin-1")
            accept = part if accept is None else f"{accept}, {part}"
    return body_type(content_type, bodies), answer_type(accept, answers)


def body_type(raw: str | None, allowed: tuple[str, ...]) -> str:
    """The media type of a Content-Type header, if this route reads it; 415 otherwise."""
    if raw is not None and raw in allowed:  # the common case: one of ours, no parameters
        return raw
    media = raw.split(";", 1)[0].strip().lower() if raw else JSON
    if media not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {raw!r} is not accepted here; use one of: {', '.join(allowed)}",
            "Content-Type",
        )
    return media


def _parse_accept(header: str) -> list[tuple[str, float]]:
    items: list[tuple[str, float]] = []
    for part in header.split(","):
        fields = part.strip().split(";")
        media = fields[0].strip().lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        items.append((media, q))
    return items


def answer_type(header: str | None, offered: tuple[str, ...]) -> str:
    """The best of `offered` (first one is the default) for an Accept header; 406 if none fits."""
    if not header:
        return offered[0]
    if header in offered:  # the common case, e.g. `Accept: application/json`
        return header
    best, best_q = None, 0.0
    for media, q in _parse_accept(header):
        if q <= 0:
            continue
        if media in offered:
            candidate = media
        elif media in ("*/*", "application/*") or (
            media == "image/*" and any(o.startswith("image/") for o in offered)
        ):
            prefix = media.split("/", 1)[0]
            candidate = next(
                (o for o in offered if prefix == "*" or o.startswith(prefix + "/")), None
            )
            if candidate is None:
                continue
        else:
            continue
        if q > best_q:
            best, best_q = candidate, q
    if best is None:
        raise ApiError(
            406,
            "not_acceptable",
            f"cannot answer with {header!r}; this route answers: {', '.join(offered)}",
            "Accept",
        )
    return best
