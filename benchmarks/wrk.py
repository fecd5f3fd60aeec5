"""Run Debian's `wrk` and parse what it prints (the Lua `done()` line, or its `--latency` text)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("lua") / "request.lua"
RESULT_PREFIX = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed nothing we can read."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    p90_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    bytes_read: int = 0
    non_2xx: int = 0
    socket_errors: int = 0  # connect + read + write + timeout
    timeouts: int = 0  # of which timeout (no answer within wrk's --timeout)
    # With `Load.count_statuses`: answers per status ("200": n, ...) and 503s with Retry-After.
    statuses: dict[str, int] | None = None
    retry_after: int | None = None

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def to_dict(self) -> dict:
        return {**asdict(self), "req_per_s": self.req_per_s}


def parse_done_line(output: str) -> WrkResult | None:
    """The `BENCH_RESULT {...}` line printed by `lua/request.lua`, or None when absent."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line[len(RESULT_PREFIX) :])
            return WrkResult(
                requests=int(raw["requests"]),
                duration_s=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1e3,
                p90_ms=raw["p90_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
                mean_ms=raw["latency_mean_us"] / 1e3,
                max_ms=raw["latency_max_us"] / 1e3,
                bytes_read=int(raw["bytes"]),
                non_2xx=int(raw["status_errors"]),
                socket_errors=sum(
                    int(raw[k])
                    for k in ("connect_errors", "read_errors", "write_errors", "timeout_errors")
                ),
                timeouts=int(raw["timeout_errors"]),
                statuses={str(k): int(v) for k, v in raw["statuses"].items()}
                if "statuses" in raw
                else None,
                retry_after=int(raw["retry_after"]) if "retry_after" in raw else None,
            )
    return None


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def duration_ms(text: str) -> float:
    """wrk's human durations ('812.00us', '1.53ms', '2.01s', '1.00m') in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise WrkError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_latency_text(output: str) -> WrkResult:
    """Fallback: wrk's own `--latency` report (no Lua `done()` line)."""
    summary = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)(\w+) read", output)
    if not summary:
        raise WrkError("wrk output has no 'N requests in T, X read' line:\n" + output[-2000:])
    percentiles = dict(re.findall(r"^\s+(50|90|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.M))
    if "50" not in percentiles or "99" not in percentiles:
        raise WrkError("wrk output has no latency distribution (run with --latency)")
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    latency = re.search(r"^\s+Latency\s+(\S+)\s+\S+\s+(\S+)", output, re.M)
    return WrkResult(
        requests=int(summary.group(1)),
        duration_s=duration_ms(summary.group(2)) / 1e3,
        p50_ms=duration_ms(percentiles["50"]),
        p90_ms=duration_ms(percentiles["90"]) if "90" in percentiles else None,
        p99_ms=duration_ms(percentiles["99"]),
        mean_ms=duration_ms(latency.group(1)) if latency else None,
        max_ms=duration_ms(latency.group(2)) if latency else None,
        bytes_read=int(float(summary.group(3)) * _SIZE.get(summary.group(4), 1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
        timeouts=int(socket.group(4)) if socket else 0,
    )


def parse_wrk_output(output: str) -> WrkResult:
    return parse_done_line(output) or parse_latency_text(output)


def ensure_wrk() -> str:
    """Path of `wrk`; installs Debian's package when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise WrkError(
            "the load generator `wrk` is not installed; install it with "
            "`sudo apt-get install -y wrk` (Debian/Ubuntu) or from https://github.com/wg/wrk"
        )
    print("wrk not found: installing Debian's package (apt-get install -y wrk)", file=sys.stderr)
    # Wait for another apt process instead of failing on the dpkg lock.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"]
    subprocess.run([*apt, "update"], check=False, stdout=subprocess.DEVNULL)
    install = subprocess.run([*apt, "install", "wrk"], capture_output=True, text=True)
    found = shutil.which("wrk")
    if install.returncode != 0 or not found:
        raise WrkError(f"apt-get install wrk failed:\n{install.stderr[-2000:]}")
    return found


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0].strip() if text else "?"


@dataclass(frozen=True)
class Load:
    """What wrk sends: a method, an optional body file and headers."""

    url: str
    method: str = "GET"
    body_file: Path | None = None
    content_type: str | None = None
    accept: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # more request headers
    count_statuses: bool = False  # a Lua response() hook: slower wrk, answers per status


def wrk_command(
    wrk: str,
    load: Load,
    connections: int,
    threads: int,
    duration_s: float,
    cpu: int | None = None,
) -> list[str]:
    threads = max(1, min(threads, connections))
    # Slow answers must be counted as latency, not dropped as wrk's default 2 s timeouts.
    timeout_s = max(10, int(duration_s) * 2)
    cmd = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={timeout_s}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        load.url,
    ]
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else cmd


def run_wrk(
    wrk: str,
    load: Load,
    connections: int,
    threads: int,
    duration_s: float,
    cpu: int | None = None,
    raw_output: Path | None = None,
) -> WrkResult:
    env = {
        **os.environ,
        "BENCH_METHOD": load.method,
        "BENCH_BODY_FILE": str(load.body_file or ""),
        "BENCH_CONTENT_TYPE": load.content_type or "",
        "BENCH_ACCEPT": load.accept or "",
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in load.headers),
        "BENCH_STATUSES": "1" if load.count_statuses else "",
    }
    cmd = wrk_command(wrk, load, connections, threads, duration_s, cpu)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s * 3 + 60)
    output = proc.stdout + proc.stderr
    if raw_output is not None:
        raw_output.parent.mkdir(parents=True, exist_ok=True)
        raw_output.write_text(" ".join(cmd) + "\n\n" + output)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {output[-2000:]}")
    return parse_wrk_output(output)
