"""`python -m benchmarks`: run the scenarios against each server variant, in each mode.

Examples:
    python -m benchmarks                          # both modes, every variant (long: ~30 min)
    python -m benchmarks --mode pinned            # the mode issue 5's targets use
    python -m benchmarks --quick --variants naive --scenarios encode-1,decode-1
    python -m benchmarks --mode pinned --variants ours --scenarios overload-1,overload-64
    python -m benchmarks --from-json benchmarks/results/results-pinned.json   # re-render
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bodies
from benchmarks.machine import machine_info
from benchmarks.memory import MemoryPeak, MemorySampler, sample_tree
from benchmarks.plot import plot
from benchmarks.quiesce import wait_until_idle
from benchmarks.report import checked_variants, markdown, overload_checks, target_checks
from benchmarks.scenarios import (
    DEFAULT_CONCURRENCY,
    HTTP_CEILING_PATH,
    OVERLOAD_CONNECTIONS,
    OVERLOADS,
    PAIRINGS,
    SCENARIOS,
    Overload,
    Pairing,
    Scenario,
    by_name,
    compute_batches,
    overload_by_name,
)
from benchmarks.servers import (
    NAIVE,
    OURS,
    RAY_NODES,
    REPO_ROOT,
    VARIANTS,
    RunningServer,
    ServerError,
    free_port,
    probe,
    running,
    server_spec,
)
from benchmarks.wrk import Load, WrkError, ensure_wrk, run_wrk, wrk_version
from vae_manifest import load_manifest

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# Pinned mode: the server and all its workers on core 1, wrk on core 0.
SERVER_CPU, LOAD_CPU = 1, 0
# Overload runs: 1 connection in this many is a sample client of `benchmarks.probe`, which
# connects them first (a busy uvloop server takes new connections slowly, so clients that
# connect during the flood may wait in the accept queue for all of it); then wrk runs for
# the ramp (its connections get in) plus the measured duration.
SAMPLE_SHARE = 10
OVERLOAD_RAMP_S = 2.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def csv(kind):
    def parse(text: str) -> list:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the VAE service against a naive FastAPI baseline and ceilings.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    parser.add_argument("--mode", choices=["pinned", "unpinned", "both"], default="both")
    parser.add_argument(
        "--variants",
        type=csv(str),
        default=[v for v in VARIANTS if v not in RAY_NODES],
        help=f"servers to drive, comma-separated from {','.join(VARIANTS)} (default: all but "
        "the Ray ones, which need `make install-ray` and, here, a loopback-only namespace)",
    )
    names = [s.name for s in SCENARIOS] + [o.name for o in OVERLOADS]
    parser.add_argument(
        "--scenarios",
        type=csv(str),
        default=names,
        help="comma-separated from " + ",".join(names) + " (default: all; the overload "
        "scenarios run on `ours` only)",
    )
    parser.add_argument(
        "--concurrency", type=csv(int), default=list(DEFAULT_CONCURRENCY), help="default 1,16,64"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up (2)")
    parser.add_argument(
        "--compute-seconds", type=float, default=None, help="per graph and batch (2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 3 s runs, 1 s warm-ups, short ceiling"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="alternated pairs per ratio target, reference then scenario (5; quick 1; 0 skips)",
    )
    parser.add_argument(
        "--overload-connections",
        type=int,
        default=OVERLOAD_CONNECTIONS,
        help=f"wrk connections of the overload scenarios ({OVERLOAD_CONNECTIONS})",
    )
    parser.add_argument(
        "--overload-settle",
        type=float,
        default=5.0,
        help="seconds the server idles after an overload run before its RSS is read again (5)",
    )
    parser.add_argument("--wrk-threads", type=int, default=None, help="1 pinned, 2 unpinned")
    parser.add_argument(
        "--workers", type=int, default=None, help="unpinned mode's workers (default: cores)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("VAE_MODEL_DIR", "models/mnist-vae")),
        help="model directory (default: $VAE_MODEL_DIR or models/mnist-vae)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for our server, e.g. VAE_MAX_WAIT_MS=1 (repeatable)",
    )
    parser.add_argument(
        "--from-json", type=Path, default=None, help="re-render tables and plot from a results JSON"
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {','.join(VARIANTS)}")
    overloads = {o.name for o in OVERLOADS}
    try:
        args.overloads = [overload_by_name(n) for n in args.scenarios if n in overloads]
        args.scenarios = [by_name(n) for n in args.scenarios if n not in overloads]
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    for item in args.server_env:
        if "=" not in item:
            parser.error(f"--server-env needs KEY=VALUE, got {item!r}")
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.compute_seconds = args.compute_seconds or (0.5 if args.quick else 2.0)
    args.pairs = args.pairs if args.pairs is not None else (1 if args.quick else 5)
    return args


def compute_ceiling(
    args: argparse.Namespace, mode: str, batches: list[int], graphs: list[str] | None = None
) -> dict:
    """Raw ONNX Runtime rows/s: one process on core 1 (pinned), one per core summed (unpinned)."""
    command = [sys.executable, "-m", "benchmarks.compute_ceiling", "--model-dir"]
    command += [str(args.model_dir), "--seconds", str(args.compute_seconds), "--batches"]
    command += [str(b) for b in batches]
    if graphs:
        command += ["--graphs", *graphs]
    processes = 1 if mode == "pinned" else args.workers
    if mode == "pinned":
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    children = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    raw = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"compute ceiling failed: {' '.join(command)}")
        raw.append(json.loads(out))
    totals = {
        graph: {b: sum(r[graph][b]["rows_per_s"] for r in raw) for b in raw[0][graph]}
        for graph in raw[0]
    }
    where = "on core 1" if mode == "pinned" else f"{processes} processes at once, summed"
    return {
        "description": f"intra-op 1 per session, {where}",
        "processes": processes,
        "rows_per_s": totals,
        "raw": raw,
    }


def url_of(server: RunningServer, scenario: Scenario) -> str:
    model_dir = Path(server.spec.env["VAE_MODEL_DIR"])
    return server.base_url + scenario.path_for(load_manifest(model_dir, verify=False).name)


def probe_error(
    server: RunningServer, scenario: Scenario, body_files: dict[str, Path]
) -> str | None:
    """None when one request of the scenario is answered 200, else what went wrong."""
    body = body_files[scenario.body].read_bytes()
    status, answer = probe(
        url_of(server, scenario),
        body,
        scenario.content_type,
        scenario.accept,
        scenario.headers_for(body),
    )
    return None if status == 200 else f"probe answered {status}: {answer[:200]}"


def load_for(server: RunningServer, scenario: Scenario, body_files: dict[str, Path]) -> Load:
    body_file = body_files[scenario.body]
    return Load(
        url=url_of(server, scenario),
        method="POST",
        body_file=body_file,
        content_type=scenario.content_type,
        accept=scenario.accept,
        headers=scenario.headers_for(body_file.read_bytes()),
    )


def measure(
    args: argparse.Namespace,
    wrk: str,
    load: Load,
    c: int,
    raw_path: Path,
    sampler_root: int,
    memory: MemoryPeak,
) -> dict:
    """Warm up, then one measured run while sampling the server's memory.

    Before each run the server must be idle again: requests a previous run left in flight
    would otherwise be charged to this one.
    """
    cpu = LOAD_CPU if args.pinned else None
    if args.warmup > 0:
        wait_until_idle(sampler_root)
        run_wrk(wrk, load, c, args.threads, args.warmup, cpu)
    wait_until_idle(sampler_root)
    with MemorySampler(sampler_root) as sampler:
        result = run_wrk(wrk, load, c, args.threads, args.duration, cpu, raw_path)
    memory.merge(sampler.peak)
    if result.requests == 0:
        raise WrkError(f"no request completed in {args.duration:g} s; use a longer --duration")
    return result.to_dict()


def drive(
    args: argparse.Namespace,
    wrk: str,
    server: RunningServer,
    body_files: dict[str, Path],
    raw_dir: Path,
    report: dict,
    memory: MemoryPeak,
) -> None:
    variant = server.spec.variant
    # The HTTP ceiling is our stack's: measured on the first of our variants that runs.
    if variant != NAIVE and not report["http_ceiling"] and args.scenarios:
        for c in args.concurrency:
            log(f"  {variant} HTTP ceiling {HTTP_CEILING_PATH} c{c}")
            path = raw_dir / f"{variant}-healthz-c{c}.txt"
            try:
                result = ceiling_run(args, wrk, server, c, path, memory)
            except WrkError as exc:
                server.check_alive()
                log(f"    failed: {exc}")
                continue
            report["http_ceiling"][str(c)] = result
    for scenario in args.scenarios:
        if variant == NAIVE and scenario.encoding != "json":
            continue  # the naive app speaks JSON only; its JSON twin is the baseline
        server.check_alive()
        error = probe_error(server, scenario, body_files)
        for c in args.concurrency:
            run = {"variant": variant, "scenario": scenario.name, "concurrency": c}
            run |= {"rows": scenario.rows, "result": None, "error": error}
            if error is None:
                log(f"  {variant} {scenario.name} c{c}")
                path = raw_dir / f"{variant}-{scenario.name}-c{c}.txt"
                try:
                    load = load_for(server, scenario, body_files)
                    run["result"] = measure(args, wrk, load, c, path, server.pid, memory)
                except (WrkError, subprocess.TimeoutExpired) as exc:
                    run["error"] = str(exc)
                server.check_alive()
            if run["error"]:
                log(f"  {variant} {scenario.name} c{c}: {run['error'][:300]}")
            report["runs"].append(run)
    if variant == OURS:
        for pairing in PAIRINGS:
            chosen = pairing.scenario in {s.name for s in args.scenarios}
            if chosen and pairing.concurrency in args.concurrency and args.pairs > 0:
                report["paired"].append(
                    alternate(args, wrk, server, body_files, raw_dir, memory, pairing)
                )
        for overload in args.overloads:
            log(f"  {variant} {overload.name}: c{args.overload_connections} flood")
            report["overloads"].append(
                overload_run(args, wrk, server, overload, body_files, raw_dir, memory)
            )


def alternate(
    args: argparse.Namespace,
    wrk: str,
    server: RunningServer,
    body_files: dict[str, Path],
    raw_dir: Path,
    memory: MemoryPeak,
    pairing: Pairing,
) -> dict:
    """`args.pairs` times: the pairing's reference, then its scenario, on the same server.
    Each pair gives one ratio; the median of those is the figure the target is checked on.
    A pair with an error answer on either side counts as failed, never as a ratio."""
    scenario, c = by_name(pairing.scenario), pairing.concurrency
    variant = server.spec.variant
    mode = "pinned" if args.pinned else "unpinned"
    out = {"variant": variant, "scenario": scenario.name, "concurrency": c}
    out |= {"reference": pairing.reference, "pairs": [], "failed": [], "median_ratio": None}
    error = probe_error(server, scenario, body_files)
    if error is not None:
        out["failed"].append(error)
        return out
    for i in range(1, args.pairs + 1):
        name = f"{variant}-pair{i}-{scenario.name}-c{c}"
        log(f"  {variant} pair {i}/{args.pairs}: {pairing.reference} ceiling, {scenario.name} c{c}")
        errors = 0
        try:
            if pairing.reference == "http":
                ceiling = ceiling_run(args, wrk, server, c, raw_dir / f"{name}-healthz.txt", memory)
                reference = ceiling["req_per_s"]
                errors += ceiling["non_2xx"] + ceiling["socket_errors"]
            else:
                wait_until_idle(server.pid)
                graph, batch = scenario.graph, scenario.rows
                compute = compute_ceiling(args, mode, [batch], [graph])
                reference = compute["rows_per_s"][graph][str(batch)]
            load = load_for(server, scenario, body_files)
            result = measure(args, wrk, load, c, raw_dir / f"{name}.txt", server.pid, memory)
            errors += result["non_2xx"] + result["socket_errors"]
        except (WrkError, RuntimeError, subprocess.TimeoutExpired) as exc:
            server.check_alive()
            out["failed"].append(f"pair {i}: {exc}")
            log(f"    pair {i} failed: {exc}")
            continue
        if errors:
            out["failed"].append(f"pair {i}: {errors} error answers or socket errors")
            log(f"    pair {i} failed: {errors} errors")
            continue
        # req/s against the HTTP ceiling's req/s; rows/s against the compute ceiling's rows/s
        value = result["req_per_s"] * (1 if pairing.reference == "http" else scenario.rows)
        out["pairs"].append({"reference": reference, "value": value, "ratio": value / reference})
    if out["pairs"]:
        out["median_ratio"] = statistics.median(p["ratio"] for p in out["pairs"])
    return out


def worker_rss_mb(root: int) -> float:
    """RSS of the server's heaviest process (with uvicorn workers, the heaviest worker)."""
    return round(max(sample_tree(root).values(), default=0) / 2**20, 1)


def start_probe(
    args: argparse.Namespace,
    server: RunningServer,
    scenario: Scenario | None,
    body: Path | None,
    clients: int,
) -> subprocess.Popen:
    """`benchmarks.probe` for the flood's duration, on the load generator's core: the sample
    clients (with `scenario` and `body`, no health probes), or the health probes alone."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.probe",
        "--port",
        server.base_url.rsplit(":", 1)[1],
    ]
    command += ["--duration", str(args.duration), "--ramp", str(OVERLOAD_RAMP_S)]
    if scenario is not None and body is not None:
        command += ["--path", scenario.path, "--no-health"]
        command += ["--body-file", str(body), "--content-type", scenario.content_type]
        command += ["--accept", scenario.accept, "--clients", str(clients)]
    if args.pinned:
        command = ["taskset", "-c", str(LOAD_CPU), *command]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)


def overload_run(
    args: argparse.Namespace,
    wrk: str,
    server: RunningServer,
    overload: Overload,
    body_files: dict[str, Path],
    raw_dir: Path,
    memory: MemoryPeak,
) -> dict:
    """Issue 14's overload run: the scenario unloaded (the goodput's reference), then a flood
    of `--overload-connections` with a probe beside it (`benchmarks.probe`), and the worker's
    RSS before, during and `--overload-settle` seconds after."""
    scenario = by_name(overload.scenario)
    variant = server.spec.variant
    c = args.overload_connections
    out: dict = {"variant": variant, "overload": overload.name, "scenario": scenario.name}
    out |= {"connections": c, "reference_concurrency": overload.reference_concurrency}
    out |= {"reference": None, "result": None, "probe": None, "rss_mb": {}, "error": None}
    out["error"] = probe_error(server, scenario, body_files)
    if out["error"]:
        return out
    load = load_for(server, scenario, body_files)
    name = f"{variant}-{overload.name}"
    probes: list[subprocess.Popen] = []
    try:
        out["reference"] = measure(
            args,
            wrk,
            load,
            overload.reference_concurrency,
            raw_dir / f"{name}-reference-c{overload.reference_concurrency}.txt",
            server.pid,
            memory,
        )
        wait_until_idle(server.pid)
        out["rss_mb"]["idle"] = worker_rss_mb(server.pid)
        # A tenth of the connections are the sample clients: enough 200s for a p99.
        clients = max(1, c // SAMPLE_SHARE)
        # Two processes: under the flood the sample clients' own event loop lags by up to a
        # second (hundreds of large bodies to send), and a health probe timed in it measured
        # that lag, not the server's (README, overload section).
        probes = [
            start_probe(args, server, scenario, body_files[scenario.body], clients),
            start_probe(args, server, None, None, 0),
        ]
        for probe in probes:
            assert probe.stdout is not None
            if probe.stdout.readline().strip() != "READY":  # its clients are connected
                raise WrkError("the probe did not start")
        flood = dataclasses.replace(load, count_statuses=True)
        cpu = LOAD_CPU if args.pinned else None
        with MemorySampler(server.pid) as sampler:
            result = run_wrk(
                wrk,
                flood,
                c - clients,
                args.threads,
                OVERLOAD_RAMP_S + args.duration,
                cpu,
                raw_dir / f"{name}-c{c}.txt",
            )
        outputs = [probe.communicate(timeout=args.duration + 60)[0] for probe in probes]
        out["result"] = result.to_dict()
        if all(probe.returncode == 0 for probe in probes):
            sample, health = (json.loads(output) for output in outputs)
            out["probe"] = {
                **health,
                "sample": sample["sample"],
                "loop_lag": {"sample": sample["loop_lag"], "health": health["loop_lag"]},
            }
        out["rss_mb"]["during"] = round(sampler.peak.max_process / 2**20, 1)
        # Idle again, then the time a quiet worker gets to hand memory back.
        wait_until_idle(server.pid)
        time.sleep(args.overload_settle)
        out["rss_mb"]["after"] = worker_rss_mb(server.pid)
    except (WrkError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        out["error"] = str(exc)
    finally:
        for probe in probes:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
    server.check_alive()
    return out


def ceiling_run(
    args: argparse.Namespace,
    wrk: str,
    server: RunningServer,
    c: int,
    raw_path: Path,
    memory: MemoryPeak,
) -> dict:
    """One HTTP-ceiling run: our server's `GET /healthz` at concurrency `c`."""
    load = Load(url=server.base_url + HTTP_CEILING_PATH)
    return measure(args, wrk, load, c, raw_path, server.pid, memory)


def run_mode(args: argparse.Namespace, mode: str, wrk: str, machine: dict, latent_dim: int) -> dict:
    args.pinned = mode == "pinned"
    cores = os.cpu_count() or 1
    if args.pinned and cores < 2:
        raise SystemExit("pinned mode needs at least 2 cores (server on core 1, wrk on core 0)")
    args.workers = args.workers or cores
    workers = 1 if args.pinned else args.workers
    args.threads = args.wrk_threads or (1 if args.pinned else min(2, cores))
    placement = (
        f"server and all its workers on core {SERVER_CPU} (taskset), 1 worker; "
        f"wrk on core {LOAD_CPU}"
        if args.pinned
        else f"no pinning; {workers} workers for our server, {cores} cores shared with wrk"
    )
    raw_dir = args.results_dir / "raw" / mode
    report: dict = {
        "mode": mode,
        "machine": machine,
        "settings": {
            "placement": placement,
            "server_workers": workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk_threads": args.threads,
            "concurrency": args.concurrency,
            "pairs": args.pairs,
            "variants": args.variants,
            "scenarios": [s.name for s in args.scenarios] + [o.name for o in args.overloads],
            "model_dir": str(args.model_dir),
            "latent_dim": latent_dim,
            "server_env": args.server_env,
            "command": "python -m benchmarks " + shlex.join(args.argv),
        },
        "http_ceiling": {},
        "runs": [],
        "paired": [],
        "overloads": [],
        "memory": {},
        "servers": {},
    }
    log(f"[{mode}] {placement}")
    if args.scenarios:  # the overload scenarios compare with the server itself, not ceilings
        batches = compute_batches(args.scenarios)
        log(f"[{mode}] compute ceiling, batches {batches}")
        report["compute_ceiling"] = compute_ceiling(args, mode, batches)
    with tempfile.TemporaryDirectory(prefix="vae-bench-bodies-") as tmp:
        body_files = bodies.write_bodies(args.model_dir, latent_dim, Path(tmp))
        extra_env = dict(item.split("=", 1) for item in args.server_env)
        for variant in [v for v in VARIANTS if v in args.variants]:
            port = free_port()
            cpu = SERVER_CPU if args.pinned else None
            spec = server_spec(variant, args.model_dir.resolve(), port, workers, cpu, extra_env)
            log(f"[{mode}] starting {variant}: {spec.describe()}")
            memory = MemoryPeak()
            try:
                with running(spec, port, raw_dir / f"{variant}-server.log") as server:
                    wait_until_idle(server.pid)
                    idle = MemoryPeak()
                    idle.add(sample_tree(server.pid))
                    report["servers"][variant] = {
                        "command": spec.describe(),
                        "workers": spec.workers,
                        "startup_s": round(server.started_s, 2),
                        "idle_memory": idle.to_dict(),
                    }
                    drive(args, wrk, server, body_files, raw_dir, report, memory)
            except ServerError as exc:
                log(f"[{mode}] {variant} failed: {exc}")
                report["servers"].setdefault(variant, {"command": spec.describe()})
                report["servers"][variant]["error"] = str(exc)
            if memory.samples:
                report["memory"][variant] = memory.to_dict()
    return report


def write_outputs(reports: list[dict], results_dir: Path, with_plot: bool) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    written, documents = [], []
    for report in reports:
        mode = report["mode"]
        json_path = results_dir / f"results-{mode}.json"
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        document = markdown(report)
        if with_plot and report["runs"]:
            png = plot(report, results_dir / f"results-{mode}.png")
            document += f"\n![req/s and p99 per scenario]({png.name})\n"
            written.append(png)
        md_path = results_dir / f"results-{mode}.md"
        md_path.write_text(document)
        documents.append(document)
        written += [json_path, md_path]
    latest = results_dir / "latest.md"
    latest.write_text("\n\n".join(documents))
    return [*written, latest]


def print_checks(reports: list[dict]) -> None:
    for report in reports:
        if report["runs"]:
            print(f"\nTargets from the {report['mode']} run (issue 5 defines them for pinned):")
            for variant in checked_variants(report):
                print(f"  {variant}:")
                for check in target_checks(report, variant):
                    print("    " + check.line())
        if report.get("overloads"):
            print(f"\nOverload targets from the {report['mode']} run (issue 14):")
            for check in overload_checks(report):
                print("    " + check.line())


def raise_open_files_limit(needed: int) -> None:
    """wrk and the server each hold one descriptor per connection: lift the soft limit (which
    they inherit) towards the hard one when the flood needs more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log(f"open files limited to {target} (hard limit); the flood needs ~{needed}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.argv = argv
    if args.from_json:
        reports = [json.loads(args.from_json.read_text())]
        out_dir = args.from_json.parent
    else:
        if not (args.model_dir / "model.json").is_file():
            raise SystemExit(
                f"{args.model_dir}/model.json not found: train a model (`make train`) "
                "or point --model-dir / VAE_MODEL_DIR at a model directory"
            )
        latent_dim = load_manifest(args.model_dir, verify=False).latent_dim
        try:
            wrk = ensure_wrk()
        except WrkError as exc:
            raise SystemExit(str(exc)) from None
        machine = machine_info(wrk_version(wrk))
        if args.overloads:
            raise_open_files_limit(args.overload_connections + 1024)
        modes = ["pinned", "unpinned"] if args.mode == "both" else [args.mode]
        started = time.monotonic()
        reports = [run_mode(args, mode, wrk, machine, latent_dim) for mode in modes]
        log(f"benchmark finished in {time.monotonic() - started:.0f} s")
        out_dir = args.results_dir
    for path in write_outputs(reports, out_dir, with_plot=not args.no_plot):
        print(f"wrote {path}")
    print_checks(reports)
    return 0
