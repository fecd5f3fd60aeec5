"""The harness's overload scenarios (issue 14): wrk's status counts, the probe's percentiles,
the figures and target checks computed from a saved run, and their table."""

from __future__ import annotations

import pytest

from benchmarks.probe import percentile, summary_ms
from benchmarks.report import markdown, overload_checks, overload_figures
from benchmarks.scenarios import OVERLOADS, by_name, overload_by_name
from benchmarks.wrk import parse_done_line

DONE_LINE = (
    'BENCH_RESULT {"requests":1000,"duration_us":10000000,"bytes":1,"latency_mean_us":1.0,'
    '"latency_max_us":1.0,"p50_us":1.0,"p90_us":1.0,"p99_us":1.0,"connect_errors":0,'
    '"read_errors":0,"write_errors":0,"timeout_errors":2,"status_errors":900,'
    '"statuses":{"200":100,"503":900},"retry_after":890}'
)


def test_the_done_line_carries_answers_per_status_and_timeouts():
    result = parse_done_line(DONE_LINE)
    assert result is not None
    assert result.statuses == {"200": 100, "503": 900}
    assert result.retry_after == 890
    assert result.timeouts == 2
    assert result.socket_errors == 2


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) is None
    assert summary_ms([0.001, 0.002]) == {"count": 2, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 2.0}


def test_every_overload_floods_a_known_scenario():
    for overload in OVERLOADS:
        assert by_name(overload.scenario).path == "/encode"
        assert overload_by_name(overload.name) is overload
    with pytest.raises(KeyError, match="overload-2"):
        overload_by_name("overload-2")


def entry(**changes) -> dict:
    wrk = parse_done_line(DONE_LINE)
    assert wrk is not None
    base = {
        "variant": "ours",
        "overload": "overload-1",
        "scenario": "encode-1",
        "connections": 2000,
        "reference_concurrency": 64,
        "reference": {"req_per_s": 40.0},
        "result": wrk.to_dict(),
        "probe": {
            "healthz": {"count": 100, "p50_ms": 20.0, "p99_ms": 120.0, "max_ms": 130.0},
            "healthz_failures": 0,
            "sample": {
                "statuses": {"200": 10, "503": 90, "500": 1},
                "admitted": {"count": 10, "p50_ms": 300.0, "p99_ms": 800.0, "max_ms": 800.0},
                "retry_after_503s": 90,
                "errors": 1,
                "error_kinds": {"TimeoutError": 1},
            },
        },
        "rss_mb": {"idle": 100.0, "during": 300.0, "after": 120.0},
        "error": None,
    }
    return base | changes


def test_figures_count_wrk_and_the_sample_clients_together():
    f = overload_figures(entry())
    assert f is not None
    assert f["answers_per_s"] == pytest.approx(110.1)  # (1000 + 101) answers in 10 s
    assert f["goodput"] == pytest.approx(11.0)  # 110 200s in 10 s
    assert f["goodput_ratio"] == pytest.approx(11.0 / 40.0)
    assert f["share_503"] == pytest.approx(990 / 1101)
    assert f["retry_after_share"] == pytest.approx(980 / 990)
    # one 500 answer, wrk's two timeouts (socket errors), one sample client error
    assert f["other_errors"] == 4
    assert f["timeouts"] == 3  # wrk's two, the sample client's one
    assert f["rss_after_ratio"] == pytest.approx(1.2)


def test_checks_hold_each_run_to_issue_14s_targets():
    checks = {c.label: c for c in overload_checks({"overloads": [entry()]})}
    assert checks["overload-1 c2000 timeouts"].passed is False
    assert checks["overload-1 c2000 errors"].passed is False
    assert checks["overload-1 c2000 goodput"].passed is False  # 27% < 50%
    assert checks["overload-1 c2000 admitted p99"].passed is True  # 800 < 1000 ms
    assert checks["overload-1 c2000 /healthz p99"].passed is True  # 120 < 250 ms
    assert checks["overload-1 c2000 RSS after the load"].passed is True  # 1.2 <= 1.5
    assert "(target < 250 ms) PASS" in checks["overload-1 c2000 /healthz p99"].line()


def test_a_failed_run_is_a_row_and_checks_without_values():
    failed = entry(result=None, error="wrk exited 1")
    assert overload_figures(failed) is None
    assert {c.passed for c in overload_checks({"overloads": [failed]})} == {None}


def test_a_run_of_only_overloads_renders_only_the_overload_section():
    report = {
        "mode": "pinned",
        "machine": {
            "date": "today",
            "git_commit": "abc",
            "cores": 2,
            "cpu_model": "cpu",
            "kernel": "k",
            "load_average": [0, 0, 0],
            "wrk": "wrk",
            "versions": {"python": "3.11"},
        },
        "settings": {
            "placement": "pinned",
            "duration_s": 10,
            "warmup_s": 2,
            "wrk_threads": 1,
            "model_dir": "m",
            "latent_dim": 30,
            "command": "python -m benchmarks",
            "concurrency": [64],
        },
        "runs": [],
        "overloads": [entry(), entry(overload="overload-64", result=None, error="boom")],
    }
    text = markdown(report)
    assert "## Overload (issue 14)" in text
    assert "## Ceilings" not in text
    assert "| overload-1 (encode-1) | 2000 | 110 | 11.0 | 28% of 40.0 |" in text
    assert "failed: boom" in text
    assert "overload-1 c2000 goodput: 28% of unloaded req/s (c64) (target >= 50%) FAIL" in text
