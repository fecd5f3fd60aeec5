"""Start the servers under test as subprocesses on free loopback ports, and stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# Variants: our service (micro-batching on and off), the naive baseline, and our app behind
# Ray Serve on a local cluster of 1 or 2 nodes, one replica each (`make install-ray`; Ray must
# run in a loopback-only namespace here: `scripts/offline-netns.sh .venv/bin/python -m benchmarks`).
OURS, OURS_NO_BATCHING, NAIVE = "ours", "ours-nobatch", "naive"
RAY_NODES = {"ray-1": 1, "ray-2": 2}
VARIANTS = (OURS, OURS_NO_BATCHING, NAIVE, *RAY_NODES)


class ServerError(RuntimeError):
    """A server under test did not start or did not become ready."""


@dataclass(frozen=True)
class ServerSpec:
    variant: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    workers: int

    def describe(self) -> str:
        settings = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()) if k.startswith("VAE_"))
        return f"{settings} {' '.join(self.command)}".strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_spec(
    variant: str,
    model_dir: Path,
    port: int,
    workers: int,
    cpu: int | None,
    extra_env: dict[str, str] | None = None,
) -> ServerSpec:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    env = {"VAE_MODEL_DIR": str(model_dir)}
    if variant == NAIVE:
        # Plain uvicorn with its defaults apart from host and port: one worker.
        command = [*pin, sys.executable, "-m", "uvicorn", "benchmarks.naive_app:app"]
        command += ["--host", HOST, "--port", str(port)]
        return ServerSpec(variant, command, env, "/healthz", 1)
    env |= {
        "VAE_HOST": HOST,
        "VAE_PORT": str(port),
        "VAE_WORKERS": str(workers),
        "VAE_ACCESS_LOG": "false",
        "VAE_LOG_LEVEL": "warning",
    }
    if variant == OURS_NO_BATCHING:
        env["VAE_BATCHING"] = "false"
    env |= extra_env or {}
    if variant in RAY_NODES:  # the replicas get the VAE_* settings; host and port are Serve's
        nodes = RAY_NODES[variant]
        command = [*pin, sys.executable, "-m", "service.ray_serve", "--nodes", str(nodes)]
        command += ["--host", HOST, "--port", str(port)]
        return ServerSpec(variant, command, env, "/readyz", nodes)
    return ServerSpec(variant, [*pin, sys.executable, "-m", "service"], env, "/readyz", workers)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen
    base_url: str
    log_path: Path
    started_s: float = field(default=0.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        """Raise ServerError (with the log's tail) when the server has exited."""
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServerError(
                f"{self.spec.variant} exited with code {self.process.returncode} under load; "
                f"log {self.log_path} ends with:\n{tail}"
            )


def probe(
    url: str,
    body: bytes,
    content_type: str,
    accept: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[int, str]:
    """Send one request like wrk will; (status, start of the answer) so a broken route shows."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": accept, **dict(headers)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(500).decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


@contextlib.contextmanager
def running(
    spec: ServerSpec, port: int, log_path: Path, timeout_s: float = 180.0
) -> Iterator[RunningServer]:
    """Start `spec`, wait until its ready route answers 200, stop the whole group on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            spec.command,
            cwd=REPO_ROOT,
            env={**os.environ, **spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop every worker with it
        )
    server = RunningServer(spec, process, base_url, log_path)
    try:
        start = time.monotonic()
        while http_status(base_url + spec.ready_path) != 200:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise ServerError(f"{spec.variant} exited with {process.returncode}:\n{tail}")
            if time.monotonic() - start > timeout_s:
                raise ServerError(
                    f"{spec.variant} not ready after {timeout_s:.0f}s; see {log_path}"
                )
            time.sleep(0.2)
        server.started_s = time.monotonic() - start
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM the server's process group (graceful), SIGKILL whatever is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace_s)
    # Workers orphaned by a crashed supervisor are still in the group: never leave them running.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
