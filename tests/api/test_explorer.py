"""/explorer in-process: the page and its assets load with their content types, offline (no
URL off the server), without the API key even when one is set, outside the OpenAPI schema;
the API's description links to it; its test digits are exactly the MNIST fixture's."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np

from service.api.routes.explorer import (
    ASSETS_PATH,
    CONTENT_SECURITY_POLICY,
    EXPLORER_PATH,
)
from service.explorer import DIGITS_FILE, EXPLORER_DIR
from tests.conftest import REPO_ROOT

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mnist_test_digits.npy"
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
    ".json": ("application/json",),
}


def page_links(html: str) -> list[str]:
    """Every URL the page names (its assets, and its link to /docs)."""
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def page_assets(html: str) -> list[str]:
    return [link for link in page_links(html) if link.startswith(ASSETS_PATH + "/")]


def test_the_page_and_its_assets_load_from_this_server_only(client):
    page = client.get(EXPLORER_PATH)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert not re.search(r"https?://", page.text)
    assert set(page_links(page.text)) - set(page_assets(page.text)) == {"/docs"}
    assets = page_assets(page.text)
    assert {f"{ASSETS_PATH}/explorer.js", f"{ASSETS_PATH}/explorer.css"} <= set(assets)
    for asset in [*assets, f"{ASSETS_PATH}/digits.json"]:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        media = answer.headers["content-type"].split(";")[0]
        assert media in CONTENT_TYPES[Path(asset).suffix], (asset, media)
        if asset.endswith(".js"):
            # Everything the script fetches is on this server: no URL with a scheme but SVG's
            # namespace, which names and fetches nothing.
            assert re.findall(r"https?://[^\"']+", answer.text) == ["http://www.w3.org/2000/svg"]
    assert client.get(f"{ASSETS_PATH}/nothing.js").status_code == 404


def test_the_page_is_public_when_an_api_key_is_set(make_client):
    with make_client(api_key="k3y") as client:
        assert client.get("/model").status_code == 401  # the key is enforced ...
        page = client.get(EXPLORER_PATH)
        assert page.status_code == 200  # ... but not on the page and its assets
        for asset in page_assets(page.text):
            assert client.get(asset).status_code == 200, asset


def test_the_page_is_not_in_the_schema_and_the_description_links_it(client):
    doc = client.get("/openapi.json").json()
    assert not [path for path in doc["paths"] if path.startswith(EXPLORER_PATH)]
    assert f"[Latent explorer]({EXPLORER_PATH})" in doc["info"]["description"]


def test_the_model_answer_has_what_the_page_reads(client):
    info = client.get("/model").json()
    manifest = info["manifest"]
    assert len(manifest["image_shape"]) == 2
    assert len(manifest["metrics"]["kl_per_dim"]) == info["latent_dim"]
    assert {"max_n", "max_steps"} <= set(info["limits"])


def test_the_test_digits_are_the_mnist_fixtures_one_per_class():
    shipped = json.loads(DIGITS_FILE.read_text())
    fixture = np.load(FIXTURE, allow_pickle=False)
    assert shipped["shape"] == [28, 28]
    assert [d["label"] for d in shipped["digits"]] == list(range(10))
    assert np.array_equal(np.array([d["pixels"] for d in shipped["digits"]]), fixture)


def test_every_file_of_the_page_ships_with_the_package():
    """The page's files are package data: an installed service (the Docker image's) has them
    only if pyproject.toml declares them."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools.get("package-data", {}).get("service.explorer", [])
    declared = {path for pattern in patterns for path in EXPLORER_DIR.glob(pattern)}
    files = {
        path
        for path in EXPLORER_DIR.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    assert files - declared == set()
