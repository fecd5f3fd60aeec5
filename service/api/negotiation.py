"""Content negotiation: which codec reads the request body and which writes the answer.

`Accept` follows RFC 9110 section 12.5.1: each type a route offers takes the weight of the most
specific media range that matches it, and q=0 refuses a type even where a wildcard allows it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from fastapi import Request

from service.api.codecs.npy import NPY_MEDIA_TYPE, RAW_MEDIA_TYPE
from service.api.echo import quoted
from service.api.errors import ApiError

JSON = "application/json"
PNG = "image/png"
GIF = "image/gif"
NPY = NPY_MEDIA_TYPE
RAW = RAW_MEDIA_TYPE

# RFC 9110 token characters (5.6.2), for parameter names and unquoted values.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
# qvalue (RFC 9110 12.4.2): 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# Parameters a type we send always has: JSON is always UTF-8 (RFC 8259 section 8.1), so
# `Accept: application/json; charset=utf-8` asks for exactly what we send.
_IMPLIED_PARAMS = {JSON: {"charset": "utf-8"}}


class _Range(NamedTuple):
    """One media range of an Accept header (or one type a route offers)."""

    type: str  # lowercase; "*" for */*
    subtype: str  # lowercase; "*" for type/*
    params: dict[str, str]  # names and values lowercased, values unquoted; q not included
    q: float


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
    """The media type of a Content-Type header (parameters ignored; none means JSON) if this
    route reads it; 415 otherwise."""
    if raw is not None and raw in allowed:  # the common case: one of ours, no parameters
        return raw
    media = raw.split(";", 1)[0].strip().lower() if raw else JSON
    if media not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {_shown(raw)} is not accepted here; use one of: {', '.join(allowed)}",
            "Content-Type",
        )
    return media


def answer_type(header: str | None, offered: tuple[str, ...]) -> str:
    """The best of `offered` for an Accept header: highest quality > 0, ties to the earlier
    (`offered[0]` is also the answer without a header); 406 if none is acceptable."""
    if not header:
        return offered[0]
    if header in offered:  # the common case, e.g. `Accept: application/json`
        return header
    if header == "*/*":  # curl's, httpx's and requests' default: every type at q=1
        return offered[0]
    offers, matching = _offers(offered)
    ranges = _parse_accept(header, matching)
    if not ranges and not header.strip(" \t,"):  # only empty list elements: no preference
        return offered[0]
    best, best_q = None, 0.0
    for media, offer in zip(offered, offers, strict=True):
        q = _quality(offer, ranges)
        if q > best_q:  # strictly: on equal quality the server's order decides
            best, best_q = media, q
    if best is None:
        raise ApiError(
            406,
            "not_acceptable",
            f"cannot answer with {_shown(header)}; this route answers: {', '.join(offered)}",
            "Accept",
        )
    return best


def _quality(offer: _Range, ranges: list[_Range]) -> float:
    """The q of the most specific range matching `offer` (the first of equals); 0 if none does."""
    best_rank: tuple[int, int] | None = None
    q = 0.0
    for rng in ranges:
        rank = _rank(rng, offer)
        if rank is not None and (best_rank is None or rank > best_rank):
            best_rank, q = rank, rng.q
    return q


def _rank(rng: _Range, offer: _Range) -> tuple[int, int] | None:
    """How specifically `rng` matches `offer`, higher is more specific; None if it does not.

    */* < type/* < type/subtype, then more parameters before fewer; a range's parameters must
    all be the offered type's (`text/html;level=1` does not match plain `text/html`)."""
    if rng.type == "*":
        level = 0
    elif rng.type != offer.type:
        return None
    elif rng.subtype == "*":
        level = 1
    elif rng.subtype != offer.subtype:
        return None
    else:
        level = 2
    if rng.params and any(offer.params.get(k) != v for k, v in rng.params.items()):
        return None
    return level, len(rng.params)


@lru_cache(maxsize=32)
def _offers(offered: tuple[str, ...]) -> tuple[tuple[_Range, ...], frozenset[str]]:
    """A route's types parsed once (with their implied parameters), and every
    `type/subtype` an Accept range needs to match at least one of them."""
    offers = []
    for media in offered:
        name, _, rest = media.partition(";")
        type_, _, subtype = name.strip(" \t").lower().partition("/")
        parsed = _parse_params(rest)
        if not type_ or not subtype or parsed is None:  # a programming error, not a client's
            raise ValueError(f"not a media type: {media!r}")
        params = {**_IMPLIED_PARAMS.get(media, {}), **parsed[0]}
        offers.append(_Range(type_, subtype, params, 1.0))
    matching = {"*/*"}
    for offer in offers:
        matching.update((f"{offer.type}/*", f"{offer.type}/{offer.subtype}"))
    return tuple(offers), frozenset(matching)


def _parse_accept(header: str, matching: frozenset[str]) -> list[_Range]:
    """The well-formed media ranges of an Accept header that could match an offered type.

    Empty list elements are skipped (RFC 9110 5.6.1), and so is every range whose
    `type/subtype` is not in `matching` before its parameters are parsed: it cannot change
    the answer, and a huge header must not cost a full parse of every element. A range that
    does not parse, including one with a malformed q (`q=2`, `q=0.1234`, `q=abc`), is dropped
    too: it states neither a preference nor a refusal, so the other ranges decide."""
    ranges = []
    for element in _split(header, ","):
        name, _, rest = element.partition(";")  # a type/subtype has no quotes to respect
        name = name.strip(" \t").lower()
        if name not in matching:
            continue
        parsed = _parse_params(rest)
        if parsed is not None:
            type_, _, subtype = name.partition("/")
            ranges.append(_Range(type_, subtype, *parsed))
    return ranges


def _parse_params(text: str) -> tuple[dict[str, str], float] | None:
    """`*( ; name=value ) [ ; q=qvalue ]` after a media type: (parameters, q); None if malformed.

    Names and values are compared case-insensitively, values once unquoted."""
    params: dict[str, str] = {}
    if not text:  # nearly always: no parameters
        return params, 1.0
    for field in _split(text, ";"):
        field = field.strip(" \t")
        if not field:  # `image/png;` - an empty parameter is allowed
            continue
        name, equals, value = field.partition("=")
        name, value = name.rstrip(" \t").lower(), value.lstrip(" \t")
        if not equals:
            return None
        if name == "q":
            if not _QVALUE.fullmatch(value):
                return None
            # whatever follows the weight extends it; it is not a media type parameter
            return params, float(value)
        unquoted = _unquote(value)
        if unquoted is None or not _TOKEN.fullmatch(name):
            return None
        params[name] = unquoted.lower()
    return params, 1.0


def _unquote(value: str) -> str | None:
    """A parameter value: a token, or a quoted string with its backslash escapes undone."""
    if _TOKEN.fullmatch(value):
        return value
    quoted = _QUOTED.fullmatch(value)
    return None if quoted is None else _ESCAPE.sub(r"\1", quoted[1])


def _split(text: str, sep: str) -> list[str]:
    """`text.split(sep)`, except inside "quoted strings" (where a backslash escapes)."""
    if '"' not in text:  # nearly always: no quoted parameter values
        return text.split(sep)
    parts = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _shown(value: str | None) -> str:
    """A client's header value for an error message."""
    return "(none)" if value is None else quoted(value)
