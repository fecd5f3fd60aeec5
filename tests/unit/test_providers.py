import logging

import pytest

from service.runtime.errors import ModelLoadError
from service.runtime.providers import CPU, CUDA, resolve_providers


def test_auto_prefers_cuda_when_offered():
    assert resolve_providers(["auto"], available=[CUDA, CPU]) == [CUDA, CPU]


def test_auto_is_cpu_without_cuda():
    assert resolve_providers(["auto"], available=[CPU]) == [CPU]


def test_explicit_order_is_kept_and_aliases_expand():
    assert resolve_providers(["cpu", "cuda"], available=[CUDA, CPU]) == [CPU, CUDA]


def test_unknown_provider_is_refused_naming_the_available_ones():
    with pytest.raises(ModelLoadError) as info:
        resolve_providers(["FancyExecutionProvider"], available=[CPU])
    assert "FancyExecutionProvider" in str(info.value)
    assert CPU in str(info.value)


def test_known_but_missing_provider_is_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_providers([CUDA, CPU], available=[CPU]) == [CPU]
    assert CUDA in caplog.text


def test_no_usable_provider_is_refused():
    with pytest.raises(ModelLoadError, match="none of the requested"):
        resolve_providers([CUDA], available=[CPU])
