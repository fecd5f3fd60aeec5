"""Settings come from VAE_* variables, and the README table is generated from them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import (
    ENV_PREFIX,
    Settings,
    available_cores,
    batching_options,
    http_limits,
    markdown_table,
    session_options,
)
from service.runtime.options import BatchingOptions, SessionOptions
from service.server.limits import HttpLimits

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No VAE_* variable of the shell running the tests reaches these tests (names are read
    case-insensitively, so ``vae_workers`` counts too); each test sets only its own."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def load() -> Settings:
    """Settings from the (cleaned) environment alone, never from an env file."""
    return Settings(_env_file=None)


def test_readme_configuration_table_matches_the_settings():
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- section:config (owner: service) -->", 1)[1].split(
        "<!-- /section:config -->", 1
    )[0]
    assert markdown_table() in section, "run: python -m service.config --markdown"


def test_settings_read_the_vae_prefix(monkeypatch):
    monkeypatch.setenv("VAE_PORT", "9123")
    monkeypatch.setenv("VAE_MAX_N", "5")
    monkeypatch.setenv("VAE_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    monkeypatch.setenv("VAE_API_KEY", "zz-secret-zz")
    settings = load()
    assert settings.port == 9123
    assert settings.max_n == 5
    assert settings.provider_list == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert settings.api_key_value == "zz-secret-zz"
    assert "zz-secret-zz" not in repr(settings)


def test_defaults():
    settings = load()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == available_cores()
    assert settings.max_images == 256
    assert settings.batching is True
    assert settings.provider_list == ("auto",)
    assert settings.api_key is None
    assert settings.cors_origin_list == []


@pytest.mark.parametrize(
    ("name", "value"), [("VAE_PROVIDERS", " , "), ("VAE_LOG_FORMAT", "xml"), ("VAE_MAX_N", "0")]
)
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load()


OPTIONS = [
    (session_options, SessionOptions(), {"VAE_INTRA_OP_THREADS": "3", "VAE_PROVIDERS": "cpu"}),
    (batching_options, BatchingOptions(), {"VAE_BATCHING": "false", "VAE_MAX_QUEUED_ROWS": "7"}),
    (http_limits, HttpLimits(), {"VAE_MAX_HEADERS": "9", "VAE_BODY_TIMEOUT": "2.5"}),
]


@pytest.mark.parametrize(("build", "defaults", "env"), OPTIONS, ids=lambda v: type(v).__name__)
def test_settings_fill_every_option_field_with_the_options_own_defaults(
    monkeypatch, build, defaults, env
):
    built = build(load())
    for field in dataclasses.fields(defaults):
        assert getattr(built, field.name) == getattr(defaults, field.name), field.name
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    changed = build(load())
    differs = {f.name for f in dataclasses.fields(defaults)}
    differs = {n for n in differs if getattr(changed, n) != getattr(built, n)}
    assert len(differs) == len(env), differs
