"""Prometheus metrics for HTTP and inference; correct with several workers.

With several uvicorn workers the launcher sets `PROMETHEUS_MULTIPROC_DIR` before any worker
imports prometheus_client, so every worker writes its samples there and `/metrics` (served by
whichever worker) aggregates all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from service.config import MULTIPROC_ENV

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The service's metrics in their own registry (so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vae_http_requests",
            "HTTP requests answered.",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "vae_http_request_duration_seconds",
            "HTTP request latency from first byte in to last byte out.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "vae_http_errors",
            "Error answers by route and error code.",
            ("route", "code"),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "vae_inference_duration_seconds",
            "ONNX Runtime run time per call.",
            ("graph",),
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "vae_inference_batch_rows",
            "Rows per ONNX Runtime call.",
            ("graph",),
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "vae_inference_batch_requests",
            "Requests merged into one ONNX Runtime call.",
            ("graph",),
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "vae_inference_queue_seconds",
            "Time a request waited before its ONNX Runtime call started.",
            ("graph",),
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )

        # `.labels()` costs a lock, a tuple and a dict lookup on every call: children are
        # looked up once per label set and kept (label values are few: see RequestObserver).
        self._graph_children: dict[str, tuple[Histogram, Histogram, Histogram, Histogram]] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _graph(self, graph: str) -> tuple[Histogram, Histogram, Histogram, Histogram]:
        children = self._graph_children.get(graph)
        if children is None:
            children = self._graph_children[graph] = (
                self.inference_seconds.labels(graph),
                self.batch_rows.labels(graph),
                self.batch_requests.labels(graph),
                self.queue_seconds.labels(graph),
            )
        return children

    # InferenceObserver protocol (called by the runtime, possibly from executor threads).
    def inference(self, graph: str, batch_rows: int, requests: int, seconds: float) -> None:
        run, rows, merged, _ = self._graph(graph)
        run.observe(seconds)
        rows.observe(batch_rows)
        merged.observe(requests)

    def queued(self, graph: str, seconds: float) -> None:
        self._graph(graph)[3].observe(seconds)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            code = str(status)
            children = self._request_children[key] = (
                self.requests.labels(route, method, code),
                self.latency.labels(route, method, code),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_error(self, route: str, code: str) -> None:
        self.errors.labels(route, code).inc()

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
