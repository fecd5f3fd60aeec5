"""The two committed models served side by side by a real server from the repository
`models/`: the default (28x28, latent 30) on the plain routes, the second (32x32, latent 16)
by name, both as OIP v2 models for `tritonclient`."""

from __future__ import annotations

import httpx
import numpy as np
import tritonclient.http as triton

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import ServerFactory


def test_both_committed_models_are_served_side_by_side(server_factory: ServerFactory):
    server = server_factory(VAE_MODEL_REPOSITORY=str(REPO_ROOT / "models"))
    base = server.base_url
    served = httpx.get(f"{base}/model").json()["served"]
    shapes = {m["name"]: (m["image_shape"], m["latent_dim"], m["default"]) for m in served}
    assert shapes["mnist32-vae"] == ([32, 32], 16, False)
    assert shapes["tiny-vae"][2]  # the e2e fixture's model stays the default
    digit = np.zeros((32, 32))
    digit[6:26, 14:18] = 1.0  # a '1' on the 32x32 canvas
    answer = httpx.post(f"{base}/models/mnist32-vae/encode", json={"images": [digit.tolist()]})
    assert answer.status_code == 200, answer.text
    mu = np.asarray(answer.json()["mu"])
    assert mu.shape == (1, 16)
    decoded = httpx.post(f"{base}/models/mnist32-vae/decode", json={"z": mu.tolist()}).json()
    assert len(decoded["images"][0]) == 1024
    default = httpx.post(f"{base}/models/mnist-vae/sample", json={"n": 1, "seed": 0}).json()
    assert len(default["images"][0]) == 784

    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    names = {entry["name"] for entry in client.get_model_repository_index()}
    assert {"mnist32-vae-encoder", "mnist32-vae-decoder", "mnist-vae-encoder"} <= names
    images = digit.reshape(1, 1024).astype(np.float32)
    infer_input = triton.InferInput("images", [1, 1024], "FP32")
    infer_input.set_data_from_numpy(images)
    result = client.infer("mnist32-vae-encoder", [infer_input])
    np.testing.assert_allclose(result.as_numpy("mu"), mu, atol=1e-5)
    client.close()
