"""Plain option objects for the runtime; the API layer fills them from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

GraphOptimization = Literal["disable", "basic", "extended", "all"]


@dataclass(frozen=True)
class SessionOptions:
    """How ONNX Runtime sessions are created.

    ``providers``: ``("auto",)`` picks CUDA when this onnxruntime build offers it, else CPU;
    otherwise an ordered list of provider names (short aliases like ``"cuda"`` and ``"cpu"``
    are accepted). Thread counts of 0 let ONNX Runtime choose.
    """

    providers: tuple[str, ...] = ("auto",)
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: GraphOptimization = "all"
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.providers, str):
            raise ValueError("providers must be a sequence of names, not one string")
        if not self.providers:
            raise ValueError("providers must name at least one execution provider")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 = ONNX Runtime default)")
        if self.graph_optimization not in get_args(GraphOptimization):
            raise ValueError(f"unknown graph_optimization {self.graph_optimization!r}")


@dataclass(frozen=True)
class BatchingOptions:
    """Dynamic micro-batching of concurrent requests into one ONNX Runtime call per graph.

    ``max_wait_ms`` = 0 never waits on a timer: a batch takes what is queued when the previous
    run ends, plus requests the event loop has already read (one loop turn), so a lone request
    waits for nothing but that turn.

    ``max_batch_size``: bigger calls amortise per-call costs over more rows.

    ``inline_max_rows``: micro-batched calls of at most this many rows run on the event loop
    itself instead of hopping to an executor thread. For a tiny model the hop costs more than
    it frees, and with one core per worker it buys no parallelism either. 0 sends every call
    to the executor. Unbatched calls (``enabled=False``) always take the executor.

    ``max_queued_rows``: most rows waiting for one graph's next call; a request that would
    take the queue past it is refused (`Overloaded`) before anything is computed, unless the
    queue is empty. It bounds the memory and the wait of queued work under overload. 0: no
    bound.
    """

    enabled: bool = True
    max_batch_size: int = 1024
    max_wait_ms: float = 0.0
    inline_max_rows: int = 1024
    max_queued_rows: int = 16384

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if not self.max_wait_ms >= 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.inline_max_rows < 0:
            raise ValueError("inline_max_rows must be >= 0")
        if self.max_queued_rows < 0:
            raise ValueError("max_queued_rows must be >= 0 (0 = no bound)")


# Module-level defaults so signatures can show them without a call in the default (B008).
DEFAULT_SESSION_OPTIONS = SessionOptions()
DEFAULT_BATCHING_OPTIONS = BatchingOptions()
