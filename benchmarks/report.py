"""Ratios, target checks and markdown tables from a run's raw numbers (pure functions).

Works on the JSON-able report dict the CLI writes to `results-<mode>.json`, so tables can be
re-rendered from saved numbers (`python -m benchmarks --from-json FILE`).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.scenarios import SCENARIOS, Scenario, by_name
from benchmarks.servers import NAIVE, OURS, OURS_NO_BATCHING, VARIANTS

RSS_LIMIT_MB = 300.0
# Issue 14's overload targets.
GOODPUT_MIN = 0.5  # of the unloaded req/s
ADMITTED_P99_MAX_MS = 1000.0
HEALTHZ_P99_MAX_MS = 250.0
RSS_AFTER_MAX = 1.5  # x the idle RSS


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def find_run(report: dict, variant: str, scenario: str, concurrency: int) -> dict | None:
    """The wrk result of one run, or None when it was not run or failed."""
    for run in report.get("runs", []):
        key = (run["variant"], run["scenario"], run["concurrency"])
        if key == (variant, scenario, concurrency):
            return run.get("result")
    return None


def rows_per_s(result: dict | None, rows: int) -> float | None:
    return None if result is None else result["req_per_s"] * rows


def http_ceiling(report: dict, concurrency: int) -> dict | None:
    return report.get("http_ceiling", {}).get(str(concurrency))


def compute_ceiling(report: dict, graph: str, batch: int) -> float | None:
    return report.get("compute_ceiling", {}).get("rows_per_s", {}).get(graph, {}).get(str(batch))


def paired(report: dict, variant: str, scenario: str, concurrency: int) -> dict | None:
    """The alternated pairs of a ratio target (see `benchmarks.scenarios.PAIRINGS`), or None."""
    for entry in report.get("paired", []):
        key = (entry["variant"], entry["scenario"], entry["concurrency"])
        if key == (variant, scenario, concurrency) and entry.get("median_ratio") is not None:
            return entry
    return None


@dataclass(frozen=True)
class Row:
    """One table line: a variant on a scenario at a concurrency, with its ratios."""

    scenario: Scenario
    variant: str
    concurrency: int
    result: dict | None
    error: str | None
    vs_naive: float | None
    p99_vs_naive: float | None
    vs_http_ceiling: float | None
    vs_compute_ceiling: float | None

    @property
    def rows_per_s(self) -> float | None:
        return rows_per_s(self.result, self.scenario.rows)


def table_rows(report: dict) -> list[Row]:
    rows = []
    for run in report.get("runs", []):
        scenario = by_name(run["scenario"])
        c, result = run["concurrency"], run.get("result")
        naive = find_run(report, NAIVE, scenario.baseline_name, c)
        ceiling = http_ceiling(report, c)
        rows.append(
            Row(
                scenario=scenario,
                variant=run["variant"],
                concurrency=c,
                result=result,
                error=run.get("error"),
                vs_naive=ratio(result and result["req_per_s"], naive and naive["req_per_s"]),
                p99_vs_naive=ratio(result and result["p99_ms"], naive and naive["p99_ms"]),
                vs_http_ceiling=ratio(
                    result and result["req_per_s"], ceiling and ceiling["req_per_s"]
                ),
                vs_compute_ceiling=ratio(
                    rows_per_s(result, scenario.rows),
                    compute_ceiling(report, scenario.graph, scenario.rows),
                ),
            )
        )
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    variant_order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(
        key=lambda r: (order[r.scenario.name], r.concurrency, variant_order.get(r.variant, 99))
    )
    return rows


@dataclass(frozen=True)
class Check:
    """One of issue 5's targets; `passed` is None when the run lacks the numbers."""

    label: str
    value: float | None
    target: float
    # "x" (ratio, at least), "%" (fraction, at least), "<=" (ratio, at most), "MB" and "ms"
    # (below), "n" (a count, at most)
    kind: str
    reference: str

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        if self.kind in ("MB", "ms"):
            return self.value < self.target
        if self.kind in ("<=", "n"):
            return self.value <= self.target
        return self.value >= self.target

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP (not measured)"}[self.passed]
        if self.value is None:
            return f"{self.label}: n/a vs {self.reference} {verdict}"
        if self.kind == "x":
            got, want = f"{self.value:.2f}x {self.reference}", f">= {self.target:g}x"
        elif self.kind == "%":
            got, want = f"{self.value:.0%} of {self.reference}", f">= {self.target:.0%}"
        elif self.kind == "<=":
            got, want = f"{self.value:.2f}x {self.reference}", f"<= {self.target:g}x"
        elif self.kind == "n":
            got, want = f"{self.value:.0f} {self.reference}", f"<= {self.target:g}"
        elif self.kind == "ms":
            got, want = f"{self.value:.0f} ms {self.reference}", f"< {self.target:g} ms"
        else:
            got, want = f"{self.value:.0f} MB {self.reference}", f"< {self.target:g} MB"
        return f"{self.label}: {got} (target {want}) {verdict}"


def _ceiling_check(
    label: str, single: float | None, pairs: dict | None, reference: str, target: float
) -> Check:
    """A ratio-to-ceiling target: the median of the alternated pairs when the run has them,
    else the ratio of the scenario's run to the ceiling measured once."""
    if pairs is None:
        return Check(label, single, target, "%", reference)
    how = f"{reference}, median of {len(pairs['pairs'])} alternated pairs"
    if pairs.get("failed"):
        how += f" ({len(pairs['failed'])} failed)"
    return Check(label, pairs["median_ratio"], target, "%", how)


def target_checks(report: dict, variant: str = OURS) -> list[Check]:
    """Issue 5's targets (and issue 11's OIP one), computed from this run (they are meant for
    the pinned mode)."""

    def req(v: str, scenario: str, c: int) -> float | None:
        result = find_run(report, v, scenario, c)
        return result and result["req_per_s"]

    def p99(v: str, scenario: str, c: int) -> float | None:
        result = find_run(report, v, scenario, c)
        return result and result["p99_ms"]

    ceiling64 = http_ceiling(report, 64)
    memory = report.get("memory", {}).get(variant)
    return [
        Check(
            "/encode 1 img c64 req/s",
            ratio(req(variant, "encode-1", 64), req(NAIVE, "encode-1", 64)),
            3.0,
            "x",
            "baseline",
        ),
        _ceiling_check(
            "/encode 1 img c64 req/s",
            ratio(req(variant, "encode-1", 64), ceiling64 and ceiling64["req_per_s"]),
            paired(report, variant, "encode-1", 64),
            "HTTP ceiling",
            0.6,
        ),
        Check(
            "/encode 1 img c64 p99",
            ratio(p99(variant, "encode-1", 64), p99(NAIVE, "encode-1", 64)),
            1.0,
            "<=",
            "baseline p99",
        ),
        _ceiling_check(
            "/encode 64 img npy c16 rows/s",
            ratio(
                rows_per_s(find_run(report, variant, "encode-64-npy", 16), 64),
                compute_ceiling(report, "encoder", 64),
            ),
            paired(report, variant, "encode-64-npy", 16),
            "compute ceiling batch 64",
            0.3,
        ),
        Check(
            "/encode 64 img JSON c16 req/s",
            ratio(req(variant, "encode-64", 16), req(NAIVE, "encode-64", 16)),
            4.0,
            "x",
            "baseline",
        ),
        Check(
            "/decode 1 latent c64 req/s",
            ratio(req(variant, "decode-1", 64), req(NAIVE, "decode-1", 64)),
            3.0,
            "x",
            "baseline",
        ),
        Check(  # issue 11
            "OIP v2 infer 64 img binary c16 rows/s",
            ratio(req(variant, "encode-64-oip", 16), req(variant, "encode-64-npy", 16)),
            0.9,
            "%",
            "/encode npy c16 in the same run",
        ),
        Check(
            "RSS per worker under load",
            memory["max_process_mb"] if memory else None,
            RSS_LIMIT_MB,
            "MB",
            "max",
        ),
    ]


def overload_figures(entry: dict) -> dict | None:
    """One overload run's figures (see `benchmarks.cli.overload_run`), or None if it failed.

    Answers are wrk's and the sample clients' together. Goodput: 200s per second under the
    flood, as a fraction of the same request's unloaded req/s. Other errors: answers other than
    200 and 503, plus socket errors. Timeouts: wrk's and the sample clients', plus 504s.
    """
    result, reference, probe = entry.get("result"), entry.get("reference"), entry.get("probe")
    if not result or not reference or not probe or result.get("statuses") is None:
        return None
    statuses = {k: int(v) for k, v in result["statuses"].items()}
    sample = probe["sample"]
    for status, n in sample["statuses"].items():
        statuses[status] = statuses.get(status, 0) + int(n)
    answered = sum(statuses.values())
    ok, shed = statuses.get("200", 0), statuses.get("503", 0)
    goodput = ok / result["duration_s"]
    rss = entry.get("rss_mb", {})
    return {
        "answers_per_s": answered / result["duration_s"],
        "goodput": goodput,
        "goodput_ratio": ratio(goodput, reference["req_per_s"]),
        "reference_req_per_s": reference["req_per_s"],
        "share_503": shed / answered if answered else None,
        "retry_after_share": ((result.get("retry_after") or 0) + sample["retry_after_503s"]) / shed
        if shed
        else None,
        "other_errors": answered - ok - shed + result["socket_errors"] + sample["errors"],
        "timeouts": result["timeouts"]
        + statuses.get("504", 0)
        + sample["error_kinds"].get("TimeoutError", 0),
        "admitted": sample["admitted"],
        "healthz": probe["healthz"],
        "healthz_failures": probe["healthz_failures"],
        "accept_queue": probe.get("accept_queue", {}),
        "rss_after_ratio": ratio(rss.get("after"), rss.get("idle")),
        "rss_mb": rss,
    }


def overload_checks(report: dict) -> list[Check]:
    """Issue 14's targets, for each overload run of the report."""
    checks = []
    for entry in report.get("overloads", []):
        label = f"{entry['overload']} c{entry['connections']}"
        f = overload_figures(entry)
        admitted = f and f["admitted"]["p99_ms"]
        healthz = f and f["healthz"]["p99_ms"]
        unloaded = f"unloaded req/s (c{entry['reference_concurrency']})"
        checks += [
            Check(f"{label} timeouts", f and f["timeouts"], 0, "n", "timeouts and 504s"),
            Check(f"{label} errors", f and f["other_errors"], 0, "n", "errors other than 503"),
            Check(f"{label} goodput", f and f["goodput_ratio"], GOODPUT_MIN, "%", unloaded),
            Check(f"{label} admitted p99", admitted, ADMITTED_P99_MAX_MS, "ms", "(sample)"),
            Check(f"{label} /healthz p99", healthz, HEALTHZ_P99_MAX_MS, "ms", "(new connections)"),
            Check(
                f"{label} RSS after the load",
                f and f["rss_after_ratio"],
                RSS_AFTER_MAX,
                "<=",
                "idle RSS",
            ),
        ]
    return checks


def _overload_section(report: dict) -> list[str]:
    entries = report.get("overloads", [])
    if not entries:
        return []
    out = [
        "",
        "## Overload (issue 14)",
        "",
        "wrk floods one request over many connections (a closed loop: each connection sends its "
        "next request as soon as it has an answer, a 503 included) while `benchmarks.probe` "
        "runs beside it: `GET /healthz` on a new connection every 0.1 s, and sample clients "
        "(a tenth of the connections) posting the same request over keep-alive connections, "
        "whose 200s give the admitted latency (wrk's own latency mixes 200s and 503s); they "
        "connect first, then wrk gets a 2 s ramp before the measurements. Accept queue: "
        "connections the kernel holds until the server takes them (a new probe waits there). "
        "Goodput: 200s per second, against the same request unloaded. RSS: the worker's, "
        "idle before, peak during, and after the server has idled again plus the settle time.",
        "",
        "| Scenario | conns | answers/s | 200/s | of unloaded | 503 share | 503s with "
        "Retry-After | other errors | timeouts | admitted p50 / p99 ms | /healthz p50 / p99 "
        "ms (failed) | accept queue max / mean | RSS idle / during / after MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in entries:
        f = overload_figures(entry)
        head = f"| {entry['overload']} ({entry['scenario']}) | {entry['connections']} |"
        if f is None:
            reason = (entry.get("error") or "no result").replace("|", "/").replace("\n", " ")
            out.append(f"{head} failed: {reason[:80]} |" + " |" * 11)
            continue
        rss, queue = f["rss_mb"], f["accept_queue"]
        out.append(
            f"{head} {fmt_rate(f['answers_per_s'])} | {fmt_rate(f['goodput'])} | "
            f"{fmt_pct(f['goodput_ratio'])} of {fmt_rate(f['reference_req_per_s'])} | "
            f"{fmt_pct(f['share_503'])} | {fmt_pct(f['retry_after_share'])} | "
            f"{f['other_errors']} | {f['timeouts']} | "
            f"{fmt_ms(f['admitted']['p50_ms'])} / {fmt_ms(f['admitted']['p99_ms'])} "
            f"(n={f['admitted']['count']}) | "
            f"{fmt_ms(f['healthz']['p50_ms'])} / {fmt_ms(f['healthz']['p99_ms'])} "
            f"({f['healthz_failures']}) | "
            f"{fmt_count(queue.get('max'))} / {fmt_count(queue.get('mean'))} | "
            f"{rss.get('idle', '—')} / {rss.get('during', '—')} / {rss.get('after', '—')} |"
        )
    out += ["", "Targets (issue 14):", "", "```"]
    out += [check.line() for check in overload_checks(report)]
    out += ["```"]
    return out


def checked_variants(report: dict) -> list[str]:
    """Our variants that ran (the targets are checked for each); `ours` when none did."""
    ran = {run["variant"] for run in report.get("runs", [])}
    return [v for v in (OURS, OURS_NO_BATCHING) if v in ran] or [OURS]


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _scenario_sections(report: dict) -> list[str]:
    settings = report["settings"]
    out = [
        "",
        "## Ceilings",
        "",
        "HTTP ceiling: our server's `GET /healthz` (same stack and middleware, no parsing, "
        "no model). Compute ceiling: raw ONNX Runtime in-process, "
        f"{report.get('compute_ceiling', {}).get('description', 'not measured')}.",
        "",
        "| Concurrency | HTTP ceiling req/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in settings["concurrency"]:
        ceiling = http_ceiling(report, c)
        if ceiling:
            out.append(
                f"| {c} | {fmt_rate(ceiling['req_per_s'])} | {fmt_ms(ceiling['p50_ms'])} | "
                f"{fmt_ms(ceiling['p99_ms'])} | {ceiling['non_2xx'] + ceiling['socket_errors']} |"
            )
        else:
            out.append(f"| {c} | — | — | — | — |")
    compute = report.get("compute_ceiling", {}).get("rows_per_s", {})
    batches = sorted({int(b) for graph in compute.values() for b in graph})
    if batches:
        out += ["", "| Graph | " + " | ".join(f"batch {b} rows/s" for b in batches) + " |"]
        out.append("|---|" + "---:|" * len(batches))
        for graph, by_batch in compute.items():
            cells = " | ".join(fmt_rate(by_batch.get(str(b))) for b in batches)
            out.append(f"| {graph} | {cells} |")
    out += [
        "",
        "## Scenarios",
        "",
        "Ratios: req/s against the naive baseline at the same concurrency (binary scenarios "
        "against the baseline's JSON twin), p99 against the baseline's p99 (lower is better), "
        "req/s against the HTTP ceiling at the same concurrency, rows/s against the compute "
        "ceiling at the same batch size. Errors: non-2xx answers + socket errors.",
        "",
        "| Scenario | c | Server | req/s | rows/s | p50 ms | p99 ms | errors | "
        "x naive | p99 / naive | of HTTP ceiling | of compute ceiling |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table_rows(report):
        r = row.result
        if r is None:
            reason = (row.error or "not run").replace("|", "/").replace("\n", " ")[:80]
            out.append(
                f"| {row.scenario.name} | {row.concurrency} | {row.variant} | "
                f"failed: {reason} | | | | | | | | |"
            )
            continue
        out.append(
            f"| {row.scenario.name} | {row.concurrency} | {row.variant} | "
            f"{fmt_rate(r['req_per_s'])} | {fmt_rate(row.rows_per_s)} | {fmt_ms(r['p50_ms'])} | "
            f"{fmt_ms(r['p99_ms'])} | {r['non_2xx'] + r['socket_errors']} | "
            f"{fmt_x(row.vs_naive)} | {fmt_x(row.p99_vs_naive)} | "
            f"{fmt_pct(row.vs_http_ceiling)} | {fmt_pct(row.vs_compute_ceiling)} |"
        )
    out += [
        "",
        "## Memory under load",
        "",
        "RSS (VmRSS from /proc, shared libraries included) of every process of the server, "
        "sampled every 0.25 s during the measured runs; idle: after start-up and warm-up.",
        "",
        "| Server | workers | max RSS of one process MB | max RSS of the process tree MB "
        "| idle RSS of one process MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant, memory in report.get("memory", {}).items():
        server = report.get("servers", {}).get(variant, {})
        idle = server.get("idle_memory")
        idle_mb = f"{idle['max_process_mb']:.0f}" if idle else "—"
        out.append(
            f"| {variant} | {server.get('workers', '?')} | {memory['max_process_mb']:.0f} | "
            f"{memory['tree_total_mb']:.0f} | {idle_mb} |"
        )
    out += _paired_section(report)
    out += ["", "## Targets (issue 5; defined for the pinned mode)", ""]
    for variant in checked_variants(report):
        out += [f"{variant}:", "", "```"]
        out += [check.line() for check in target_checks(report, variant)]
        out += ["```", ""]
    return out


def markdown(report: dict) -> str:
    mode, machine, settings = report["mode"], report["machine"], report["settings"]
    out = [
        f"# Benchmark results: {mode} mode",
        "",
        f"- Date: {machine['date']}; git commit `{machine['git_commit']}`",
        f"- Machine: {machine['cores']} cores ({machine['cpu_model']}), kernel "
        f"{machine['kernel']}, load average before the run {machine['load_average']}",
        f"- Placement: {settings['placement']}",
        f"- Load: {machine['wrk']}, {settings['duration_s']:g} s per run after a "
        f"{settings['warmup_s']:g} s warm-up, wrk threads {settings['wrk_threads']}",
        f"- Model: `{settings['model_dir']}` (latent dim {settings['latent_dim']})",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"- Command: `{settings['command']}`",
    ]
    # A run of only the overload scenarios has no ceilings, scenarios or issue 5 targets.
    if report.get("runs") or not report.get("overloads"):
        out += _scenario_sections(report)
    out += _overload_section(report)
    out.append("")
    servers = report.get("servers", {})
    if servers:
        out += ["## Servers", ""]
        for variant, server in servers.items():
            out.append(f"- {variant}: `{server['command']}`")
            if server.get("error"):
                first_line = server["error"].splitlines()[0]
                out.append(f"  - **failed**: {first_line} (see the JSON for the log tail)")
        out.append("")
    return "\n".join(out)


# A pairing's reference -> (what it is, the unit both sides of a pair are in).
_PAIR_UNITS = {"http": ("HTTP ceiling", "req/s"), "compute": ("compute ceiling", "rows/s")}


def _paired_section(report: dict) -> list[str]:
    entries = [e for e in report.get("paired", []) if e["pairs"] or e.get("failed")]
    if not entries:
        return []
    out = [
        "",
        "## Ratio targets, measured side by side",
        "",
        "Each pair runs the reference, then the scenario, on the same server (the compute "
        "ceiling while the server idles), so drift on a shared machine hits both alike. The "
        "target is checked on the median of the pair ratios; the single-run ratios above use "
        "the ceilings measured once at the start. A pair with any error answer is failed, "
        "not counted.",
        "",
        "| Scenario | c | Server | reference | pair ratios | median | failed pairs |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for e in entries:
        ratios = ", ".join(fmt_pct(p["ratio"]) for p in e["pairs"]) or "—"
        failed = "; ".join(e.get("failed", [])).replace("|", "/").replace("\n", " ") or "none"
        ceiling, unit = _PAIR_UNITS[e["reference"]]
        out.append(
            f"| {e['scenario']} | {e['concurrency']} | {e['variant']} | {ceiling} {unit} | "
            f"{ratios} | {fmt_pct(e['median_ratio'])} | {failed[:300]} |"
        )
    out += ["", "| Scenario | pair | unit | reference | scenario |", "|---|---:|---|---:|---:|"]
    for e in entries:
        for i, p in enumerate(e["pairs"], 1):
            out.append(
                f"| {e['scenario']} c{e['concurrency']} | {i} | {_PAIR_UNITS[e['reference']][1]} | "
                f"{fmt_rate(p['reference'])} | {fmt_rate(p['value'])} |"
            )
    return out
