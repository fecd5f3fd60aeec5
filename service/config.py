"""Service settings: one object, read from `VAE_*` environment variables.

`python -m service.config --markdown` prints the README's configuration table, so the
documentation is generated from these fields and cannot drift from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.runtime.options import (
    DEFAULT_BATCHING_OPTIONS,
    DEFAULT_SESSION_OPTIONS,
    BatchingOptions,
    GraphOptimization,
    SessionOptions,
)
from service.server.limits import DEFAULT_LIMITS, HttpLimits

ENV_PREFIX = "VAE_"
# prometheus_client's multiprocess directory variable; the launcher sets it before any worker
# imports prometheus_client, so it is named here, where both can read it without that import.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def available_cores() -> int:
    """Cores this process may run on (respects `taskset` / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Every setting of the service; each field is one `VAE_<NAME>` environment variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Model and ONNX Runtime
    model_dir: Path = Field(
        Path("models/mnist-vae"),
        description="Model directory holding `model.json`, `encoder.onnx` and `decoder.onnx`: "
        "the default model, the one the plain routes (`/encode`, ...) use.",
    )
    model_repository: Path | None = Field(
        None,
        description="A directory whose subdirectories each hold a model (`model.json` and its "
        "ONNX files): every one is served too, at `/models/{name}/...` and as OIP v2 models, "
        "beside `VAE_MODEL_DIR`'s (unset: only that one).",
    )
    providers: str = Field(
        "auto",
        description="ONNX Runtime execution providers: `auto` (CUDA when available, else CPU) "
        "or an ordered comma list such as `CUDAExecutionProvider,CPUExecutionProvider` (short "
        "names `cuda`, `cpu`, `tensorrt`, ... work too); a provider that fails falls back to "
        "the next.",
    )
    # Session and batching defaults live with the runtime's options, so the two cannot disagree.
    intra_op_threads: int = Field(
        DEFAULT_SESSION_OPTIONS.intra_op_threads,
        ge=0,
        description="ONNX Runtime intra-op threads per worker (0 = ORT default).",
    )
    inter_op_threads: int = Field(
        DEFAULT_SESSION_OPTIONS.inter_op_threads,
        ge=0,
        description="ONNX Runtime inter-op threads per worker (0 = ORT default).",
    )
    graph_optimization: GraphOptimization = Field(
        DEFAULT_SESSION_OPTIONS.graph_optimization,
        description="ONNX Runtime graph optimisation level.",
    )
    allow_spinning: bool = Field(
        DEFAULT_SESSION_OPTIONS.allow_spinning,
        description="Let ONNX Runtime threads spin while idle (more CPU, less latency).",
    )
    batching: bool = Field(
        DEFAULT_BATCHING_OPTIONS.enabled,
        description="Micro-batch concurrent requests into one ONNX Runtime call.",
    )
    max_batch_size: int = Field(
        DEFAULT_BATCHING_OPTIONS.max_batch_size,
        ge=1,
        description="Most rows in one micro-batched call (bigger calls amortise per-call costs).",
    )
    max_wait_ms: float = Field(
        DEFAULT_BATCHING_OPTIONS.max_wait_ms,
        ge=0,
        description="How long a micro-batch waits for more requests (0 = no timer: what is "
        "queued, plus requests already read, one event-loop turn).",
    )
    inline_max_rows: int = Field(
        DEFAULT_BATCHING_OPTIONS.inline_max_rows,
        ge=0,
        description="Micro-batched ONNX Runtime calls of at most this many rows run on the event "
        "loop instead of an executor thread (0 = always a thread). The default covers every "
        "micro-batch: with a core per worker, handing a call to a thread costs more than it "
        "frees. With `VAE_BATCHING=false` every call uses the thread.",
    )

    # Request limits
    max_images: int = Field(256, ge=1, description="Most images (or latents) in one request.")
    max_n: int = Field(256, ge=1, description="Largest `n` accepted by `/sample`.")
    max_steps: int = Field(64, ge=2, description="Largest `steps` accepted by `/interpolate`.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body in bytes (larger: 413)."
    )

    # Admission control
    outlier_quantile: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="`/score` marks an image an outlier when its neg_elbo is above this "
        "quantile of the model's calibration (its held-out digits' scores).",
    )
    max_in_flight: int = Field(
        128,
        ge=0,
        description="Most requests to the model routes (`/encode`, `/decode`, `/sample`, "
        "`/interpolate`) one worker holds at once, from their headers to their answer; one "
        "more is answered 503 (`overloaded`, with `Retry-After`) at once, before its body is "
        "read, and its connection's next request is not read until a slot is free or "
        "`VAE_RETRY_AFTER` has passed (`VAE_EARLY_RETRY_HOLD` if it was sent sooner). Probes, "
        "`/metrics`, `/model` and the docs are never refused (0 = no bound).",
    )
    max_body_bytes_in_flight: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="Most request-body bytes (as declared by `Content-Length`) of the model "
        "requests one worker holds at once; a request that would go past it is refused as one "
        "over `VAE_MAX_IN_FLIGHT` is, unless no body is in progress. Large bodies cost "
        "parsing time and memory in proportion: this keeps a flood of them from queueing "
        "seconds of work (0 = no bound).",
    )
    max_queued_rows: int = Field(
        DEFAULT_BATCHING_OPTIONS.max_queued_rows,
        ge=0,
        description="Most rows (images or latents) waiting for one graph's next micro-batch in "
        "one worker; a request that would go past it is answered 503 (`overloaded`) before "
        "anything is computed, unless the queue is empty (0 = no bound).",
    )
    request_timeout: float = Field(
        10.0,
        ge=0,
        description="Seconds after a model request is admitted by which its inference must "
        "have finished, else it is answered 504 (`timeout`) and its rows are dropped without "
        "being computed (0 = no deadline).",
    )
    retry_after: int = Field(
        1,
        ge=1,
        description="Seconds in the `Retry-After` header of a 503 `overloaded` answer.",
    )
    early_retry_hold: float = Field(
        3.0,
        ge=0,
        description="Seconds after a 503 `overloaded` answer before the next request on its "
        "connection is read, when that request was sent before `Retry-After` had passed (the "
        "client did not wait): unless room frees within the first half of `Retry-After`, it "
        "is then answered 503 again. A client that ignores `Retry-After` so costs the worker "
        "one refusal per this period, not one per `Retry-After`. Below `VAE_RETRY_AFTER` "
        "counts as `VAE_RETRY_AFTER`.",
    )

    # Server
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(
        default_factory=available_cores,
        ge=1,
        description="Worker processes.",
        json_schema_extra={"default_doc": "number of CPU cores"},
    )
    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds after SIGTERM for the requests already received to finish (new "
        "connections are refused at once; answers say `Connection: close`); one unfinished "
        "then is answered 503 (`shutting_down`).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="When set, every route except `/healthz`, `/readyz`, `/metrics`, the "
        "docs and the `/explorer` page (which asks for the key) needs it as "
        "`X-API-Key: <key>` or `Authorization: Bearer <key>`.",
    )
    cors_origins: str = Field(
        "", description="Comma list of origins allowed by CORS (empty: CORS off)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Log line format: one JSON object per line, or plain text."
    )
    access_log: bool = Field(True, description="Log one line per request.")

    # HTTP server (per connection, enforced by service/server/protocol.py; defaults from
    # service/server/limits.py, so the two cannot disagree)
    max_header_bytes: int = Field(
        DEFAULT_LIMITS.max_header_bytes,
        ge=1024,
        description="Largest request line plus header section in bytes; a request over it is "
        "answered 431 (`headers_too_large`) as soon as the read that crosses it arrives, and "
        "its connection is closed.",
    )
    max_headers: int = Field(
        DEFAULT_LIMITS.max_headers,
        ge=1,
        description="Most header fields in one request (more: 431, as above).",
    )
    header_timeout: float = Field(
        DEFAULT_LIMITS.header_timeout,
        gt=0,
        description="Seconds a client has to send a request line and headers, counted from "
        "the connection's opening or from the request's first byte; then 408 "
        "(`header_timeout`; a silent close if it sent nothing) and the connection is closed.",
    )
    body_timeout: float = Field(
        DEFAULT_LIMITS.body_timeout,
        gt=0,
        description="Seconds a request body has to arrive in full once its headers are in "
        "(time the server holds off reading is not counted); then 408 (`body_timeout`) and "
        "the connection is closed. The default needs ~280 KB/s for an 8 MiB body.",
    )
    keep_alive_timeout: float = Field(
        DEFAULT_LIMITS.keep_alive_timeout,
        gt=0,
        description="Seconds an idle keep-alive connection is kept open.",
    )
    max_connections: int = Field(
        DEFAULT_LIMITS.max_connections,
        ge=1,
        description="Open connections per worker; one more is closed as soon as it is "
        "accepted (the client sees the connection close or reset), so a flood cannot exhaust "
        "file descriptors. The launcher raises the soft file-descriptor limit to fit.",
    )
    backlog: int = Field(
        2048,
        ge=1,
        description="Listen backlog: connections the kernel holds until a worker accepts "
        "them (capped by `net.core.somaxconn`).",
    )

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: str) -> str:
        # Only the syntax here: whether ONNX Runtime knows a name is checked when the model
        # loads, against the providers of the installed build.
        names = [p.strip() for p in value.split(",") if p.strip()]
        if not names:
            raise ValueError("must be `auto` or a comma list of execution providers")
        return ",".join(names)

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key from a blank `.env` line must not silently switch authentication off.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty or blank; unset VAE_API_KEY to serve without a key")
        return value

    @property
    def provider_list(self) -> tuple[str, ...]:
        return tuple(self.providers.split(","))

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None


Options = TypeVar("Options", SessionOptions, BatchingOptions, HttpLimits)
# The settings whose names differ from the option they fill; every other option field is
# filled from the setting of the same name.
_OPTION_SOURCES: dict[str, str] = {"providers": "provider_list", "enabled": "batching"}


def runtime_options(settings: Settings, options: type[Options]) -> Options:
    """One of the runtime's (or the HTTP server's) option objects, every field taken from
    these settings."""
    values: dict[str, Any] = {
        f.name: getattr(settings, _OPTION_SOURCES.get(f.name, f.name))
        for f in dataclasses.fields(options)
    }
    return options(**values)


def session_options(settings: Settings) -> SessionOptions:
    return runtime_options(settings, SessionOptions)


def batching_options(settings: Settings) -> BatchingOptions:
    return runtime_options(settings, BatchingOptions)


def http_limits(settings: Settings) -> HttpLimits:
    return runtime_options(settings, HttpLimits)


def markdown_table() -> str:
    """The README configuration table, one row per setting."""
    rows = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "default_doc" in extra:
            default = str(extra["default_doc"])
        elif field.default is None:
            default = "unset"
        else:
            value = field.default
            if isinstance(value, bool):
                value = str(value).lower()
            default = f"`{value}`" if str(value) != "" else "empty"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m service.config",
        description="Print the effective settings (from VAE_* variables) as JSON.",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the README configuration table instead"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        sys.stdout.write(Settings().model_dump_json(indent=2) + "\n")


if __name__ == "__main__":
    main()
