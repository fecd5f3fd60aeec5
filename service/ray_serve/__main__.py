"""`python -m service.ray_serve` (`make serve-ray NODES=n`): start a local Ray cluster of n nodes,
deploy `deploy/ray/serve.yaml` on it with `serve deploy`, serve until Ctrl-C or SIGTERM, then
shut Serve and every Ray process it started down.

The config is the one an existing cluster gets, with only what a single machine needs changed
(`local_config`): the listening address (VAE_HOST and VAE_PORT, as for `vae-serve`, unless
given), one proxy (on the head; each node's proxy would want the same port), at least one
replica per node, and the caller's VAE_* settings (with Serve's per-replica bound following
VAE_MAX_IN_FLIGHT).
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.config import ENV_PREFIX, Settings, available_cores
from service.ray_serve.cluster import ClusterError, LocalCluster

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "deploy" / "ray" / "serve.yaml"
# The replicas do not run in this checkout: `vae-serve`'s default model directory, made absolute.
DEFAULT_MODEL_DIR = ROOT / Settings.model_fields["model_dir"].default
# The line printed once the application answers; what waits for it (tests, scripts) looks for it.
SERVING = "serving on"


def local_config(
    config: dict[str, Any], host: str, port: int, min_replicas: int, env: dict[str, str]
) -> dict[str, Any]:
    """`config` (a Serve deploy config) adapted to a cluster whose nodes share this machine.
    Raises pydantic's ValidationError for VAE_* settings the replicas would refuse."""
    local = copy.deepcopy(config)
    local["proxy_location"] = "HeadOnly"
    local["http_options"] = {**local.get("http_options", {}), "host": host, "port": port}
    settings = {key: value for key, value in env.items() if key.startswith(ENV_PREFIX)}
    settings.setdefault(f"{ENV_PREFIX}MODEL_DIR", str(DEFAULT_MODEL_DIR))
    for app in local["applications"]:
        runtime_env = app.setdefault("runtime_env", {})
        env_vars = runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **settings}
        replica = Settings(
            _env_file=None,  # type: ignore[call-arg]
            **{key.removeprefix(ENV_PREFIX).lower(): value for key, value in env_vars.items()},
        )
        for deployment in app.get("deployments", []):
            # Serve sends a replica no more than its app admits (0: the app has no bound).
            if replica.max_in_flight:
                deployment["max_ongoing_requests"] = replica.max_in_flight
            scaling = deployment.get("autoscaling_config")
            if scaling is not None:
                scaling["min_replicas"] = max(scaling.get("min_replicas", 1), min_replicas)
                scaling["max_replicas"] = max(scaling.get("max_replicas", 1), min_replicas)
    return local


def _wait_serving(
    app_names: list[str], ready_url: str, timeout: float, stop: threading.Event
) -> None:
    """Until every application is RUNNING and the proxy answers `ready_url` with 200."""
    from ray import serve

    deadline = time.monotonic() + timeout
    while True:
        status = serve.status().applications
        states = {name: status[name].status if name in status else None for name in app_names}
        failed = [name for name, state in states.items() if state == "DEPLOY_FAILED"]
        if failed:
            raise ClusterError(f"deploy failed: {status[failed[0]].message}")
        if all(state == "RUNNING" for state in states.values()) and _ok(ready_url):
            return
        if stop.is_set():
            raise ClusterError("stopped while starting")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"not serving {ready_url} after {timeout:.0f} s (applications: {states})"
            )
        time.sleep(0.5)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop_on_signals(stop: threading.Event) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())


def listening(host: str | None, port: int | None) -> tuple[str, int]:
    """The address given, or `vae-serve`'s (VAE_HOST, VAE_PORT) for what is not."""
    settings = Settings()
    return host or settings.host, settings.port if port is None else port


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a proxy listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.ray_serve", description=__doc__)
    parser.add_argument("--nodes", type=int, default=1, help="local Ray nodes (default 1)")
    parser.add_argument("--host", default=None, help="default: VAE_HOST (127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="default: VAE_PORT (8000)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--cpus-per-node",
        type=int,
        default=None,
        help="CPUs each node offers (default: the machine's cores shared out, at least 1)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to come up")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    cpus = args.cpus_per_node or max(1, available_cores() // args.nodes)

    try:
        host, port = listening(args.host, args.port)
        config = yaml.safe_load(args.config.read_text())
        local = local_config(config, host, port, args.nodes, dict(os.environ))
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read the Serve config {args.config}: {exc}", file=sys.stderr)
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="vae-ray-"))
    cluster = LocalCluster(nodes=args.nodes, cpus_per_node=cpus, log_dir=log_dir)
    stop = cluster.stop_requested
    _stop_on_signals(stop)
    deployed = log_dir / "serve.yaml"
    deployed.write_text(yaml.safe_dump(local, sort_keys=False))
    status = 0
    try:
        cluster.start(timeout=args.timeout)
        _stop_on_signals(stop)  # again: connecting to Ray replaced the SIGTERM handler
        if not stop.is_set():
            serve_cli = str(Path(sys.executable).with_name("serve"))
            subprocess.run(
                [serve_cli, "deploy", str(deployed), "--address", cluster.dashboard_url],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            ready_url = f"http://{_client_host(host)}:{port}/readyz"
            names = [app["name"] for app in local["applications"]]
            _wait_serving(names, ready_url, args.timeout, stop)
            print(
                f"{SERVING} http://{host}:{port} from {args.nodes} Ray node(s) "
                f"({cpus} CPU each); logs in {log_dir}; Ctrl-C to stop",
                flush=True,
            )
            stop.wait()
    except (ClusterError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        print("stopping Serve and the Ray nodes", flush=True)
        try:
            import ray
            from ray import serve

            # Only through our own connection: without one, Serve would connect to (or
            # start) whatever cluster it finds.
            if ray.is_initialized():
                serve.shutdown()
        finally:
            cluster.stop()
        print("stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
