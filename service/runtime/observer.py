"""Hooks the runtime calls around inference; the API layer implements them with metrics."""

from __future__ import annotations

from typing import Literal, Protocol

Graph = Literal["encoder", "decoder"]


class InferenceObserver(Protocol):
    def inference(self, graph: Graph, batch_rows: int, requests: int, seconds: float) -> None:
        """One ONNX Runtime call: real rows (padding excluded), requests merged, run time."""

    def queued(self, graph: str, seconds: float) -> None:
        """One request's wait between submission and the start of its ONNX Runtime call."""


class _NullObserver:
    def inference(self, graph: Graph, batch_rows: int, requests: int, seconds: float) -> None:
        pass

    def queued(self, graph: str, seconds: float) -> None:
        pass


NULL_OBSERVER: InferenceObserver = _NullObserver()
