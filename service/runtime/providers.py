"""Execution provider selection and session creation with fallback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from service.runtime.errors import ModelLoadError

logger = logging.getLogger(__name__)

AUTO = "auto"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# Short names accepted in configuration (VAE_PROVIDERS=cuda,cpu).
ALIASES = {
    "cpu": CPU,
    "cuda": CUDA,
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def _canonical(name: str) -> str:
    return ALIASES.get(name.strip().lower(), name.strip())


def resolve_providers(
    requested: Sequence[str], available: Sequence[str] | None = None
) -> list[str]:
    """Turn configured provider names into the ordered list to try.

    ``auto`` becomes CUDA (when available) then CPU. A name ONNX Runtime does not know is a
    configuration error; a known provider this build does not offer is skipped with a warning.
    """
    available = list(ort.get_available_providers() if available is None else available)
    known = set(ort.get_all_providers()) | set(available)
    resolved: list[str] = []
    for raw in requested:
        if raw.strip().lower() == AUTO:
            names = [CUDA, CPU] if CUDA in available else [CPU]
        else:
            names = [_canonical(raw)]
        for name in names:
            if name not in known:
                raise ModelLoadError(
                    f"unknown execution provider {raw!r}; available in this onnxruntime "
                    f"build: {', '.join(available)} (or 'auto')"
                )
            if name not in available:
                logger.warning(
                    "execution provider %s is not available in this onnxruntime build "
                    "(available: %s); skipping it",
                    name,
                    ", ".join(available),
                )
                continue
            if name not in resolved:
                resolved.append(name)
    if not resolved:
        raise ModelLoadError(
            f"none of the requested execution providers {list(requested)} is available; "
            f"available in this onnxruntime build: {', '.join(available)}"
        )
    return resolved


def create_session(
    path: Path, options: ort.SessionOptions, providers: Sequence[str]
) -> ort.InferenceSession:
    """Create a session on the first provider list that works, dropping failing providers."""
    last_error: Exception | None = None
    for start in range(len(providers)):
        attempt = list(providers[start:])
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=attempt)
        except Exception as exc:
            last_error = exc
            logger.warning(
                "%s: cannot create a session with %s (%s); falling back to %s",
                path.name,
                attempt[0],
                exc,
                attempt[1:] or "nothing",
            )
            continue
        in_use = session.get_providers()
        dropped = [p for p in attempt if p not in in_use]
        if dropped:
            # ONNX Runtime itself falls back silently when a provider's libraries are missing.
            logger.warning(
                "%s: providers %s could not be used; running on %s", path.name, dropped, in_use
            )
        return session
    raise ModelLoadError(
        f"{path}: cannot create an ONNX Runtime session with any of {list(providers)}: {last_error}"
    )
