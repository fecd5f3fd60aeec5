"""A model repository (`VAE_MODEL_REPOSITORY`): every model in it is served beside the default
(`VAE_MODEL_DIR`), each at `/models/{name}/...` and as two OIP v2 models, with its own image
shape and latent size; the plain routes keep serving the default; `/model` lists them all."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.runtime.errors import ModelLoadError
from service.runtime.repository import check_unique_names, model_dirs
from tests.api.conftest import LATENT_DIM
from tests.fixtures.tiny_model import build_tiny_model

WIDE = (16, 20)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    build_tiny_model(root / "wide", latent_dim=3, image_shape=WIDE, name="wide-vae", seed=1)
    build_tiny_model(root / "small", latent_dim=2, name="small-vae", seed=2)
    (root / "notes").mkdir()  # not a model directory: ignored
    return root


@contextmanager
def started(model_dir: Path, repository: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=model_dir, model_repository=repository, workers=1, access_log=False
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, repository: Path) -> Iterator[TestClient]:
    with started(tiny_model_dir, repository) as client:
        yield client


def test_model_lists_every_served_model_and_marks_the_default(client):
    served = client.get("/model").json()["served"]
    assert [(m["name"], m["image_shape"], m["latent_dim"], m["default"]) for m in served] == [
        ("tiny-vae", [28, 28], LATENT_DIM, True),
        ("small-vae", [28, 28], 2, False),
        ("wide-vae", list(WIDE), 3, False),
    ]
    assert client.get("/model").json()["manifest"]["name"] == "tiny-vae"


def test_named_routes_serve_their_own_model_and_plain_routes_the_default(client):
    images = np.random.default_rng(0).random((2, 784)).round(3).tolist()
    plain = client.post("/encode", json={"images": images, "seed": 1}).json()
    named = client.post("/models/tiny-vae/encode", json={"images": images, "seed": 1}).json()
    assert named == plain
    small = client.post("/models/small-vae/encode", json={"images": images}).json()
    assert np.asarray(small["mu"]).shape == (2, 2)
    wide_images = np.random.default_rng(1).random((2, *WIDE)).round(3).tolist()
    wide = client.post("/models/wide-vae/encode", json={"images": wide_images}).json()
    assert np.asarray(wide["mu"]).shape == (2, 3)
    decoded = client.post("/models/wide-vae/decode", json={"z": [[0.0, 0.0, 0.0]]}).json()
    assert len(decoded["images"][0]) == WIDE[0] * WIDE[1]
    sample = client.post("/models/small-vae/sample", json={"n": 2, "seed": 3}).json()
    assert np.asarray(sample["z"]).shape == (2, 2)
    # The default model's image shape is refused by the wide model, naming its shape.
    refused = client.post("/models/wide-vae/encode", json={"images": images})
    assert refused.status_code == 422
    assert "16x20" in refused.json()["error"]["message"]


def test_an_unknown_model_is_a_404_listing_the_served_ones(client):
    answer = client.post("/models/nope/encode", json={"images": [[0.0] * 784]})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "not_found"
    assert "'nope'" in error["message"]
    assert "wide-vae" in error["message"]


def test_every_model_is_three_oip_models(client):
    index = client.post("/v2/repository/index").json()
    assert [entry["name"] for entry in index] == [
        "small-vae-decoder",
        "small-vae-encoder",
        "small-vae-score",
        "tiny-vae-decoder",
        "tiny-vae-encoder",
        "tiny-vae-score",
        "wide-vae-decoder",
        "wide-vae-encoder",
        "wide-vae-score",
    ]
    assert {entry["state"] for entry in index} == {"READY"}
    metadata = client.get("/v2/models/wide-vae-encoder").json()
    assert metadata["inputs"][0]["shape"] == [-1, WIDE[0] * WIDE[1]]
    body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}
    answer = client.post("/v2/models/wide-vae-decoder/infer", json=body).json()
    assert answer["outputs"][0]["shape"] == [1, WIDE[0] * WIDE[1]]


def test_the_docs_list_the_served_models(client):
    doc = client.get("/openapi.json").json()
    (parameter,) = [
        p for p in doc["paths"]["/models/{model}/encode"]["post"]["parameters"] if p["in"] == "path"
    ]
    assert parameter["schema"]["enum"] == ["small-vae", "tiny-vae", "wide-vae"]
    assert "404" in doc["paths"]["/models/{model}/decode"]["post"]["responses"]


def test_the_default_inside_the_repository_is_served_once(repository, tiny_model_dir):
    dirs = model_dirs(repository / "wide", repository)
    assert dirs == [repository / "wide", repository / "small"]
    assert model_dirs(tiny_model_dir, None) == [tiny_model_dir]


def test_two_directories_with_one_name_are_refused_naming_both(repository, tmp_path):
    twin = shutil.copytree(repository / "small", tmp_path / "twin")
    with pytest.raises(ModelLoadError, match="'small-vae' is already served from"):
        check_unique_names([repository / "small", twin])


def test_a_repository_without_models_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="no model directory"):
        model_dirs(tiny_model_dir, tmp_path)
    with pytest.raises(ModelLoadError, match="not a directory"):
        model_dirs(tiny_model_dir, tmp_path / "missing")


def test_a_long_unknown_model_name_is_not_echoed_whole(client):
    answer = client.post(f"/models/{'x' * 5000}/encode", json={"images": [[0.0] * 784]})
    assert answer.status_code == 404
    assert len(answer.json()["error"]["message"]) < 200
