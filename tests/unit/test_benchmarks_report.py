"""The benchmark harness's pure parts: wrk output parsing, ratios, target checks, tables."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from benchmarks.memory import MemoryPeak
from benchmarks.report import Check, markdown, ratio, table_rows, target_checks
from benchmarks.scenarios import SCENARIOS, by_name, compute_batches
from benchmarks.wrk import (
    Load,
    WrkError,
    duration_ms,
    parse_done_line,
    parse_latency_text,
    parse_wrk_output,
    wrk_command,
)

# wrk pads second-valued percentiles with a trailing space ("~" here, restored below).
WRK_TEXT = """\
Running 3s test @ http://127.0.0.1:60947/encode
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   810.24ms  283.91ms   1.74s    87.04%
    Req/Sec    20.52      8.54    40.00     72.00%
  Latency Distribution
     50%  756.02ms
     75%  791.61ms
     90%    1.26s~
     99%    1.74s~
  54 requests in 3.01s, 5.83MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:     17.93
Transfer/sec:      1.93MB
""".replace("~", " ")

DONE_LINE = (
    'BENCH_RESULT {"requests":54,"duration_us":3000000,"bytes":6109128,'
    '"latency_mean_us":810240.6,"latency_max_us":1744262.0,"p50_us":756019.0,'
    '"p90_us":1258871.0,"p99_us":1744262.0,"connect_errors":1,"read_errors":2,'
    '"write_errors":0,"timeout_errors":4,"status_errors":5}'
)


def test_done_line_is_parsed_into_milliseconds_and_error_counts():
    result = parse_done_line(WRK_TEXT + DONE_LINE + "\n")
    assert result is not None
    assert result.requests == 54
    assert result.req_per_s == pytest.approx(18.0)
    assert result.p50_ms == pytest.approx(756.019)
    assert result.p99_ms == pytest.approx(1744.262)
    assert result.non_2xx == 5
    assert result.socket_errors == 7
    assert result.errors == 12


def test_done_line_absent_gives_none():
    assert parse_done_line(WRK_TEXT) is None


def test_latency_text_fallback_reads_percentiles_and_errors():
    result = parse_latency_text(WRK_TEXT)
    assert result.requests == 54
    assert result.duration_s == pytest.approx(3.01)
    assert result.p50_ms == pytest.approx(756.02)
    assert result.p90_ms == pytest.approx(1260.0)
    assert result.p99_ms == pytest.approx(1740.0)
    assert result.max_ms == pytest.approx(1740.0)
    assert result.socket_errors == 6
    assert result.non_2xx == 7
    assert result.bytes_read == int(5.83 * 2**20)


def test_parse_output_prefers_the_done_line():
    assert parse_wrk_output(WRK_TEXT + DONE_LINE).non_2xx == 5
    assert parse_wrk_output(WRK_TEXT).non_2xx == 7


def test_output_without_summary_is_an_error():
    with pytest.raises(WrkError, match="requests in"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("1.53ms", 1.53), ("2.01s", 2010.0), ("1.00m", 60000.0)],
)
def test_wrk_durations(text, ms):
    assert duration_ms(text) == pytest.approx(ms)


def test_wrk_command_pins_and_never_uses_more_threads_than_connections():
    cmd = wrk_command("wrk", Load(url="http://h/x"), connections=1, threads=2, duration_s=3, cpu=0)
    assert cmd[:3] == ["taskset", "-c", "0"]
    assert "--threads=1" in cmd
    assert "--connections=1" in cmd
    assert "--duration=3s" in cmd
    assert cmd[-1] == "http://h/x"
    assert wrk_command("wrk", Load(url="u"), 16, 2, 10)[0] == "wrk"


def result(req_per_s: float, p99_ms: float) -> dict:
    return {
        "requests": int(req_per_s * 10),
        "duration_s": 10.0,
        "req_per_s": req_per_s,
        "p50_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "non_2xx": 0,
        "socket_errors": 0,
    }


def run(variant: str, scenario: str, c: int, req_per_s: float, p99_ms: float) -> dict:
    rows = by_name(scenario).rows
    return {
        "variant": variant,
        "scenario": scenario,
        "concurrency": c,
        "rows": rows,
        "result": result(req_per_s, p99_ms),
        "error": None,
    }


@pytest.fixture
def report() -> dict:
    return {
        "mode": "pinned",
        "machine": {
            "date": "2024-01-01T00:00:00+00:00",
            "git_commit": "abc",
            "cores": 2,
            "cpu_model": "cpu",
            "kernel": "k",
            "load_average": [0.0],
            "wrk": "wrk 4.1.0",
            "versions": {"python": "3.11"},
        },
        "settings": {
            "placement": "pinned",
            "duration_s": 10.0,
            "warmup_s": 2.0,
            "wrk_threads": 1,
            "concurrency": [16, 64],
            "model_dir": "m",
            "latent_dim": 30,
            "command": "python -m benchmarks",
        },
        "http_ceiling": {"64": result(5000.0, 20.0), "16": result(4000.0, 5.0)},
        "compute_ceiling": {
            "description": "test",
            "rows_per_s": {"encoder": {"1": 100_000.0, "64": 1_000_000.0}},
        },
        "runs": [
            run("naive", "encode-1", 64, 1000.0, 100.0),
            run("ours", "encode-1", 64, 3400.0, 50.0),
            run("naive", "encode-64", 16, 10.0, 2000.0),
            run("ours", "encode-64", 16, 30.0, 900.0),
            run("ours", "encode-64-npy", 16, 5000.0, 10.0),
            run("naive", "decode-1", 64, 800.0, 100.0),
            {
                "variant": "ours",
                "scenario": "decode-1",
                "concurrency": 64,
                "rows": 1,
                "result": None,
                "error": "probe answered 404: not found",
            },
        ],
        "memory": {"ours": {"max_process_mb": 180.0, "tree_total_mb": 180.0}},
        "servers": {"ours": {"command": "python -m service", "workers": 1}},
    }


def test_ratio_handles_missing_and_zero_references():
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_rows_carry_ratios_to_baseline_and_ceilings(report):
    rows = {(r.variant, r.scenario.name, r.concurrency): r for r in table_rows(report)}
    ours = rows["ours", "encode-1", 64]
    assert ours.vs_naive == pytest.approx(3.4)
    assert ours.p99_vs_naive == pytest.approx(0.5)
    assert ours.vs_http_ceiling == pytest.approx(3400 / 5000)
    assert ours.vs_compute_ceiling == pytest.approx(3400 / 100_000)
    assert rows["naive", "encode-1", 64].vs_naive == pytest.approx(1.0)


def test_binary_scenario_is_compared_with_the_baselines_json_twin(report):
    rows = {(r.variant, r.scenario.name, r.concurrency): r for r in table_rows(report)}
    npy = rows["ours", "encode-64-npy", 16]
    assert npy.vs_naive == pytest.approx(500.0)
    assert npy.rows_per_s == pytest.approx(5000 * 64)
    assert npy.vs_compute_ceiling == pytest.approx(0.32)


def test_rows_are_ordered_by_scenario_then_concurrency_then_variant(report):
    names = [(r.scenario.name, r.variant) for r in table_rows(report)]
    assert names[:2] == [("encode-1", "ours"), ("encode-1", "naive")]


def test_target_checks_pass_fail_and_skip(report):
    lines = [check.line() for check in target_checks(report)]
    assert lines == [
        "/encode 1 img c64 req/s: 3.40x baseline (target >= 3x) PASS",
        "/encode 1 img c64 req/s: 68% of HTTP ceiling (target >= 60%) PASS",
        "/encode 1 img c64 p99: 0.50x baseline p99 (target <= 1x) PASS",
        "/encode 64 img npy c16 rows/s: 32% of compute ceiling batch 64 (target >= 30%) PASS",
        "/encode 64 img JSON c16 req/s: 3.00x baseline (target >= 4x) FAIL",
        "/decode 1 latent c64 req/s: n/a vs baseline SKIP (not measured)",
        "OIP v2 infer 64 img binary c16 rows/s: n/a vs /encode npy c16 in the same run SKIP "
        "(not measured)",
        "RSS per worker under load: 180 MB max (target < 300 MB) PASS",
    ]


def pairs(
    scenario: str,
    c: int,
    reference: str,
    values: list[tuple[float, float]],
    failed: tuple[str, ...] = (),
) -> dict:
    return {
        "failed": list(failed),
        "variant": "ours",
        "scenario": scenario,
        "concurrency": c,
        "reference": reference,
        "pairs": [{"reference": r, "value": v, "ratio": v / r} for r, v in values],
        "median_ratio": statistics.median(v / r for r, v in values) if values else None,
    }


def test_ratio_targets_use_the_median_of_alternated_pairs(report):
    # Single runs give 68% and 32%; the pairs' medians (55% and 29%) must win.
    report["paired"] = [
        pairs("encode-1", 64, "http", [(5000, 2750), (6000, 3000), (4000, 2400)]),
        pairs("encode-64-npy", 16, "compute", [(1e6, 290_000), (1e6, 280_000), (1e6, 300_000)]),
    ]
    lines = [check.line() for check in target_checks(report)]
    assert lines[1] == (
        "/encode 1 img c64 req/s: 55% of HTTP ceiling, median of 3 alternated pairs "
        "(target >= 60%) FAIL"
    )
    assert lines[3] == (
        "/encode 64 img npy c16 rows/s: 29% of compute ceiling batch 64, median of 3 "
        "alternated pairs (target >= 30%) FAIL"
    )
    text = markdown(report)
    assert "| encode-1 | 64 | ours | HTTP ceiling req/s | 55%, 50%, 60% | 55% |" in text
    assert "| encode-64-npy c16 | 2 | rows/s | 1,000,000 | 280,000 |" in text


def test_without_pairs_the_single_run_ratio_is_checked(report):
    report["paired"] = [pairs("encode-1", 64, "http", [])]
    line = target_checks(report)[1].line()
    assert line == "/encode 1 img c64 req/s: 68% of HTTP ceiling (target >= 60%) PASS"
    assert "side by side" not in markdown(report)


def test_failed_pairs_are_named_in_the_check_and_the_table(report):
    report["paired"] = [
        pairs("encode-1", 64, "http", [(5000, 3100)], failed=("pair 2: 7 error answers",)),
        pairs("encode-64-npy", 16, "compute", [], failed=("probe answered 500: boom",)),
    ]
    lines = [check.line() for check in target_checks(report)]
    assert lines[1] == (
        "/encode 1 img c64 req/s: 62% of HTTP ceiling, median of 1 alternated pairs "
        "(1 failed) (target >= 60%) PASS"
    )
    # every pair failed: the single run decides, and the table says why
    assert lines[3].startswith("/encode 64 img npy c16 rows/s: 32% of compute ceiling batch 64 ")
    text = markdown(report)
    assert "| 62% | 62% | pair 2: 7 error answers |" in text
    assert (
        "| encode-64-npy | 16 | ours | compute ceiling rows/s | — | — | probe answered 500" in text
    )


def test_memory_check_fails_at_the_limit():
    assert Check("rss", 300.0, 300.0, "MB", "max").passed is False
    assert Check("rss", 299.0, 300.0, "MB", "max").passed is True


def test_markdown_has_every_run_and_the_checks(report):
    text = markdown(report)
    ours = "| encode-1 | 64 | ours | 3,400 | 3,400 | 25.00 | 50.00 | 0 | 3.40x | 0.50x | 68% |"
    assert ours in text
    assert "| decode-1 | 64 | ours | failed: probe answered 404: not found |" in text
    assert "| 64 | 5,000 | 10.00 | 20.00 | 0 |" in text
    assert "| encoder | 100,000 | 1,000,000 |" in text
    assert "FAIL" in text


def test_memory_peak_keeps_the_largest_sample_per_process_and_for_the_tree():
    peak = MemoryPeak()
    peak.add({1: 100 * 2**20, 2: 50 * 2**20})
    other = MemoryPeak()
    other.add({1: 80 * 2**20, 2: 120 * 2**20})
    peak.merge(other)
    assert peak.max_process == 120 * 2**20
    assert peak.to_dict()["tree_total_mb"] == 200.0
    assert peak.samples == 2


def test_compute_batches_cover_every_scenario():
    assert compute_batches(SCENARIOS) == [1, 10, 16, 64]


def test_every_scenario_body_is_generated(tmp_path: Path):
    from benchmarks.bodies import build_bodies
    from tests.fixtures.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", latent_dim=3)
    built = build_bodies(model_dir, latent_dim=3)
    assert {s.body for s in SCENARIOS} <= set(built)
    assert built == build_bodies(model_dir, latent_dim=3)  # fixed seed: same bytes every run


def test_the_oip_body_is_a_valid_binary_request_with_its_header_length():
    import numpy as np

    from benchmarks.bodies import oip_binary_bytes
    from benchmarks.scenarios import by_name
    from service.api.oip.codec import parse_infer_request

    images = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    body = oip_binary_bytes("images", images, ("mu", "sigma"))
    scenario = by_name("encode-64-oip")
    ((name, length),) = scenario.headers_for(body)
    assert name == "Inference-Header-Content-Length"
    request = parse_infer_request(body, length)
    np.testing.assert_array_equal(request.inputs["images"], images)
    assert [o.binary for o in request.outputs or ()] == [True, True]
    assert scenario.path_for("m") == "/v2/models/m-encoder/infer"
