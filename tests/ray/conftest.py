"""Ray tests: a real 2-node local cluster (`python -m service.ray_serve --nodes 2`).

They run only in a loopback-only network namespace (Ray probes cloud metadata and phones home
when it starts): `make test` runs them under scripts/offline-netns.sh; anywhere else
they are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import socket

import pytest


def _only_loopback() -> bool:
    return {name for _, name in socket.if_nameindex()} == {"lo"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    if importlib.util.find_spec("ray") is None:
        reason = "the ray extra is not installed (make install-ray)"
    elif not _only_loopback():
        reason = "runs only in a loopback-only network namespace (make test runs it in one)"
    for item in items:
        if item.get_closest_marker("ray") and reason:
            item.add_marker(pytest.mark.skip(reason=reason))
