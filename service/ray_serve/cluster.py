"""A local multi-node Ray cluster for `make serve-ray`: one `ray start --block` process per node.

Ray rewrites 127.0.0.1 to the machine's routable address in multi-node clusters, so each local
node takes its own loopback address (head 127.0.0.2, workers 127.0.0.3, ...). Each node runs
in its own session; stopping it sends SIGTERM (Ray's node then kills the processes it started)
and, as a last guard, SIGKILL to whatever is left in the session's process group. A node also
gets SIGTERM when the launcher dies without stopping it (the kernel's parent-death signal), so
a killed launcher leaves no cluster behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

GCS_PORT = 6380
DASHBOARD_PORT = 8265
# Ray phones home with usage statistics unless told not to; the drain on SIGTERM waits for
# proxies to quiesce, which the launcher has already done by shutting Serve down first.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The local cluster could not start (or was asked to stop while starting)."""


def node_ip(index: int) -> str:
    """Node 0 is the head."""
    return f"127.0.0.{2 + index}"


HEAD_IP = node_ip(0)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the node's process, before exec: SIGTERM when the launcher dies (Linux)."""
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class LocalCluster:
    nodes: int
    cpus_per_node: int
    log_dir: Path
    stop_requested: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{HEAD_IP}:{DASHBOARD_PORT}"

    def _start_node(self, index: int) -> None:
        role = (
            [
                "--head",
                f"--port={GCS_PORT}",
                "--include-dashboard=true",
                f"--dashboard-host={HEAD_IP}",
                f"--dashboard-port={DASHBOARD_PORT}",
                "--disable-usage-stats",
            ]
            if index == 0
            else [f"--address={self.address}"]
        )
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            f"--node-ip-address={node_ip(index)}",
            f"--num-cpus={self.cpus_per_node}",
            *role,
        ]
        with (self.log_dir / f"node-{index}.log").open("wb") as log:
            try:
                process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **RAY_ENV},
                    start_new_session=True,  # its own process group: `stop` can sweep it
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ClusterError(f"cannot run Ray ({exc}); run `make install-ray`") from None
        self.processes.append(process)

    def start(self, timeout: float = 120.0) -> None:
        """Start the head, then the workers; return once every node is alive."""
        import ray

        for port in (GCS_PORT, DASHBOARD_PORT):
            if _answers(HEAD_IP, port):
                raise ClusterError(
                    f"{HEAD_IP}:{port} is already in use (another local Ray cluster?); "
                    "stop it first"
                )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._start_node(0)
        self._wait(lambda: _answers(HEAD_IP, GCS_PORT), timeout, "the head node")
        for index in range(1, self.nodes):
            self._start_node(index)
        ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
        self._wait(
            lambda: sum(node["Alive"] for node in ray.nodes()) >= self.nodes,
            timeout,
            f"{self.nodes} nodes",
        )

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for process in self.processes:
                if process.poll() is not None:
                    raise ClusterError(
                        f"a Ray node exited ({process.returncode}); see {self.log_dir}"
                    )
            if ready():
                return
            if self.stop_requested.is_set():
                raise ClusterError("stopped while starting")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} not up after {timeout:.0f} s; see {self.log_dir}")
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (workers first), then sweep their process groups."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()
