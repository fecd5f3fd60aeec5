"""Ray Serve: the service's own FastAPI app, run by Ray Serve as its HTTP ingress.

`service.ray_serve.app:app` is the Serve application (`deploy/ray/serve.yaml` names it);
`python -m service.ray_serve` (`make serve-ray`) starts a local Ray cluster and deploys it.
Needs the `ray` extra (`make install-ray`); nothing else in the service imports this package.
"""
