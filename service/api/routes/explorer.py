"""/explorer: a page on which a person draws a digit and explores the model's latent space.

The page is static files from `service.explorer`, served as they are; its script calls only
the public API (with the visitor's API key when the server asks for one). The page and its
assets hold no data, so they are public, like /docs, and not part of the API's schema.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from service.explorer import ASSETS_DIR, INDEX_HTML

EXPLORER_PATH = "/explorer"
ASSETS_PATH = f"{EXPLORER_PATH}/assets"
# Where index.html names the assets' URL, so that the path is declared here alone.
ASSETS_PLACEHOLDER = "{{assets}}"
# Its own files only, and requests only to this server: a page that works offline cannot
# depend on anything else, and the policy makes the browser enforce it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The page is tiny and names its assets by path: revalidate so a new release shows at once.
    "Cache-Control": "no-cache",
}


def explorer_page() -> bytes:
    """index.html with its assets' URL filled in."""
    return INDEX_HTML.read_text(encoding="utf-8").replace(ASSETS_PLACEHOLDER, ASSETS_PATH).encode()


def install_explorer(app: FastAPI) -> None:
    """GET /explorer and /explorer/assets/*: never behind the API key (see the module doc)."""
    page = explorer_page()  # read once: the package's files do not change while it runs
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="explorer-assets")

    @app.get(EXPLORER_PATH, include_in_schema=False)
    async def explorer() -> Response:
        return Response(page, media_type="text/html", headers=PAGE_HEADERS)
