"""The dependency locks in requirements/ (written by `make lock`): complete, hashed, portable, and
agreeing with each other and with pyproject.toml's extras."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements"
PROJECT = "vae-service"
# lock -> (pyproject extras, extra input files) it is resolved from
LOCKS = {
    "dev.txt": (("service", "training", "dev"), ()),
    "service.txt": (("service",), ()),
    "train.txt": (("training",), ()),
    "gpu.txt": (("gpu",), ("gpu.in",)),
    "gpu-cuda12.txt": (("gpu",), ("gpu-cuda12.in",)),
    "ray.txt": (("ray",), ()),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def parse_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """{canonical name: (version, sha256 hashes)} from a pip-compile file with hashes."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := PIN.match(raw):
            current = canonicalize_name(match.group(1))
            assert current not in pins, f"{path.name}: {current} pinned twice"
            pins[current] = (match.group(2), frozenset())
        elif line.startswith("--hash=") and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes | set(HASH.findall(line)))
        else:
            pytest.fail(f"{path.name}: unexpected line {raw!r} (not name==version with hashes)")
    return pins


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, tuple[str, frozenset[str]]]]:
    return {name: parse_lock(REQUIREMENTS / name) for name in LOCKS}


def direct_requirements(extras: tuple[str, ...], inputs: tuple[str, ...]) -> set[str]:
    """Names that pyproject.toml's extras (self-references followed) and the .in files ask for."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                names.add(canonicalize_name(req.name))
    for name in inputs:
        for line in (REQUIREMENTS / name).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                names.add(canonicalize_name(Requirement(line).name))
    return names


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_is_exact_and_hashed(locks, lock: str) -> None:
    assert locks[lock], f"{lock} pins nothing"
    for name, (version, hashes) in locks[lock].items():
        Version(version)  # a plain version, no URL or file path
        assert hashes, f"{lock}: {name}=={version} has no --hash"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_is_portable_and_leaves_out_the_project(lock: str) -> None:
    text = (REQUIREMENTS / lock).read_text()
    assert "file://" not in text, f"{lock} names a local path"
    # Package sources are the installer's business (PyTorch's CPU index, a mirror, a wheel dir).
    option = re.search(r"^--(index-url|extra-index-url|find-links)", text, re.MULTILINE)
    assert option is None, f"{lock} names a package source"
    assert not re.search(rf"^{PROJECT}\b", text, re.MULTILINE), f"{lock} pins the project itself"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_covers_its_extras(locks, lock: str) -> None:
    extras, inputs = LOCKS[lock]
    missing = direct_requirements(extras, inputs) - set(locks[lock])
    assert not missing, f"{lock} lacks {sorted(missing)}: run `make lock`"


@pytest.mark.parametrize("lock", ["service.txt", "train.txt"])
def test_subset_of_dev_lock_at_the_same_versions(locks, lock: str) -> None:
    dev = locks["dev.txt"]
    extra = sorted(set(locks[lock]) - set(dev))
    assert not extra, f"{lock} pins packages that requirements/dev.txt does not: {extra}"
    for name, pin in locks[lock].items():
        assert pin == dev[name], f"{name}: {lock} has {pin[0]}, dev.txt has {dev[name][0]}"


@pytest.mark.parametrize("lock", ["gpu.txt", "gpu-cuda12.txt", "ray.txt"])
def test_lock_installed_beside_dev_shares_its_versions(locks, lock: str) -> None:
    """gpu*.txt replace dev.txt's onnxruntime; ray.txt goes on top of dev.txt (make install-ray)."""
    dev = locks["dev.txt"]
    for name in set(locks[lock]) & set(dev):
        assert locks[lock][name] == dev[name], f"{name}: {lock} and dev.txt differ"
    if lock.startswith("gpu"):
        assert "onnxruntime" not in locks[lock], f"{lock} mixes onnxruntime with onnxruntime-gpu"


def test_service_lock_has_no_training_packages(locks) -> None:
    service = set(locks["service.txt"])
    assert not service & {"torch", "onnx", "onnxscript", "matplotlib"}
