"""The compute ceiling: raw ONNX Runtime rows/s in-process, no HTTP, no serialisation.

Run as a module so the parent can pin it (`taskset -c 1`) or start one per core and add up:
`python -m benchmarks.compute_ceiling --model-dir models/mnist-vae --batches 1 64 --seconds 2`
prints one JSON object. Sessions use the service's per-worker settings: intra-op and
inter-op threads 1, sequential execution, all graph optimisations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

GRAPHS = {"encoder": ("encoder.onnx", "images"), "decoder": ("decoder.onnx", "z")}


def session(path: Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rows_per_second(sess: ort.InferenceSession, feed: dict, rows: int, seconds: float) -> dict:
    """Run the same feed in a loop for about `seconds` (after a short warm-up)."""
    for _ in range(20):
        sess.run(None, feed)
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        # Check the clock every few calls so timing overhead stays out of tiny batches.
        for _ in range(10):
            sess.run(None, feed)
        calls += 10
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return {
        "calls": calls,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "rows_per_s": calls * rows / elapsed,
        "us_per_call": elapsed / calls * 1e6,
    }


def measure(
    model_dir: Path,
    batches: list[int],
    seconds: float,
    intra_op_threads: int,
    graphs: list[str] | None = None,
) -> dict:
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, dict]] = {}
    for graph in graphs or list(GRAPHS):
        file, input_name = GRAPHS[graph]
        sess = session(model_dir / file, intra_op_threads)
        width = sess.get_inputs()[0].shape[1]
        results[graph] = {}
        for batch in batches:
            x = rng.random((batch, width), dtype=np.float32)
            if graph == "decoder":
                x = rng.standard_normal((batch, width)).astype(np.float32)
            results[graph][str(batch)] = rows_per_second(sess, {input_name: x}, batch, seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="per graph and batch size")
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--graphs", nargs="+", choices=list(GRAPHS), default=list(GRAPHS))
    args = parser.parse_args()
    results = measure(
        args.model_dir, args.batches, args.seconds, args.intra_op_threads, args.graphs
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
