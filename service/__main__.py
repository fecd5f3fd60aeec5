"""`vae-serve` / `python -m service`: run uvicorn (uvloop + httptools) with the settings.

Workers default to the number of cores. With several workers Prometheus needs a shared
directory for its multiprocess mode; the launcher creates it before any worker starts (the
variable must be set before prometheus_client is imported) and removes it on exit. SIGTERM
stops accepting connections and lets in-flight requests finish (up to VAE_SHUTDOWN_TIMEOUT).
"""

from __future__ import annotations

import logging.config
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from service.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # same name as service.api.metrics, imported late


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


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"invalid configuration:\n{exc}\n")
        raise SystemExit(2) from None

    created = _prepare_metrics_dir()
    _exit_cleanly_after_sigterm()
    try:
        import uvicorn

        from service.api.logs import log_config

        config = log_config(settings.log_level, settings.log_format)
        logging.config.dictConfig(config)
        logging.getLogger("service").info(
            "starting",
            extra={
                "host": settings.host,
                "port": settings.port,
                "workers": settings.workers,
                "model_dir": str(settings.model_dir),
            },
        )
        uvicorn.run(
            "service.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_config=config,
            log_level=settings.log_level,
            access_log=False,  # the app logs one structured line per request itself
            timeout_graceful_shutdown=settings.shutdown_timeout,
            server_header=False,
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


if __name__ == "__main__":
    main()
