"""Drive every inference route of a running service and check the answers (stdlib only).

Used by `scripts/docker-test.sh` against the container; works against any running server:

    python3 scripts/container_smoke.py --url http://127.0.0.1:8000 [--api-key KEY]

Exits non-zero with a message naming the first check that failed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
import sys
import urllib.error
import urllib.request
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_SIZE = 784


class SmokeCheckError(Exception):
    """A route answered, but not what the API promises."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeCheckError(message)


class Client:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        accept: str = "application/json",
        with_key: bool = True,
    ) -> tuple[int, str, bytes]:
        """Return (status, content type, body); HTTP errors are answers, not exceptions."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if with_key and self.api_key:
            req.add_header("X-API-Key", self.api_key)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, ctype, payload = self.request(method, path, body)
        check(status == 200, f"{method} {path}: status {status}: {payload[:300]!r}")
        check("json" in ctype, f"{method} {path}: content type {ctype!r}, expected JSON")
        return json.loads(payload)


def check_matrix(value: Any, rows: int, cols: int, name: str) -> list[list[float]]:
    check(isinstance(value, list) and len(value) == rows, f"{name}: expected {rows} rows")
    for row in value:
        check(isinstance(row, list) and len(row) == cols, f"{name}: expected rows of {cols}")
        check(all(math.isfinite(x) for x in row), f"{name}: non-finite value")
    return value


def check_images(value: Any, rows: int, name: str) -> None:
    images = check_matrix(value, rows, IMAGE_SIZE, name)
    check(all(0.0 <= x <= 1.0 for row in images for x in row), f"{name}: pixel outside [0, 1]")


def test_images() -> list[list[float]]:
    """Two simple strokes (a vertical bar, a horizontal bar): valid 28x28 inputs in [0, 1]."""
    pixels = [(r, c) for r in range(28) for c in range(28)]
    vertical = [1.0 if 12 <= c <= 15 and 4 <= r <= 23 else 0.0 for r, c in pixels]
    horizontal = [1.0 if 12 <= r <= 15 and 4 <= c <= 23 else 0.0 for r, c in pixels]
    return [vertical, horizontal]


def png_size(payload: bytes) -> tuple[int, int]:
    check(payload[:8] == PNG_MAGIC, "not a PNG (bad signature)")
    width, height = struct.unpack(">II", payload[16:24])
    return width, height


def run(client: Client) -> None:
    status, _, payload = client.request("GET", "/readyz")
    check(status == 200, f"/readyz: status {status}: {payload[:200]!r}")
    status, _, _ = client.request("GET", "/healthz")
    check(status == 200, f"/healthz: status {status}")

    model = client.json("GET", "/model")
    d = model.get("latent_dim")
    check(isinstance(d, int) and d > 0, f"/model: no positive integer latent_dim in {model}")
    print(f"ok  /model latent_dim={d} providers={model.get('providers')}")

    images = test_images()
    enc = client.json("POST", "/encode", {"images": images, "seed": 0})
    mu = check_matrix(enc.get("mu"), 2, d, "encode.mu")
    sigma = check_matrix(enc.get("sigma"), 2, d, "encode.sigma")
    check_matrix(enc.get("z"), 2, d, "encode.z")
    check(all(s >= 0 for row in sigma for s in row), "encode.sigma: negative value")
    again = client.json("POST", "/encode", {"images": images, "seed": 0})
    check(again["z"] == enc["z"], "encode: same seed gave a different z")
    print("ok  /encode mu, sigma, z shapes [2, d]; sigma >= 0; seeded z reproducible")

    dec = client.json("POST", "/decode", {"z": mu})
    check_images(dec.get("images"), 2, "decode.images")
    status, ctype, png = client.request("POST", "/decode", {"z": mu[:1]}, accept="image/png")
    check(status == 200 and ctype.startswith("image/png"), f"/decode png: {status} {ctype}")
    png_size(png)
    print("ok  /decode images [2, 784] in [0, 1]; Accept: image/png gives a PNG")

    sample = client.json("POST", "/sample", {"n": 4, "seed": 7})
    check_matrix(sample.get("z"), 4, d, "sample.z")
    check_images(sample.get("images"), 4, "sample.images")
    same = client.json("POST", "/sample", {"n": 4, "seed": 7})
    check(same["images"] == sample["images"], "sample: same seed gave different images")
    status, ctype, png = client.request("POST", "/sample", {"n": 16, "seed": 7}, "image/png")
    check(status == 200 and ctype.startswith("image/png"), f"/sample png: {status} {ctype}")
    width, height = png_size(png)
    check(width >= 28 * 4 and height >= 28 * 4, f"/sample png grid too small: {width}x{height}")
    print(f"ok  /sample z [4, d], images [4, 784], seeded; PNG grid {width}x{height}")

    for method in ("linear", "slerp"):
        body = {"start_z": mu[0], "end_z": mu[1], "steps": 5, "method": method}
        interp = client.json("POST", "/interpolate", body)
        path = check_matrix(interp.get("z"), 5, d, f"interpolate.{method}.z")
        check_images(interp.get("images"), 5, f"interpolate.{method}.images")
        for got, want, end in ((path[0], mu[0], "start"), (path[-1], mu[1], "end")):
            gap = max(abs(a - b) for a, b in zip(got, want, strict=True))
            check(gap < 1e-4, f"interpolate.{method}: {end} differs from the input by {gap}")
    from_images = client.json(
        "POST", "/interpolate", {"start": images[0], "end": images[1], "steps": 3}
    )
    check_images(from_images.get("images"), 3, "interpolate(images).images")
    status, ctype, gif = client.request(
        "POST", "/interpolate", {"start": images[0], "end": images[1], "steps": 4}, "image/gif"
    )
    check(status == 200 and ctype.startswith("image/gif"), f"/interpolate gif: {status} {ctype}")
    check(gif[:6] in (b"GIF87a", b"GIF89a"), "/interpolate gif: not a GIF")
    print("ok  /interpolate linear + slerp ends equal the inputs; images as ends; GIF")

    status, _, payload = client.request("POST", "/decode", {"z": [[0.0] * (d + 1)]})
    check(400 <= status < 500, f"/decode wrong latent dim: expected 4xx, got {status}")
    if client.api_key:
        status, _, _ = client.request("POST", "/sample", {"n": 1}, with_key=False)
        check(status == 401, f"/sample without the API key: expected 401, got {status}")
        print("ok  bad input is a 4xx; the API key from the environment is enforced")
    else:
        print("ok  bad input is a 4xx")

    # The page's files are package data: a 404 here means the image's install left them out.
    status, ctype, page = client.request("GET", "/explorer", accept="text/html", with_key=False)
    check(status == 200 and ctype.startswith("text/html"), f"/explorer: {status} {ctype}")
    assets = re.findall(r'(?:src|href)="(/explorer/assets/[^"]+)"', page.decode())
    check(len(assets) >= 2, "/explorer: the page names none of its assets")
    for asset in assets:
        status, _, _ = client.request("GET", asset, accept="*/*", with_key=False)
        check(status == 200, f"{asset}: status {status}")
    print(f"ok  /explorer and its {len(assets)} assets, without the API key")

    status, ctype, metrics = client.request("GET", "/metrics", accept="text/plain")
    check(status == 200 and b"# TYPE" in metrics, f"/metrics: status {status}, not Prometheus")
    print("ok  /metrics")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    try:
        run(Client(args.url, args.api_key, args.timeout))
    except (SmokeCheckError, OSError, ValueError, KeyError) as err:
        print(f"FAIL {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("container smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
