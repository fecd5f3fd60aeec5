"""Typed runtime errors; the API layer maps each one to a status code in one place."""

from __future__ import annotations


class VAEError(Exception):
    """Base class of every error the runtime raises on purpose."""


class InvalidInput(VAEError):  # noqa: N818 (name fixed by the runtime interface)
    """The caller's data cannot be processed; ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelNotReady(VAEError):  # noqa: N818 (name fixed by the runtime interface)
    """The model is not loaded and warm yet, or the service is shutting down."""


class ModelLoadError(VAEError):
    """The model directory cannot be served: manifest, sha256, graph or session problems."""


class NonFiniteOutput(VAEError):  # noqa: N818 (named like its siblings)
    """A graph produced NaN or infinity: never answered as a result (the last guard behind the
    API's bounds on its inputs)."""


class Overloaded(VAEError):  # noqa: N818 (named like its siblings)
    """The worker is over one of its admission bounds (requests in flight, rows queued for a
    graph): refused at once, before any compute, so the caller can retry later."""


class DeadlineExceeded(VAEError):  # noqa: N818 (named like its siblings)
    """A request's inference did not finish by its deadline; its rows are not computed."""
