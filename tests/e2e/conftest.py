"""A real server: `python -m service` in a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    log_path: Path
    tmp_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


SERVER_COMMAND = [sys.executable, "-m", "service"]


def server_env(model_dir: Path, tmp_dir: Path, port: int, workers: int, **env: str) -> dict:
    """The environment of a launcher serving `model_dir` on 127.0.0.1:`port`."""
    full_env = {
        **os.environ,
        "VAE_MODEL_DIR": str(model_dir),
        "VAE_HOST": "127.0.0.1",
        "VAE_PORT": str(port),
        "VAE_WORKERS": str(workers),
        "VAE_LOG_FORMAT": "json",
        "TMPDIR": str(tmp_dir),  # where the launcher makes its metrics directory
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return full_env


def start_server(model_dir: Path, tmp_dir: Path, workers: int = 1, **env: str) -> Server:
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    full_env = server_env(model_dir, tmp_dir, port, workers, **env)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            SERVER_COMMAND, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log
        )
    server = Server(process, f"http://127.0.0.1:{port}", port, log_path, tmp_dir)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready after {START_TIMEOUT_S}s:\n{server.log()}")


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(tiny_model_dir: Path, tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def factory(workers: int = 1, **env: str) -> Server:
        server = start_server(tiny_model_dir, tmp_path, workers=workers, **env)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("e2e"), workers=1)
    yield server
    server.stop()
