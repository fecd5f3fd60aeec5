"""`vae-serve` / `python -m service`: run uvicorn (uvloop + httptools) with the settings.

Workers default to the number of cores. With several workers Prometheus needs a shared
directory for its multiprocess mode; the launcher creates it before any worker starts (the
variable must be set before prometheus_client is imported) and removes it on exit. One worker
keeps plain in-memory metrics (cheaper per request) unless PROMETHEUS_MULTIPROC_DIR is set.

HTTP is uvicorn's httptools protocol with the limits it lacks (service/server/protocol.py:
head size, header and body read timeouts, connections per worker). SIGTERM closes the
listening socket at once (new clients are refused, not queued), answers the requests already
received with `Connection: close`, and gives them up to VAE_SHUTDOWN_TIMEOUT.

Exit status: 0 after a requested stop, 2 for invalid settings, 3 when the model cannot be
served (loaded, checked and run once in the launcher first, so a broken model directory gives
one clear line before any worker starts).
"""

from __future__ import annotations

import functools
import logging.config
import os
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from service.config import MULTIPROC_ENV, Settings, http_limits, session_options
from service.runtime.errors import ModelLoadError
from service.runtime.providers import resolve_providers
from service.server.direct_reads import MAX_SKIPS
from service.server.protocol import LimitedHttpToolsProtocol

EXIT_BAD_SETTINGS = 2
EXIT_STARTUP_FAILURE = 3  # uvicorn's own status for an app that failed to start


class CannotServeError(Exception):
    """A model (or the repository) that cannot be served: where, and why."""

    def __init__(self, where: Path, error: ModelLoadError) -> None:
        super().__init__(f"{where}: {error}")
        self.where = where
        self.error = error


def _check_model(settings: Settings) -> None:
    """Load every model exactly as a worker will (manifest, sha256s, sessions, graphs against
    the manifest) and run it once, before any worker starts: a broken model is then one line
    and exit 3, not a traceback per worker. The sessions are freed before the workers fork."""
    from service.runtime.model import VAEModel
    from service.runtime.repository import check_unique_names, model_dirs

    # Provider fall-back warnings would print here without our log format; the workers log
    # them again, formatted.
    logging.disable(logging.WARNING)
    try:
        repository = settings.model_repository or settings.model_dir
        try:
            dirs = model_dirs(settings.model_dir, settings.model_repository)
        except ModelLoadError as exc:
            raise CannotServeError(repository, exc) from None
        for model_dir in dirs:
            try:
                model = VAEModel.load(model_dir, session_options(settings))
                model.warmup(rounds=1)
            except ModelLoadError as exc:
                raise CannotServeError(model_dir, exc) from None
            except Exception as exc:  # anything ONNX Runtime raises while running the graphs
                error = ModelLoadError(f"the model does not run: {type(exc).__name__}: {exc}")
                raise CannotServeError(model_dir, error) from None
            del model
        try:
            check_unique_names(dirs)  # each manifest is valid by now
        except ModelLoadError as exc:
            raise CannotServeError(repository, exc) from None
    finally:
        logging.disable(logging.NOTSET)


def _prepare_metrics_dir() -> Path | None:
    """Returns the directory to delete at exit (None when the user supplied one)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # samples of a previous run would be added to ours
            stale.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="vae-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def _exit_cleanly_after_sigterm() -> None:
    """uvicorn re-raises the signal it caught once its graceful shutdown is done; with the
    default handler that kills the process (exit status -15). Our handler makes it a normal
    exit, so a stop requested with SIGTERM ends with status 0."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, closing its copy of the listening socket when told to stop.

    The workers close theirs as they start draining, but uvicorn's parent keeps its own until
    it exits: the kernel would go on completing handshakes that nobody accepts, and new clients
    would hang for the whole grace period, then be reset. Closed, the port refuses them.
    """

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()


# File descriptors a worker needs beside its connections (listening socket, logs, pipes to
# the supervisor, ONNX Runtime, Python's own, and the duplicates of refused bodies being
# dropped in the kernel).
_SPARE_FDS = 256 + MAX_SKIPS


def _raise_fd_limit(max_connections: int) -> None:
    """Raise the soft open-files limit (often 1024) towards what VAE_MAX_CONNECTIONS needs, as
    far as the hard limit allows; the workers inherit it. Short of it, past the limit accept()
    fails and libuv resets the connections it cannot take, instead of our cap closing them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + _SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            logging.getLogger("service").warning(
                "open-files limit %d is below VAE_MAX_CONNECTIONS + %d; connections past it "
                "are reset",
                new,
                _SPARE_FDS,
                extra={"nofile": new, "max_connections": max_connections},
            )


def _http_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's Config, bound to the settings' limits (a partial of a
    module-level class pickles by reference, so the spawned workers get it too)."""
    limits = http_limits(settings)
    # uvicorn only calls it with (config, server_state, app_state, _loop) and looks up
    # optional attributes on it, so a partial serves as the class.
    return functools.partial(LimitedHttpToolsProtocol, limits=limits)  # type: ignore[return-value]


def _serve(settings: Settings, log_config: dict[str, Any]) -> bool:
    """Run uvicorn until stopped; False when the app (in any worker) failed to start.

    `uvicorn.run` exits 0 when a worker of several fails to start, which would hide the
    failure from supervisors, so the supervisor is driven here directly.
    """
    import uvicorn

    config = uvicorn.Config(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="service.server.accept:BurstAcceptLoop",
        http=_http_protocol(settings),
        lifespan="on",
        log_config=log_config,
        log_level=settings.log_level,
        access_log=False,  # the app logs one structured line per request itself
        timeout_graceful_shutdown=settings.shutdown_timeout,
        backlog=settings.backlog,
        server_header=False,
    )
    if config.workers > 1:
        supervisor = _Supervisor(config, sockets=[config.bind_socket()])
        supervisor.run()
        return all(p.exitcode != EXIT_STARTUP_FAILURE for p in supervisor.processes)
    server = uvicorn.Server(config)
    server.run()
    return server.started


def _parse_args(argv: list[str] | None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="vae-serve",
        description="Serve the VAE over HTTP. Every setting comes from a VAE_* environment "
        "variable (see the README's configuration table or `python -m service.config`).",
    )
    parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"invalid configuration:\n{exc}\n")
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    try:
        resolve_providers(settings.provider_list)
    except ModelLoadError as exc:
        sys.stderr.write(f"invalid configuration: VAE_PROVIDERS: {exc}\n")
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    try:
        _check_model(settings)
    except CannotServeError as exc:
        message = " ".join(str(exc.error).split())  # one line, whatever ONNX Runtime wrote
        sys.stderr.write(f"cannot serve {exc.where}: {message}\n")
        raise SystemExit(EXIT_STARTUP_FAILURE) from None

    # One worker keeps its metrics in its own memory: multiprocess mode's file-backed values
    # cost a measurable share of a tiny request. Several workers need the shared directory.
    created = (
        _prepare_metrics_dir() if settings.workers > 1 or os.environ.get(MULTIPROC_ENV) else None
    )
    _exit_cleanly_after_sigterm()
    try:
        from service.api.logs import log_config

        config = log_config(settings.log_level, settings.log_format)
        logging.config.dictConfig(config)
        _raise_fd_limit(settings.max_connections)
        logging.getLogger("service").info(
            "starting",
            extra={
                "host": settings.host,
                "port": settings.port,
                "workers": settings.workers,
                "model_dir": str(settings.model_dir),
            },
        )
        started = _serve(settings, config)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
    if not started:
        raise SystemExit(EXIT_STARTUP_FAILURE)


if __name__ == "__main__":
    main()
