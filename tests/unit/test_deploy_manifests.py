"""deploy/: every core Kubernetes object validates strictly against the API schemas
(`kubernetes-validate --strict`, bundled, offline); the custom resources (KServe) parse with
their apiVersion, kind and required fields; and the manifests agree with the service they run
(settings that exist, probe paths the app serves, a drain that fits the grace period, the
image's user, the port KServe routes to)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config import ENV_PREFIX, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
KSERVE = REPO_ROOT / "deploy" / "kserve"
KUBERNETES_VERSION = "1.33.0"  # a recent release that managed clusters run
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
}


def documents(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path, doc))
    return out


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in documents(K8S) + documents(KSERVE) if d.get("kind") == kind]
    return doc


def test_kustomization_lists_every_core_manifest_and_names_the_image():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kinds = {d["kind"] for path, d in documents(K8S) if path.name != "kustomization.yaml"}
    assert kinds == CORE_KINDS
    container = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [image["name"] for image in kustomization["images"]] == [container["image"]]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"),
    ids=lambda p: p.name,
)
def test_core_objects_validate_strictly(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_core_object_with_a_typo_fails_strict_validation():
    deployment = by_kind("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_configmap_sets_only_settings_that_exist():
    settings = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    data = by_kind("ConfigMap")["data"]
    assert set(data) <= settings, set(data) - settings
    Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in data.items()})  # valid values


def test_the_pod_is_probed_drained_and_locked_down_as_the_service_needs():
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    config = by_kind("ConfigMap")["data"]
    assert int(config["VAE_PORT"]) == container["ports"][0]["containerPort"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    shutdown = float(config["VAE_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > pause + shutdown
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile_user = re.search(r"^USER (\d+):", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    assert pod["securityContext"]["runAsUser"] == int(dockerfile_user.group(1))
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    resources = container["resources"]
    assert resources["requests"]
    assert resources["limits"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert by_kind("Service")["spec"]["selector"] == selector
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert (
        by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == (deployment["metadata"]["name"])
    )


def test_the_kserve_resources_are_structurally_sound_and_speak_oip_v2():
    runtime = by_kind("ServingRuntime")
    service = by_kind("InferenceService")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    for doc in (runtime, service):
        assert doc["metadata"]["name"]
        assert doc["spec"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    assert "v2" in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    (container,) = runtime["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["VAE_PORT"]) == container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert set(env) <= {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
