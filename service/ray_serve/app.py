"""The Serve application: one deployment whose ingress is `create_app_from_env()`.

Every replica builds the same FastAPI app as a `vae-serve` worker (settings from its `VAE_*`
environment, set by the Serve config's `runtime_env`), so routes, docs, errors, admission
control and seeded answers are the plain server's. Serve runs the app's lifespan, which loads
and warms every model; `check_health` then reports the model's readiness to Serve, which
replaces a replica that fails it.
"""

from __future__ import annotations

from ray import serve

from service.app import create_app_from_env

DEPLOYMENT_NAME = "vae"


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(create_app_from_env)
class VAEIngress:
    """A replica: the app (built on the replica by `serve.ingress`) and its health check."""

    async def check_health(self) -> None:
        services = self.app.state.services  # type: ignore[attr-defined]
        if not services or not all(svc.ready for svc in services.values()):
            raise RuntimeError("the model is not loaded and warm")


app = VAEIngress.bind()
