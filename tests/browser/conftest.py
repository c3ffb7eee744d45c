"""The web app in a real browser: fixtures for the browser tests.

- The real servers, shared by the whole session: our model server (classic backend, no
  SAM 3 weights) and the sidecar in front of it (``GEOLIBRE_ML_SAMGEO_URL``), both on
  loopback ports. The model server's own log is its access log, so tests count the
  requests it received there.
- Debian's Chromium driven by Playwright, one browser per session, a fresh context and
  page per test at 1280 x 720.
- Guards on every page: each request is recorded, and any that would leave the machine is
  aborted and fails the test; so does any console error or uncaught page error.
- ``shot("step")`` saves a screenshot as ``test-artifacts/browser/<test>/NN-step.png``.

Without ``/usr/bin/chromium`` the tests are skipped, except in CI (``CI`` set), where a
missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    sync_playwright,
)

from support.browser import CHROMIUM, launch
from support.rasters import scene, write_raster, write_rgb_scene
from support.servers import ServerProcess, clean_env, run_server

VIEWPORT = {"width": 1280, "height": 720}
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: Schemes that never reach a network (a worker's blob, an inline image).
LOCAL_SCHEMES = {"data", "blob", "about"}
#: Chromium's console line for an HTTP error answer; a test may expect some (a 404).
FAILED_RESOURCE = re.compile(
    r"Failed to load resource: the server responded with a status of (\d+)"
)

#: ``shot("step")``: save a screenshot of the page as the test's next step.
Shot = Callable[[str], Path]

#: Size (pixels) of the small scene most tests use: a lake, a forest, bare soil.
SCENE_SIZE = 256


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``browser`` marker (the suite runs with ``--strict-markers``)."""
    config.addinivalue_line("markers", "browser: drives the web app in headless Chromium")


def is_local(url: str) -> bool:
    """Whether a request to ``url`` stays on this machine."""
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.hostname or "") in LOCAL_HOSTS


# --- servers ---------------------------------------------------------------------------------


def server_env(**overrides: str) -> dict[str, str]:
    """Our variables cleared, then ``overrides``."""
    return clean_env(**overrides)


@pytest.fixture(scope="package")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Our model server for the whole session; its log holds uvicorn's access log."""
    log = tmp_path_factory.mktemp("browser-model-server") / "model-server.log"
    with run_server(["model-server"], log_path=log, env=server_env()) as server:
        yield server


@pytest.fixture(scope="package")
def sidecar(
    tmp_path_factory: pytest.TempPathFactory, model_server: ServerProcess
) -> Iterator[ServerProcess]:
    """The sidecar (and the web app) in front of the session's model server."""
    with sidecar_for(model_server.url, tmp_path_factory) as server:
        yield server


@contextlib.contextmanager
def sidecar_for(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The sidecar (and the web app) in front of the model server at ``backend``."""
    log = tmp_path_factory.mktemp("browser-sidecar") / "sidecar.log"
    env = server_env(GEOLIBRE_ML_SAMGEO_URL=backend)
    with run_server(["serve"], log_path=log, env=env, health_timeout=30) as server:
        yield server


# --- rasters ---------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def rasters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the session's test images."""
    return tmp_path_factory.mktemp("browser-rasters")


@pytest.fixture(scope="package")
def scene_tif(rasters: Path) -> Path:
    """A small RGB GeoTIFF (UTM 33N, 10 m pixels) with a lake the classic backend finds."""
    return write_rgb_scene(rasters / "scene.tif", SCENE_SIZE)


@pytest.fixture(scope="package")
def soil_tif(rasters: Path) -> Path:
    """A small RGB GeoTIFF of bare soil only: no water in it."""
    rng = np.random.default_rng(1)
    soil = np.array([125, 90, 68], dtype=np.int16)[:, None, None]
    data = soil + rng.integers(0, 4, (3, 128, 128), dtype=np.int16)
    return write_raster(rasters / "soil.tif", data.astype(np.uint8))


@pytest.fixture(scope="package")
def large_tif(rasters: Path) -> Path:
    """A 4096 x 4096 RGB GeoTIFF (JPEG-compressed, so the upload stays small) whose classic
    automatic run takes a few seconds over many tiles: long enough to cancel."""
    tile = scene(1024, 1024, seed=5)
    rgb = np.stack([tile[b] for b in ("red", "green", "blue")])
    rgb8 = np.clip(rgb / 0.45 * 255, 0, 255).astype(np.uint8)
    data = np.tile(rgb8, (1, 4, 4))
    return write_raster(
        rasters / "large.tif",
        data,
        compress="jpeg",
        photometric="ycbcr",
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )


@pytest.fixture(scope="package")
def scene_png(rasters: Path) -> Path:
    """A PNG of the scene (no georeferencing: pixel space)."""
    planes = scene(160, 240, seed=7)
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    rgb8 = np.clip(rgb / 0.45 * 255, 0, 255).astype(np.uint8)
    return write_raster(rasters / "photo.png", rgb8, crs=None, transform=None, driver="PNG")


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the browser tests (package scope: Playwright's sync API
    keeps an event loop running in this thread until it stops, which other tests' anyio.run
    would collide with)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; the browser tests need Debian's chromium.")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); browser tests skipped.")
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Guards:
    """What the page did: its requests and answers, console errors, page errors."""

    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    off_machine: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, status: int) -> None:
        """Allow Chromium's console line for an answer with ``status`` (a 404 for "no
        objects found" is the protocol's normal answer, which Chromium still logs)."""
        self.expected_statuses.add(status)

    def on_console(self, message: ConsoleMessage) -> None:
        """Record a console error, unless it is an expected HTTP status."""
        if message.type != "error":
            return
        text = message.text
        found = FAILED_RESOURCE.search(text)
        if found and int(found.group(1)) in self.expected_statuses:
            return
        where = message.location.get("url", "") if message.location else ""
        self.console_errors.append(f"{text} ({where})" if where else text)

    def on_request(self, request: Request) -> None:
        """Record the request; an off-machine one is also noted (and aborted by the route)."""
        self.requests.append(request)
        if not is_local(request.url):
            self.off_machine.append(request.url)

    def problems(self) -> list[str]:
        """Everything that fails the test."""
        found = [f"request off the machine: {url}" for url in self.off_machine]
        found += [f"console error: {text}" for text in self.console_errors]
        found += [f"page error: {text}" for text in self.page_errors]
        return found


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's artifacts folder (emptied first)."""
    folder = ARTIFACTS / _slug(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def guards() -> Guards:
    """The page's guards (see :class:`Guards`)."""
    return Guards()


@pytest.fixture
def page(browser: Browser, guards: Guards, artifacts: Path) -> Iterator[Page]:
    """A fresh context and page at 1280 x 720, guarded; fails the test on any request off
    the machine, console error or page error."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.on("request", guards.on_request)
    context.route(lambda url: not is_local(url), lambda route: route.abort())
    tab = context.new_page()
    tab.on("response", lambda response: guards.responses.append(response))
    tab.on("console", guards.on_console)
    tab.on("pageerror", lambda error: guards.page_errors.append(str(error)))
    try:
        yield tab
    finally:
        if not tab.is_closed():
            tab.screenshot(path=str(artifacts / "99-end.png"))
        context.close()
    problems = guards.problems()
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot(page: Page, artifacts: Path) -> Shot:
    """``shot("step")``: save the page as ``NN-step.png`` in the test's artifacts folder."""
    count = 0

    def take(step: str) -> Path:
        nonlocal count
        count += 1
        path = artifacts / f"{count:02d}-{_slug(step)}.png"
        page.screenshot(path=str(path))
        return path

    return take
