"""The request scenarios every server variant is driven with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TypeVar

Graph = Literal["encoder", "decoder"]
Encoding = Literal["json", "npy", "oip"]

NPY_CONTENT_TYPE = "application/x-npy"
OCTET_STREAM = "application/octet-stream"
OIP_HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Scenario:
    """One route with one request body; `rows` is the model rows a single request computes."""

    name: str
    path: str
    body: str  # key of the body file made by `benchmarks.bodies`
    rows: int
    graph: Graph
    encoding: Encoding = "json"
    # The naive app only speaks JSON: binary scenarios compare against its JSON twin.
    baseline: str | None = None

    @property
    def content_type(self) -> str:
        return {"npy": NPY_CONTENT_TYPE, "oip": OCTET_STREAM}.get(self.encoding, "application/json")

    @property
    def accept(self) -> str:
        return {"npy": NPY_CONTENT_TYPE, "oip": OCTET_STREAM}.get(self.encoding, "application/json")

    def path_for(self, model_name: str) -> str:
        """The path on a server of the model `model_name` (OIP paths name the model)."""
        return self.path.format(model=model_name)

    def headers_for(self, body: bytes) -> tuple[tuple[str, str], ...]:
        """Headers beyond Content-Type and Accept: an OIP binary body's JSON header length."""
        if self.encoding != "oip":
            return ()
        return ((OIP_HEADER_LENGTH, str(oip_header_length(body))),)

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.name


def oip_header_length(body: bytes) -> int:
    """Where the JSON header of an OIP binary body ends (the binary tensors follow it)."""
    _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    return end


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("encode-1", "/encode", "encode-1.json", 1, "encoder"),
    Scenario("encode-64", "/encode", "encode-64.json", 64, "encoder"),
    Scenario("encode-64-npy", "/encode?seed=7", "encode-64.npy", 64, "encoder", "npy", "encode-64"),
    # Issue 11: the same 64 images as Open Inference Protocol binary tensors.
    Scenario(
        "encode-64-oip",
        "/v2/models/{model}-encoder/infer",
        "encode-64.oip",
        64,
        "encoder",
        "oip",
        "encode-64",
    ),
    Scenario("decode-1", "/decode", "decode-1.json", 1, "decoder"),
    Scenario("decode-64", "/decode", "decode-64.json", 64, "decoder"),
    Scenario("decode-64-npy", "/decode", "decode-64.npy", 64, "decoder", "npy", "decode-64"),
    Scenario("sample-16", "/sample", "sample-16.json", 16, "decoder"),
    Scenario("interpolate-10", "/interpolate", "interpolate-10.json", 10, "decoder"),
)


@dataclass(frozen=True)
class Pairing:
    """A ratio target measured side by side: its reference and the scenario run alternately,
    so drift on a shared machine hits both sides of each pair alike.

    `reference`: "http" is the HTTP ceiling at the same concurrency; "compute" is the compute
    ceiling at the scenario's batch size (measured while the server idles).
    """

    scenario: str
    concurrency: int
    reference: Literal["http", "compute"]


# Issue 5's two targets that are ratios to a ceiling.
PAIRINGS: tuple[Pairing, ...] = (
    Pairing("encode-1", 64, "http"),
    Pairing("encode-64-npy", 16, "compute"),
)

# GET with the same server stack and middleware but no parsing and no model: the HTTP ceiling.
HTTP_CEILING_PATH = "/healthz"

DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 16, 64)


@dataclass(frozen=True)
class Overload:
    """Issue 14's overload run: wrk floods one scenario's request over `connections`
    connections (far past the worker's admission bounds) while a probe measures `/healthz`
    and a few clients' admitted latencies. `reference_concurrency`: the unloaded run whose
    req/s the goodput (200s per second under the flood) is compared with."""

    name: str
    scenario: str
    reference_concurrency: int


OVERLOADS: tuple[Overload, ...] = (
    Overload("overload-1", "encode-1", 64),
    Overload("overload-64", "encode-64", 16),
)
OVERLOAD_CONNECTIONS = 2000


_Named = TypeVar("_Named", Scenario, Overload)


def _named(items: tuple[_Named, ...], name: str, what: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(item.name for item in items)
    raise KeyError(f"unknown {what} {name!r}; known: {known}")


def by_name(name: str) -> Scenario:
    return _named(SCENARIOS, name, "scenario")


def overload_by_name(name: str) -> Overload:
    return _named(OVERLOADS, name, "overload scenario")


def compute_batches(scenarios: tuple[Scenario, ...] | list[Scenario]) -> list[int]:
    """Batch sizes the compute ceiling must cover: 1 and 64 always, plus each scenario's rows."""
    return sorted({1, 64, *(s.rows for s in scenarios)})
