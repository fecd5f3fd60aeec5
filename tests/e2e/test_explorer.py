"""/explorer in a real headless Chromium (Debian's `chromium` package, driven by Playwright for
Python) against a real server on the committed default model: drawing, sliders, samples,
interpolation, the API key prompt, busy and error messages. Every page visit also proves that
the page logs no console error, throws nothing and requests nothing but this server.

Playwright's own browser download is never used (nor could it work offline): the tests drive
the Debian binary, and skip when it or the `playwright` package is missing. With
VAE_UPDATE_SCREENSHOTS=1 the screenshot of a full session is written to
docs/images/explorer.png (the README's); otherwise to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from service.api.errors import OVERLOADED, OVERLOADED_STATUS, error_body, overloaded_headers
from service.api.routes.explorer import EXPLORER_PATH
from service.runtime.interpolation import METHODS
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import Server, start_server

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need `playwright` (the dev extra)"
)
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's `chromium` is not installed (apt-get install chromium); Playwright's own "
    "browser download is never used",
)

API_KEY = "explorer-k3y"
SCREENSHOT = REPO_ROOT / "docs" / "images" / "explorer.png"
UPDATE_SCREENSHOTS = os.environ.get("VAE_UPDATE_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1280, "height": 900}
WAIT_MS = 20_000  # for an answer from the server: generous, never a measurement
# Chromium logs every answer >= 400 to the console as an error, in these words; the tests that
# provoke such answers allow exactly their statuses.
FAILED_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


@pytest.fixture(scope="module")
def mnist_server(
    default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_server(default_model_dir, tmp_path_factory.mktemp("explorer"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server(
    default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_server(
        default_model_dir, tmp_path_factory.mktemp("explorer-key"), VAE_API_KEY=API_KEY
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root (CI containers), where Chromium's sandbox
        # refuses to start.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@dataclass
class Visit:
    """A page on the explorer, and what it did: requests, console errors, uncaught errors."""

    page: sync_api.Page
    server: Server
    requests: list[sync_api.Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_clean(self, failed_statuses: frozenset[int] = frozenset()) -> None:
        """Nothing went wrong but answers with `failed_statuses`, which the test provoked."""
        assert self.page_errors == []
        unexpected = [
            text
            for text in self.console_errors
            if not ((m := FAILED_LOAD.match(text)) and int(m.group(1)) in failed_statuses)
        ]
        assert unexpected == []
        off_server = [
            r.url for r in self.requests if not r.url.startswith(self.server.base_url + "/")
        ]
        assert off_server == []


@pytest.fixture
def visit(browser: sync_api.Browser) -> Iterator[Callable[[Server], Visit]]:
    """`visit(server)`: a fresh browser context (no session storage) on the server's explorer."""
    contexts: list[sync_api.BrowserContext] = []

    def open_page(server: Server) -> Visit:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        opened = Visit(page, server)
        page.on("request", lambda r: opened.requests.append(r))
        page.on("console", lambda m: m.type == "error" and opened.console_errors.append(m.text))
        page.on("pageerror", lambda e: opened.page_errors.append(str(e)))
        page.goto(server.base_url + EXPLORER_PATH)
        return opened

    yield open_page
    for context in contexts:
        context.close()


def wait_ready(page: sync_api.Page) -> None:
    page.wait_for_selector("body[data-ready=true]")


def ready(visit: Callable[[Server], Visit], server: Server) -> tuple[Visit, sync_api.Page]:
    """The explorer open on `server`, once it has read the model."""
    opened = visit(server)
    wait_ready(opened.page)
    return opened, opened.page


def renders(page: sync_api.Page, selector: str) -> int:
    """How many times the page has drawn images on this canvas."""
    return int(page.eval_on_selector(selector, "c => Number(c.dataset.renders || 0)"))


def wait_renders(page: sync_api.Page, selector: str, at_least: int) -> None:
    page.wait_for_function(
        "([s, n]) => Number(document.querySelector(s).dataset.renders || 0) >= n",
        arg=[selector, at_least],
    )


def pixels(page: sync_api.Page, selector: str) -> str:
    """The canvas's image, as a data URL: equal strings are equal images."""
    return str(page.eval_on_selector(selector, "c => c.toDataURL()"))


# A stroke like a 7 on the 280x280 drawing: across the top, then down to the bottom left.
SEVEN = ((90, 60), (200, 60), (120, 230))


def stroke(
    page: sync_api.Page, points: Sequence[tuple[int, int]], *, down: bool = True, up: bool = True
) -> None:
    """Moves the mouse through `points` on the drawing, pressed from the first one on (with
    `down=False`, the mouse is pressed and at the first point already)."""
    box = page.locator("#draw").bounding_box()
    assert box is not None
    (x0, y0), *rest = points
    if down:
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
    for x, y in rest:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    if up:
        page.mouse.up()


def draw_seven(page: sync_api.Page) -> None:
    stroke(page, SEVEN)


def draw_seven_analysed(page: sync_api.Page) -> None:
    """Draw a 7 and wait until it has been analysed."""
    before = renders(page, "#recon")
    draw_seven(page)
    wait_drawn(page, before)


def wait_drawn(page: sync_api.Page, before: int) -> None:
    """Until the latest state of the drawing has been analysed (its score shown)."""
    wait_renders(page, "#recon", before + 1)
    wait_idle(page)
    page.wait_for_selector("#score:not(:empty)")


def wait_idle(page: sync_api.Page) -> None:
    """Until no part of the page waits for the server (the latest of every input is shown)."""
    page.wait_for_selector("body[data-working='0']")


def sample(page: sync_api.Page, seed: int, temperature: float) -> str:
    before = renders(page, "#samples")
    page.fill("#seed", str(seed))
    page.fill("#temperature", str(temperature))
    page.click("#sample")
    wait_renders(page, "#samples", before + 1)
    return pixels(page, "#samples")


def interpolate(page: sync_api.Page, start: str, end: str, steps: int, method: str) -> list[str]:
    """Runs an interpolation; the strip's frames, each as a string of its pixels."""
    before = renders(page, "#strip")
    page.select_option("#walk-a", start)
    page.select_option("#walk-b", end)
    page.select_option("#walk-method", method)
    page.fill("#walk-steps", str(steps))
    page.click("#walk")
    wait_renders(page, "#strip", before + 1)
    frames = page.eval_on_selector(
        "#strip",
        """(c) => {
            const n = Number(c.dataset.frames);
            const w = (c.width - 2 * (n - 1)) / n;  // frames side by side, 2 pixels apart
            const ctx = c.getContext("2d");
            return Array.from({length: n}, (_, k) =>
                Array.from(ctx.getImageData(k * (w + 2), 0, w, c.height).data).join(","));
        }""",
    )
    return list(frames)


def test_drawing_shows_its_reconstruction_latent_means_and_score(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    blank = pixels(page, "#recon")
    before = renders(page, "#recon")
    stroke(page, SEVEN[:2], up=False)
    wait_renders(page, "#recon", before + 1)  # live: answered while the stroke goes on
    wait_idle(page)
    top_bar = pixels(page, "#recon")
    assert top_bar != blank
    stroke(page, SEVEN[1:], down=False)
    wait_idle(page)  # the stroke's moves were sent as they came: their latest is answered
    assert pixels(page, "#recon") not in {blank, top_bar}
    assert pixels(page, "#input") != blank
    latent_dim = httpx.get(mnist_server.base_url + "/model").json()["latent_dim"]
    bars = page.locator("#bars rect")
    assert bars.count() == latent_dim
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(latent_dim)]
    assert max(heights) > 1  # some mean is far from 0: the bars show the drawing's means
    score = page.inner_text("#score")
    assert re.search(r"Anomaly score \(negative ELBO\): \d+\.\d; percentile \d+", score), score

    page.click("#clear")
    assert pixels(page, "#recon") == blank
    assert page.inner_text("#score") == ""
    v.assert_clean()


def test_a_test_digit_is_typical_for_the_model(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    before = renders(page, "#recon")
    page.click("#digits button[data-label='3']")
    wait_drawn(page, before)
    assert "typical" in page.inner_text("#score")
    v.assert_clean()


def test_sliders_follow_the_most_informative_dimensions_and_decode_at_once(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    manifest = httpx.get(mnist_server.base_url + "/model").json()["manifest"]
    kl = manifest["metrics"]["kl_per_dim"]
    dims = [
        int(d)
        for d in page.eval_on_selector_all("#sliders input", "s => s.map(i => i.dataset.dim)")
    ]
    assert dims == sorted(range(len(kl)), key=lambda d: -kl[d])[: len(dims)]
    assert len(dims) >= 2

    draw_seven_analysed(page)
    drawn = pixels(page, "#edited")
    assert drawn == pixels(page, "#recon")  # the sliders start at the drawing's means

    edits = renders(page, "#edited")
    page.locator("#sliders input").first.fill("2.5")
    wait_renders(page, "#edited", edits + 1)
    assert pixels(page, "#edited") != drawn

    edits = renders(page, "#edited")
    page.click("#reset")
    wait_renders(page, "#edited", edits + 1)
    assert pixels(page, "#edited") == drawn
    v.assert_clean()


def test_samples_follow_the_seed_and_the_temperature(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    first = sample(page, seed=3, temperature=0.8)
    assert sample(page, seed=4, temperature=0.8) != first
    assert sample(page, seed=3, temperature=0.8) == first
    assert sample(page, seed=3, temperature=0.2) != first
    assert "seed 3" in page.inner_text("#samples-caption")
    v.assert_clean()


def test_interpolation_shows_one_frame_per_step_and_animates(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    offered = page.eval_on_selector_all("#walk-method option", "os => os.map(o => o.value)")
    assert sorted(offered) == sorted(METHODS)  # the page offers every method the API has
    walks = {method: interpolate(page, "7", "2", steps=8, method=method) for method in METHODS}
    for frames in walks.values():
        assert len(frames) == 8
        assert len(set(frames)) == 8  # a walk: every step a different image
    assert walks["linear"][1:-1] != walks["slerp"][1:-1]  # the same ends, another path
    shown = renders(page, "#walk-frame")
    wait_renders(page, "#walk-frame", shown + 3)  # the animation goes on by itself
    v.assert_clean()


def test_the_drawing_is_an_interpolation_end(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    page.select_option("#walk-a", "drawing")
    page.click("#walk")  # nothing drawn yet: said so, and no request made
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Draw a digit first')"
    )
    assert not [r for r in v.requests if r.url.endswith("/interpolate")]
    draw_seven_analysed(page)
    frames = interpolate(page, "drawing", "2", steps=5, method="linear")
    assert len(set(frames)) == 5
    v.assert_clean()


def test_screenshot_of_a_session(visit, mnist_server, tmp_path):
    v, page = ready(visit, mnist_server)
    draw_seven_analysed(page)
    sample(page, seed=0, temperature=1.0)
    interpolate(page, "7", "2", steps=10, method="slerp")
    page.wait_for_function("() => document.querySelector('#status').dataset.kind === 'ok'")
    path = SCREENSHOT if UPDATE_SCREENSHOTS else tmp_path / SCREENSHOT.name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    assert path.stat().st_size > 10_000
    v.assert_clean()


def test_the_api_key_is_asked_for_once_and_sent(visit, keyed_server):
    v = visit(keyed_server)
    page = v.page
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    missing = httpx.get(keyed_server.base_url + "/model").json()["error"]["message"]
    assert missing in page.inner_text("#key-reason")

    page.fill("#api-key", "not-the-key")
    page.click("#key-submit")
    page.wait_for_function(
        "() => document.querySelector('#key-reason').textContent.includes('refused')"
    )
    dialog.wait_for(state="visible")
    page.fill("#api-key", API_KEY)
    page.click("#key-submit")
    wait_ready(page)
    assert not dialog.is_visible()

    draw_seven_analysed(page)
    api_calls = [r for r in v.requests if r.method == "POST"]
    assert api_calls
    assert {r.headers.get("x-api-key") for r in api_calls} == {API_KEY}

    page.reload()  # the key is kept for the tab's session: no second prompt
    wait_ready(page)
    assert not dialog.is_visible()
    v.assert_clean(failed_statuses=frozenset({401}))


def test_a_busy_server_is_retried_after_retry_after_with_a_message(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    refused: list[str] = []

    def once_busy(route: sync_api.Route) -> None:
        # The server's own 503 answer; provoking a real overload would take far longer.
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=OVERLOADED_STATUS,
            headers={**overloaded_headers(1), "Content-Type": "application/json"},
            body=error_body(OVERLOADED, "too many requests in flight; retry later"),
        )

    page.route(mnist_server.base_url + "/encode", once_busy)
    before = renders(page, "#recon")
    draw_seven(page)
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Server busy')"
    )
    assert page.eval_on_selector("#status", "s => s.dataset.kind") == "busy"
    wait_renders(page, "#recon", before + 1)  # retried, and answered
    page.wait_for_function("() => document.querySelector('#status').dataset.kind === 'ok'")
    assert refused
    v.assert_clean(failed_statuses=frozenset({OVERLOADED_STATUS}))


def test_a_server_that_stays_busy_is_reported(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    page.route(
        mnist_server.base_url + "/sample",
        lambda route: route.fulfill(
            status=OVERLOADED_STATUS,
            headers={**overloaded_headers(0), "Content-Type": "application/json"},
            body=error_body(OVERLOADED, "too many requests in flight; retry later"),
        ),
    )
    page.click("#sample")
    page.wait_for_function("() => document.querySelector('#status').dataset.kind === 'error'")
    status = page.inner_text("#status")
    assert "Server busy (/sample): too many requests in flight; retry later" in status
    assert "Gave up" in status
    v.assert_clean(failed_statuses=frozenset({OVERLOADED_STATUS}))


def test_the_servers_error_message_is_shown(visit, mnist_server):
    v, page = ready(visit, mnist_server)
    body = {"n": 16, "seed": 0, "temperature": 50}
    refused = httpx.post(mnist_server.base_url + "/sample", json=body)
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    page.fill("#temperature", "50")
    page.click("#sample")
    page.wait_for_function("() => document.querySelector('#status').dataset.kind === 'error'")
    status = page.inner_text("#status")
    assert f"temperature: {message}" in status
    assert "422" in status
    sent = [r for r in v.requests if r.url.endswith("/sample")]
    assert orjson.loads(sent[-1].post_data or "{}") == body  # what was refused
    v.assert_clean(failed_statuses=frozenset({422}))


def test_the_page_follows_the_models_image_shape_and_latent_size(visit, tmp_path):
    """On the committed 32x32 model (latent 16) nothing assumes 28x28 or 30 dimensions: the
    test digits (28x28) are resampled, drawings are made 32x32, a bar per dimension."""
    server = start_server(REPO_ROOT / "models" / "mnist32-vae", tmp_path)
    try:
        v, page = ready(visit, server)
        before = renders(page, "#recon")
        page.click("#digits button[data-label='3']")
        wait_drawn(page, before)
        assert "typical" in page.inner_text("#score")
        for canvas in ("#input", "#recon"):
            assert page.eval_on_selector(canvas, "c => [c.width, c.height]") == [32, 32]
        assert page.locator("#bars rect").count() == 16
        draw_seven_analysed(page)
        frames = interpolate(page, "drawing", "2", steps=4, method="slerp")
        assert len(set(frames)) == 4
        v.assert_clean()
    finally:
        server.stop()
