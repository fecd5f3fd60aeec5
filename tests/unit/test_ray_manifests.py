"""deploy/ray: the Serve config is valid for Ray's own schema and agrees with the service
(settings that exist, the image's paths, admission bound, one thread per CPU); the KubeRay
RayService embeds exactly that config; `make serve-ray`'s local changes to it are only the
ones a single machine needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import ENV_PREFIX, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_YAML = REPO_ROOT / "deploy" / "ray" / "serve.yaml"
RAYSERVICE_YAML = REPO_ROOT / "deploy" / "ray" / "rayservice.yaml"


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_YAML.read_text())


def the_deployment(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (app,) = config["applications"]
    (deployment,) = app["deployments"]
    return app, deployment


def dockerfile_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", (REPO_ROOT / "Dockerfile").read_text())
    assert match, name
    return match.group(1)


def test_the_serve_config_validates_against_rays_schema_and_imports():
    pytest.importorskip("ray.serve")
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from service.ray_serve.app import DEPLOYMENT_NAME

    schema = ServeDeploySchema.model_validate(serve_config())
    (app,) = schema.applications
    module, attribute = app.import_path.split(":")
    assert isinstance(getattr(__import__(module, fromlist=[attribute]), attribute), Application)
    assert [d.name for d in app.deployments] == [DEPLOYMENT_NAME]
    with pytest.raises(ValueError, match="max_ongoing_requests"):  # the schema does check
        ServeDeploySchema.model_validate(with_deployment_value("max_ongoing_requests", 0))


def test_the_serve_config_has_no_key_ray_would_ignore():
    """Ray's schema lets unknown keys through (a typo would silently be a default)."""
    pytest.importorskip("ray.serve")
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    config = serve_config()
    app, deployment = the_deployment(config)
    assert set(config) <= set(ServeDeploySchema.model_fields)
    assert set(config["http_options"]) <= set(HTTPOptionsSchema.model_fields)
    assert set(app) <= set(ServeApplicationSchema.model_fields)
    assert set(deployment) <= set(DeploymentSchema.model_fields)
    assert set(deployment["autoscaling_config"]) <= set(AutoscalingConfig.model_fields)


def with_deployment_value(key: str, value: object) -> dict[str, Any]:
    config = serve_config()
    the_deployment(config)[1][key] = value
    return config


def test_the_replicas_settings_exist_and_fit_the_image():
    app, deployment = the_deployment(serve_config())
    env = app["runtime_env"]["env_vars"]
    fields = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items()})
    assert env[f"{ENV_PREFIX}MODEL_DIR"] == dockerfile_env("VAE_MODEL_DIR")
    # One ONNX Runtime thread per CPU Ray gives a replica.
    assert deployment["ray_actor_options"]["num_cpus"] == settings.intra_op_threads == 1
    # Serve sends a replica no more than the app's own admission bound lets in.
    assert deployment["max_ongoing_requests"] == settings.max_in_flight


def test_the_rayservice_embeds_the_serve_config_and_runs_the_image_as_its_user():
    service = yaml.safe_load(RAYSERVICE_YAML.read_text())
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == serve_config()
    cluster = service["spec"]["rayClusterConfig"]
    lock = (REPO_ROOT / "requirements" / "ray.txt").read_text()
    assert f"ray=={cluster['rayVersion']} " in lock
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in cluster["workerGroupSpecs"]
    ]
    uid = int(re.search(r"--uid (\d+)", (REPO_ROOT / "Dockerfile").read_text()).group(1))
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        (container,) = pod["containers"]
        assert container["image"].startswith("vae-service-ray:")
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in pods[0]["containers"][0]["ports"]}
    assert ports["serve"] == serve_config()["http_options"]["port"]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_serve_ray_changes_only_what_one_machine_needs():
    from service.ray_serve.__main__ import DEFAULT_MODEL_DIR, local_config

    config = serve_config()
    original = serve_config()
    env = {"VAE_API_KEY": "k", "PATH": "/bin", "VAE_MAX_N": "9", "VAE_MAX_IN_FLIGHT": "32"}
    local = local_config(config, "127.0.0.1", 8123, 3, env)
    assert config == original  # not modified in place
    assert local["proxy_location"] == "HeadOnly"  # one proxy: the nodes share the port
    assert local["http_options"] == {**original["http_options"], "host": "127.0.0.1", "port": 8123}
    app, deployment = the_deployment(local)
    scaling = deployment["autoscaling_config"]
    assert scaling["min_replicas"] == 3 <= scaling["max_replicas"]
    replica_env = app["runtime_env"]["env_vars"]
    assert (replica_env["VAE_API_KEY"], replica_env["VAE_MAX_N"]) == ("k", "9")
    assert "PATH" not in replica_env
    assert replica_env["VAE_MODEL_DIR"] == str(DEFAULT_MODEL_DIR)
    assert (DEFAULT_MODEL_DIR / "model.json").is_file()
    # Serve's per-replica bound follows the app's own (VAE_MAX_IN_FLIGHT) as the replicas get it.
    assert deployment["max_ongoing_requests"] == 32
    # Everything else is the file's.
    _, original_deployment = the_deployment(original)
    changed = {"autoscaling_config", "max_ongoing_requests"}
    assert {k: v for k, v in deployment.items() if k not in changed} == {
        k: v for k, v in original_deployment.items() if k not in changed
    }
    for key in ("proxy_location", "http_options", "applications"):
        local.pop(key)
        original.pop(key)
    assert local == original


def test_serve_ray_refuses_settings_the_replicas_would_refuse():
    from pydantic import ValidationError

    from service.ray_serve.__main__ import local_config

    with pytest.raises(ValidationError, match="max_in_flight"):
        local_config(serve_config(), "127.0.0.1", 8000, 1, {"VAE_MAX_IN_FLIGHT": "-1"})


def test_the_test_names_the_replica_as_serve_does():
    pytest.importorskip("ray.serve")
    from service.ray_serve.app import DEPLOYMENT_NAME

    _, deployment = the_deployment(serve_config())
    assert deployment["name"] == DEPLOYMENT_NAME


def test_serve_ray_listens_where_vae_serve_would_unless_told(monkeypatch):
    from service.ray_serve.__main__ import listening

    monkeypatch.setenv("VAE_HOST", "0.0.0.0")
    monkeypatch.setenv("VAE_PORT", "9123")
    assert listening(None, None) == ("0.0.0.0", 9123)
    assert listening("127.0.0.1", 8000) == ("127.0.0.1", 8000)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--config", "/nonexistent/serve.yaml"], {}, "cannot read the Serve config"),
        ([], {"VAE_MAX_IN_FLIGHT": "-1"}, "invalid settings"),
    ],
)
def test_serve_ray_refuses_a_bad_start_with_a_message_before_starting_ray(
    monkeypatch, capsys, argv, env, message
):
    from service.ray_serve.__main__ import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}")
    assert "Traceback" not in err
