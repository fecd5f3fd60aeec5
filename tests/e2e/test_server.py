"""End to end: the real uvicorn server, driven over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image

from tests.e2e.conftest import REPO_ROOT, SERVER_COMMAND, free_port, server_env

LATENT_DIM = 4  # the tiny model
pytestmark = pytest.mark.slow


def _post(base_url: str, path: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", json=body, headers=headers, timeout=30)


def test_every_route_answers(server):
    url = server.base_url
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").status_code == 200
    model = httpx.get(f"{url}/model").json()
    assert model["latent_dim"] == LATENT_DIM
    assert "CPUExecutionProvider" in model["providers"]
    image = np.random.default_rng(0).random((28, 28)).tolist()
    encoded = _post(url, "/encode", {"images": [image], "seed": 1}).json()
    assert np.asarray(encoded["z"]).shape == (1, LATENT_DIM)
    decoded = _post(url, "/decode", {"z": encoded["mu"]}).json()
    assert np.asarray(decoded["images"]).shape == (1, 784)
    png = _post(url, "/sample", {"n": 4, "seed": 0}, Accept="image/png")
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    gif = _post(
        url,
        "/interpolate",
        {"start": image, "end_z": [1.0] * LATENT_DIM, "steps": 5},
        Accept="image/gif",
    )
    assert Image.open(io.BytesIO(gif.content)).n_frames == 5
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200
    assert not re.search(r"https?://", docs.text)
    assert httpx.get(f"{url}/openapi.json").json()["openapi"] == "3.0.3"
    bad = _post(url, "/decode", {"z": [[0.0] * 3]})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "z[0]"
    metrics = httpx.get(f"{url}/metrics").text
    assert 'vae_http_requests_total{method="POST",route="/encode",status="200"}' in metrics
    assert "vae_inference_batch_rows_bucket" in metrics


def test_concurrent_seeded_requests_equal_the_same_requests_sent_alone(server):
    url = server.base_url
    rng = np.random.default_rng(1)
    requests = []
    for i in range(24):
        if i % 3 == 0:
            requests.append(("/sample", {"n": 1 + i % 5, "seed": i}))
        elif i % 3 == 1:
            images = rng.random((1 + i % 4, 784)).round(3).tolist()
            requests.append(("/encode", {"images": images, "seed": 1000 + i}))
        else:
            requests.append(
                ("/decode", {"z": rng.standard_normal((1 + i % 6, LATENT_DIM)).tolist()})
            )
    alone = [_post(url, path, body).json() for path, body in requests]
    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(lambda req: _post(url, *req).json(), requests * 2))
    assert together == alone * 2


def test_declared_oversized_body_is_refused_without_sending_it(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413")


def test_a_body_arriving_in_pieces_is_read_whole(server):
    body = orjson.dumps({"images": np.full((2, 784), 0.25).tolist(), "seed": 4})
    whole = _post(server.base_url, "/encode", orjson.loads(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(
            b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), 4096):  # separate packets: several ASGI messages
            sock.sendall(body[start : start + 4096])
            time.sleep(0.02)
        status, answer = _read_response(sock)
    assert (status, whole.status_code) == (200, 200)
    assert orjson.loads(answer) == whole.json()


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(server_factory):
    server = server_factory(workers=1)
    body = orjson.dumps({"z": [[0.25] * LATENT_DIM] * 3})
    expected = httpx.post(
        f"{server.base_url}/decode", content=body, headers={"Content-Type": "application/json"}
    ).json()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        # The server says 100 Continue when the route starts reading the body: the request
        # is now in flight inside the app.
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100")
        server.process.send_signal(15)
        sock.sendall(body)
        status, answer = _read_response(sock)
    assert status == 200
    assert json.loads(answer) == expected
    assert server.process.wait(timeout=60) == 0
    assert "unhandled" not in server.log()


def test_two_workers_metrics_add_up_and_shutdown_is_clean(server_factory):
    server = server_factory(workers=2)
    sent = 30
    for i in range(sent):
        # a fresh connection each time, so the kernel spreads them over both workers
        response = httpx.post(f"{server.base_url}/sample", json={"n": 1, "seed": i}, timeout=30)
        assert response.status_code == 200
    for _ in range(6):  # whichever worker answers the scrape, it reports every worker's count
        text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith(
                'vae_http_requests_total{method="POST",route="/sample",status="200"}'
            )
        )
        assert float(line.rsplit(" ", 1)[1]) == sent
    access = [json.loads(line) for line in server.log().splitlines() if '"route":"/sample"' in line]
    assert len(access) == sent
    assert server.stop() == 0
    assert not list(server.tmp_dir.glob("vae-metrics-*")), "launcher left its metrics directory"


def _run_to_exit(model_dir, tmp_path, workers: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        SERVER_COMMAND,
        cwd=REPO_ROOT,
        env=server_env(model_dir, tmp_path, free_port(), workers, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tampered_model_refuses_to_start_with_one_line_naming_the_file(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    with open(model_dir / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    result = _run_to_exit(model_dir, tmp_path, workers=2)
    assert result.returncode == 3
    assert "decoder.onnx: sha256 mismatch" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_that_fail_to_start_make_the_launcher_exit_3(tiny_model_dir, tmp_path):
    """uvicorn.run itself would exit 0 here, hiding the failure from supervisors."""
    # The checksums still match, so only a worker loading the graphs can find the mismatch.
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    manifest = json.loads((model_dir / "model.json").read_text())
    manifest["latent_dim"] = 5
    (model_dir / "model.json").write_text(json.dumps(manifest))
    result = _run_to_exit(model_dir, tmp_path, workers=2)
    assert result.returncode == 3
    assert "encoder.onnx: manifest shape of" in result.stderr
    assert not list(tmp_path.glob("vae-metrics-*")), "launcher left its metrics directory"


def _rehashed(model_dir: Path, manifest: dict) -> None:
    """Write `manifest` with sha256s that match the files as they now are."""
    for graph in ("encoder", "decoder"):
        data = (model_dir / manifest[graph]["file"]).read_bytes()
        manifest[graph]["sha256"] = hashlib.sha256(data).hexdigest()
    (model_dir / "model.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("breakage", ["corrupt-onnx", "image-shape"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_broken_model_with_matching_checksums_is_one_line_and_exit_3_before_any_worker(
    tiny_model_dir, tmp_path, breakage, workers
):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    manifest = json.loads((model_dir / "model.json").read_text())
    if breakage == "corrupt-onnx":
        (model_dir / manifest["encoder"]["file"]).write_bytes(b"not an onnx graph" * 100)
    else:
        manifest["image_shape"] = [27, 27]
    _rehashed(model_dir, manifest)
    result = _run_to_exit(model_dir, tmp_path, workers=workers)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cannot serve {model_dir}: ")
    assert "encoder.onnx" in lines[0]
    assert "Uvicorn running" not in result.stdout + result.stderr


def test_unknown_provider_is_a_configuration_error_in_one_line(tiny_model_dir, tmp_path):
    result = _run_to_exit(tiny_model_dir, tmp_path, workers=2, VAE_PROVIDERS="NoSuchProvider")
    assert result.returncode == 2
    assert "unknown execution provider 'NoSuchProvider'" in result.stderr
    assert "Traceback" not in result.stderr


def test_blank_api_key_is_refused_instead_of_turning_auth_off(tiny_model_dir, tmp_path):
    result = _run_to_exit(tiny_model_dir, tmp_path, workers=1, VAE_API_KEY="  ")
    assert result.returncode == 2
    assert "api_key" in result.stderr
    assert "must not be empty or blank" in result.stderr


def test_help_prints_usage_and_starts_nothing():
    result = subprocess.run(
        [*SERVER_COMMAND, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "usage: vae-serve" in result.stdout
    assert "VAE_" in result.stdout


def test_sigterm_to_make_serve_stops_the_server_it_started(tiny_model_dir, tmp_path):
    """What a supervisor does: signal the process it started (`make serve`), not its child."""
    port = free_port()
    env = server_env(tiny_model_dir, tmp_path, port, workers=1)
    make = subprocess.Popen(
        ["make", "--no-print-directory", "serve", "HOST=127.0.0.1", f"PORT={port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("make serve did not become ready")
        make.send_signal(signal.SIGTERM)
        make.wait(timeout=60)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server outlived make serve"
    finally:
        if make.poll() is None:
            make.kill()


@pytest.mark.parametrize("problem", ["broken-model", "duplicate-name"])
def test_a_bad_model_in_the_repository_refuses_the_start_in_one_line_naming_it(
    tiny_model_dir, tmp_path, problem
):
    repository = tmp_path / "repository"
    other = shutil.copytree(tiny_model_dir, repository / "other")
    manifest = json.loads((other / "model.json").read_text())
    if problem == "broken-model":
        manifest["name"] = "other-vae"
        (other / manifest["decoder"]["file"]).write_bytes(b"not an onnx graph" * 100)
    _rehashed(other, manifest)
    result = _run_to_exit(tiny_model_dir, tmp_path, workers=1, VAE_MODEL_REPOSITORY=str(repository))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    if problem == "broken-model":
        assert lines[0].startswith(f"cannot serve {other}: ")
        assert "decoder.onnx" in lines[0]
    else:
        assert lines[0].startswith(f"cannot serve {repository}: ")
        assert "'tiny-vae' is already served from" in lines[0]
