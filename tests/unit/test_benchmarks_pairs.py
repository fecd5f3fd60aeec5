"""The harness's side-by-side ratio targets: how `alternate` pairs, counts and fails runs.

The wrk runs and the compute ceiling are replaced by scripted numbers: what is under test is
the pairing logic, not the load generator.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import cli
from benchmarks.memory import MemoryPeak
from benchmarks.scenarios import Pairing, by_name


def wrk(req_per_s: float, errors: int = 0) -> dict:
    return {"req_per_s": req_per_s, "non_2xx": errors, "socket_errors": 0}


class FakeServer:
    base_url = "http://127.0.0.1:9"
    pid = 1
    spec = SimpleNamespace(variant="ours", env={"VAE_MODEL_DIR": "models/mnist-vae"})

    def check_alive(self) -> None:
        pass


def run_alternate(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pairing: Pairing,
    runs: Iterable[dict],
    ceilings: Iterable[float] = (),
    probe_status: int = 200,
) -> dict:
    runs, ceilings = iter(runs), iter(ceilings)
    monkeypatch.setattr(cli, "probe", lambda *args: (probe_status, "boom"))
    monkeypatch.setattr(cli, "wait_until_idle", lambda pid: None)
    monkeypatch.setattr(cli, "measure", lambda *args: next(runs))

    def compute_ceiling(args, mode, batches, graphs):
        return {"rows_per_s": {graphs[0]: {str(batches[0]): next(ceilings)}}}

    monkeypatch.setattr(cli, "compute_ceiling", compute_ceiling)
    body = tmp_path / "body"
    body.write_bytes(b"{}")
    files = {by_name(pairing.scenario).body: body}
    args = SimpleNamespace(pairs=3, pinned=True)
    return cli.alternate(args, "wrk", FakeServer(), files, tmp_path, MemoryPeak(), pairing)


def test_http_pairs_alternate_ceiling_and_scenario_and_take_the_median(monkeypatch, tmp_path):
    runs = [wrk(10_000), wrk(6_000), wrk(10_000), wrk(7_000), wrk(8_000), wrk(4_000)]
    out = run_alternate(monkeypatch, tmp_path, Pairing("encode-1", 64, "http"), runs)
    assert [p["ratio"] for p in out["pairs"]] == [0.6, 0.7, 0.5]
    assert out["median_ratio"] == 0.6
    assert out["failed"] == []


def test_compute_pairs_compare_rows_per_second(monkeypatch, tmp_path):
    out = run_alternate(
        monkeypatch,
        tmp_path,
        Pairing("encode-64-npy", 16, "compute"),
        [wrk(1_000)] * 3,  # 64 rows per request: 64,000 rows/s
        ceilings=[200_000, 320_000, 256_000],
    )
    assert [p["value"] for p in out["pairs"]] == [64_000] * 3
    assert out["median_ratio"] == pytest.approx(0.25)


def test_a_pair_with_error_answers_is_failed_not_counted(monkeypatch, tmp_path):
    runs = [wrk(10_000), wrk(9_000, errors=5), wrk(10_000), wrk(7_000), wrk(10_000), wrk(6_500)]
    out = run_alternate(monkeypatch, tmp_path, Pairing("encode-1", 64, "http"), runs)
    assert [p["ratio"] for p in out["pairs"]] == [0.7, 0.65]
    assert out["failed"] == ["pair 1: 5 error answers or socket errors"]
    assert out["median_ratio"] == pytest.approx(0.675)


def test_a_failing_probe_runs_no_pairs(monkeypatch, tmp_path):
    # No scripted runs: any measurement would raise StopIteration.
    pairing = Pairing("encode-1", 64, "http")
    out = run_alternate(monkeypatch, tmp_path, pairing, [], probe_status=500)
    assert out["pairs"] == []
    assert out["median_ratio"] is None
    assert out["failed"] == ["probe answered 500: boom"]
