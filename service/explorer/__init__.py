"""The latent explorer page (`/explorer`): plain HTML, JavaScript and CSS shipped as package
data, served by `service.api.routes.explorer`. No framework, no build step, nothing fetched
from outside the server at run time."""

from __future__ import annotations

from pathlib import Path

EXPLORER_DIR = Path(__file__).resolve().parent
INDEX_HTML = EXPLORER_DIR / "index.html"
ASSETS_DIR = EXPLORER_DIR / "assets"  # served as they are: script, style, icon, test digits
DIGITS_FILE = ASSETS_DIR / "digits.json"
