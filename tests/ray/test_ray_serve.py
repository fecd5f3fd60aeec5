"""`python -m service.ray_serve --nodes 2` (what `make serve-ray NODES=2` runs): a 2-node local
Ray cluster serving the plain server's API, byte for byte, surviving a killed replica, and
leaving no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from service.ray_serve.__main__ import DEFAULT_CONFIG, SERVING
from service.ray_serve.cluster import DASHBOARD_PORT, HEAD_IP, node_ip
from tests.e2e.conftest import REPO_ROOT, Server, free_port, start_server

pytestmark = [pytest.mark.ray, pytest.mark.slow]
SERVE_CONFIG = yaml.safe_load(DEFAULT_CONFIG.read_text())

NODES = 2
UP_TIMEOUT_S = 240.0
DASHBOARD = f"http://{HEAD_IP}:{DASHBOARD_PORT}"
# Serve names a replica's actor class after its application and deployment (the config's
# deployment is the app module's, tests/unit/test_ray_manifests.py).
_APP = SERVE_CONFIG["applications"][0]
REPLICA_CLASS = f"ServeReplica:{_APP['name']}:{_APP['deployments'][0]['name']}"


@dataclass
class RayServe:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def ray_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServe]:
    tmp = tmp_path_factory.mktemp("ray")
    port = free_port()
    log_path = tmp / "serve-ray.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.ray_serve", "--nodes", str(NODES), "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "VAE_LOG_FORMAT": "json"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = RayServe(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while SERVING not in served.log():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve-ray did not come up:\n{served.log()[-5000:]}")
        time.sleep(0.5)
    yield served
    if process.poll() is None:  # the last test stops it; this is for a run cut short
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()  # its nodes get SIGTERM from the kernel (parent-death signal)
            process.wait()


@pytest.fixture(scope="module")
def plain(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(default_model_dir, tmp_path_factory.mktemp("plain"), workers=1)
    yield server
    server.stop()


def alive_replicas() -> list[dict]:
    from ray.util.state import list_actors

    actors = list_actors(
        address=DASHBOARD,
        filters=[("class_name", "=", REPLICA_CLASS), ("state", "=", "ALIVE")],
        raise_on_missing_output=False,
    )
    return [{"node_id": actor.node_id, "pid": actor.pid} for actor in actors]


def test_replicas_run_on_both_nodes(ray_serve: RayServe) -> None:
    from ray.util.state import list_nodes

    nodes = {n.node_id: n.node_ip for n in list_nodes(address=DASHBOARD) if n.state == "ALIVE"}
    assert sorted(nodes.values()) == [node_ip(i) for i in range(NODES)]
    replicas = alive_replicas()
    assert len(replicas) == NODES
    assert {replica["node_id"] for replica in replicas} == set(nodes)


# Every route but /metrics, whose counts differ by design (each server counts its own requests).
SEEDED_REQUESTS: list[tuple[str, str, dict, dict]] = [
    ("GET", "/model", {}, {}),
    ("GET", "/healthz", {}, {}),
    ("GET", "/readyz", {}, {}),
    ("GET", "/explorer", {}, {}),
    ("GET", "/explorer/assets/explorer.js", {}, {}),
    ("GET", "/docs/assets/swagger-ui.css", {}, {}),
    ("POST", "/models/mnist-vae/sample", {"json": {"n": 2, "seed": 5}}, {}),
    ("GET", "/v2", {}, {}),
    ("GET", "/v2/health/live", {}, {}),
    ("GET", "/v2/health/ready", {}, {}),
    ("GET", "/v2/models/mnist-vae-encoder/ready", {}, {}),
    ("GET", "/v2/models/mnist-vae-encoder/config", {}, {}),
    ("POST", "/v2/repository/index", {"json": {}}, {}),
    ("GET", "/openapi.json", {}, {}),
    ("GET", "/docs", {}, {}),
    ("POST", "/sample", {"json": {"n": 3, "seed": 7}}, {}),
    ("POST", "/sample", {"json": {"n": 4, "seed": 7}}, {"Accept": "image/png"}),
    ("POST", "/decode", {"json": {"z": [[0.1] * 30, [-0.5] * 30]}}, {}),
    ("POST", "/interpolate", {"json": {"start_z": [1.0] * 30, "end_z": [-1.0] * 30}}, {}),
    ("POST", "/encode", {"json": {"images": [[0.5] * 784], "seed": 3}}, {}),
    ("POST", "/score", {"json": {"images": [[0.2] * 784], "seed": 3, "samples": 4}}, {}),
    (
        "POST",
        "/encode",
        {"content": np.full((2, 28, 28), 0.25, np.float32).tobytes(), "params": {"seed": 1}},
        {"Content-Type": "application/octet-stream", "Accept": "application/x-npy"},
    ),
    ("GET", "/v2/models/mnist-vae-decoder", {}, {}),
    (
        "POST",
        "/v2/models/mnist-vae-decoder/infer",
        {
            "json": {
                "inputs": [{"name": "z", "shape": [1, 30], "datatype": "FP32", "data": [0.3] * 30}]
            }
        },
        {},
    ),
    # errors come out the same way too
    ("POST", "/decode", {"json": {"z": [[1e30] * 30]}}, {}),
    ("POST", "/sample", {"json": {"n": 0}}, {}),
    ("GET", "/nowhere", {}, {}),
    ("POST", "/v2/models/nope/infer", {"json": {"inputs": []}}, {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), SEEDED_REQUESTS)
def test_every_route_answers_as_the_plain_server(
    ray_serve: RayServe, plain: Server, method: str, path: str, body: dict, headers: dict
) -> None:
    ours = httpx.request(method, ray_serve.base_url + path, headers=headers, timeout=30, **body)
    theirs = httpx.request(method, plain.base_url + path, headers=headers, timeout=30, **body)
    assert ours.status_code == theirs.status_code, ours.text[:300]
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")
    assert ours.content == theirs.content


def test_a_killed_replica_is_replaced_under_load(ray_serve: RayServe) -> None:
    body = {"images": [[0.5] * 784], "seed": 1}
    outcomes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=ray_serve.base_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    outcomes.append(client.post("/encode", json=body).status_code)
                except httpx.TransportError:
                    outcomes.append(0)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        victim = alive_replicas()[0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = len(outcomes)
        deadline = time.monotonic() + 120
        while True:  # Serve notices the dead actor and starts a replacement
            replicas = alive_replicas()
            pids = {replica["pid"] for replica in replicas}
            if len(replicas) == NODES and victim["pid"] not in pids:
                break
            assert time.monotonic() < deadline, f"no replacement replica: {replicas}"
            time.sleep(1)
        recovered_at = len(outcomes)
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    after = outcomes[recovered_at:]
    during = outcomes[killed_at:recovered_at]
    failed = [status for status in outcomes if status != 200]
    print(
        f"\nreplica kill: {len(outcomes)} requests, {len(failed)} failed "
        f"({sorted(set(failed))}); {recovered_at - killed_at} during the replacement"
    )
    assert after, "no request was sent after the replacement"
    assert all(status == 200 for status in after)
    assert 200 in during  # the other node's replica went on answering meanwhile
    assert len(failed) <= recovered_at - killed_at + 8  # only those caught by the kill


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# After every test that uses the cluster (tests run in file order): it stops it.
def test_sigterm_stops_serve_and_every_ray_process(ray_serve: RayServe) -> None:
    started = descendants(ray_serve.process.pid)
    replicas = {replica["pid"] for replica in alive_replicas()}
    assert replicas <= started  # the replicas are among the processes the launcher started
    ray_serve.process.send_signal(signal.SIGTERM)
    assert ray_serve.process.wait(90) == 0, ray_serve.log()[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{ray_serve.base_url}/healthz", timeout=5)
    deadline = time.monotonic() + 10  # the last ones may still be exiting
    while (left := [pid for pid in started if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []


def test_a_port_taken_by_another_cluster_is_refused_in_one_line(tmp_path: Path) -> None:
    """Not connected to (and later shut down with) whatever already listens there."""
    from service.ray_serve.cluster import GCS_PORT

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last cluster's port
        taken.bind((HEAD_IP, GCS_PORT))
        taken.listen()
        run = subprocess.run(
            [sys.executable, "-m", "service.ray_serve", "--port", str(free_port())],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert f"error: {HEAD_IP}:{GCS_PORT} is already in use" in run.stderr
    assert "Traceback" not in run.stderr
