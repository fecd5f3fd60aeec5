"""Where a request's CPU goes behind Ray Serve: `python -m benchmarks.ray_cpu`.

Drives `POST /decode` (one latent, JSON) with wrk at fixed concurrency against the plain server
(one worker) and against `python -m service.ray_serve --nodes 1` (one replica), and reads each
process's CPU time (/proc/PID/stat) before and after: CPU milliseconds per answered request,
per kind of process (the plain worker; Serve's proxy, the replica, the controller, Ray's own
daemons), and requests per second. Needs `make install-ray`; Ray must run in a loopback-only
namespace on this machine:

    scripts/offline-netns.sh .venv/bin/python -m benchmarks.ray_cpu
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.servers import OURS, RAY_NODES, REPO_ROOT, free_port, running, server_spec
from vae_manifest import load_manifest

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KINDS = (
    ("Serve proxy", re.compile(r"ray::ProxyActor")),
    ("Serve replica (the app)", re.compile(r"ray::ServeReplica")),
    ("Serve controller", re.compile(r"ray::ServeController")),
    ("raylet", re.compile(r"/raylet ")),
    ("GCS", re.compile(r"gcs_server")),
    ("dashboard and agents", re.compile(r"dashboard|agent|log_monitor|monitor\.py")),
    ("plain worker", re.compile(r"-m service$|multiprocessing")),
)
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"z": [[%s]]}'
"""


def cpu_by_pid() -> dict[int, tuple[str, float]]:
    out = {}
    me = os.getpid()  # its command line names benchmarks.ray_cpu: not one of Ray's processes
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (cmdline, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def kind_of(cmdline: str) -> str | None:
    for kind, pattern in KINDS:
        if pattern.search(cmdline):
            return kind
    return "other Ray processes" if "ray" in cmdline else None


def measure(base_url: str, latent_dim: int, connections: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(LUA % ",".join(["0.1"] * latent_dim))
    before = cpu_by_pid()
    started = time.monotonic()
    run = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", lua.name, f"{base_url}/decode"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    after = cpu_by_pid()
    os.unlink(lua.name)
    requests = int(re.search(r"(\d+) requests in", run.stdout).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    cpu: dict[str, float] = defaultdict(float)
    for pid, (cmdline, seconds_after) in after.items():
        kind = kind_of(cmdline)
        if kind is not None:
            cpu[kind] += seconds_after - before.get(pid, (cmdline, 0.0))[1]
    return {
        "requests_per_s": requests / elapsed,
        "errors": int(errors.group(1)) if errors else 0,
        "cpu_ms_per_request": {k: 1e3 * v / requests for k, v in sorted(cpu.items()) if v > 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_cpu", description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "mnist-vae")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install wrk)")
    latent_dim = load_manifest(args.model_dir, verify=False).latent_dim
    results = {}
    with tempfile.TemporaryDirectory(prefix="vae-ray-cpu-") as logs:
        for name, variant in (
            ("plain server, 1 worker", OURS),
            ("Ray Serve, 1 node, 1 replica", min(RAY_NODES, key=RAY_NODES.__getitem__)),
        ):
            port = free_port()
            spec = server_spec(variant, args.model_dir.resolve(), port, 1, None)
            with running(spec, port, Path(logs) / f"{variant}.log") as server:
                measure(server.base_url, latent_dim, args.connections, 2)  # warm-up
                results[name] = measure(server.base_url, latent_dim, args.connections, args.seconds)
    print(f"POST /decode (1 latent, JSON), wrk c{args.connections}, {args.seconds:.0f} s each")
    for name, result in results.items():
        print(f"\n{name}: {result['requests_per_s']:.0f} req/s, {result['errors']} non-2xx")
        for kind, ms in result["cpu_ms_per_request"].items():
            print(f"  {kind:28} {ms:7.3f} ms CPU per request")


if __name__ == "__main__":
    main()
