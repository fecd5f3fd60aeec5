"""The model runtime: numpy in, numpy out; no HTTP, no JSON."""

from service.runtime.errors import InvalidInput, ModelLoadError, ModelNotReady, VAEError
from service.runtime.model import VAEModel
from service.runtime.observer import NULL_OBSERVER, InferenceObserver
from service.runtime.options import BatchingOptions, SessionOptions
from service.runtime.service import EncodeResult, GenerateResult, VAEService

__all__ = [
    "NULL_OBSERVER",
    "BatchingOptions",
    "EncodeResult",
    "GenerateResult",
    "InferenceObserver",
    "InvalidInput",
    "ModelLoadError",
    "ModelNotReady",
    "SessionOptions",
    "VAEError",
    "VAEModel",
    "VAEService",
]
