"""A local multi-node Ray cluster for `make serve-ray`: one `ray start --block` process per node.

Ray rewrites 127.0.0.1 to the machine's routable address in multi-node clusters, so each local
node takes its own loopback address (head 127.0.0.2, workers 127.0.0.3, ...). Each node runs
in its own session; stopping it sends SIGTERM (Ray's node then kills the processes it started)
and, as a last guard, SIGKILL to whatever is left in the session's process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP = "127.0.0.2"
GCS_PORT = 6380
DASHBOARD_PORT = 8265
# Ray phones home with usage statistics unless told not to; the drain on SIGTERM waits for
# proxies to quiesce, which `stop` has already done by shutting Serve down first.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def node_ip(index: int) -> str:
    """Node 0 is the head."""
    return f"127.0.0.{2 + index}"


@dataclass
class LocalCluster:
    nodes: int
    cpus_per_node: int
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{HEAD_IP}:{DASHBOARD_PORT}"

    def _start_node(self, index: int) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
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
            ray,
            "start",
            "--block",
            f"--node-ip-address={node_ip(index)}",
            f"--num-cpus={self.cpus_per_node}",
            *role,
        ]
        log = (self.log_dir / f"node-{index}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **RAY_ENV},
                start_new_session=True,  # its own process group: `stop` can sweep it
            )
        )

    def start(self, timeout: float = 120.0) -> None:
        """Start the head, then the workers; return once every node is alive."""
        import ray

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._start_node(0)
        self._wait(lambda: _gcs_up(self.address), timeout, "the head node")
        for index in range(1, self.nodes):
            self._start_node(index)
        ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
        self._wait(
            lambda: sum(node["Alive"] for node in ray.nodes()) >= self.nodes,
            timeout,
            f"{self.nodes} nodes",
        )

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"a Ray node exited ({process.returncode}); see {self.log_dir}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not up after {timeout:.0f} s; see {self.log_dir}")
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


def _gcs_up(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False
