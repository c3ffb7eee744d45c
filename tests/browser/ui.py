"""Driving the web app as a user does, by the accessible names of docs/web-app.md, and
looking at what the map draws.

Each helper waits for what the user would wait for (a message, a layer) with Playwright's
``expect``, which retries until its timeout; nothing here asserts how long anything takes.
"""

from __future__ import annotations

import io
import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image
from playwright.sync_api import Locator, Page, Request, Response, expect
from pyproj import Transformer

from support.rasters import UTM_CRS, UTM_TRANSFORM

#: Long enough for a segmentation on this 2-core machine; a stuck page still fails.
WAIT_MS = 30_000
READY = re.compile(r"ready", re.IGNORECASE)


# --- the page --------------------------------------------------------------------------------


def open_app(page: Page, base_url: str) -> None:
    """Load the web app and wait until its map's style has loaded."""
    page.goto(base_url + "/")
    page.wait_for_function("() => window.geolibre && window.geolibre.ready", timeout=WAIT_MS)
    page.evaluate("() => window.geolibre.ready")


def open_dialog(page: Page) -> Locator:
    """Processing → AI Segmentation; returns the dialog."""
    page.get_by_role("button", name="Processing").click()
    page.get_by_role("menuitem", name="AI Segmentation").click()
    dialog = page.get_by_role("dialog", name="AI Segmentation")
    expect(dialog).to_be_visible()
    return dialog


def status_line(dialog: Locator) -> Locator:
    """The dialog's status line (role status)."""
    return dialog.get_by_role("status")


def wait_ready(dialog: Locator) -> None:
    """Wait until the dialog says the backend is ready."""
    expect(status_line(dialog)).to_have_text(READY, timeout=WAIT_MS)
    expect(status_line(dialog)).not_to_have_attribute("aria-busy", "true")


def record_statuses(page: Page) -> None:
    """From now on, note every text a status line (role status) shows, with whether it was
    busy, so that a test can check a passing message it cannot catch in time."""
    page.evaluate(
        """() => {
            window.__statuses = [];
            const note = () => {
                for (const el of document.querySelectorAll('[role=status]')) {
                    const text = el.textContent.trim();
                    const last = window.__statuses[window.__statuses.length - 1];
                    const busy = el.getAttribute('aria-busy') === 'true';
                    if (text && !(last && last.text === text && last.busy === busy)) {
                        window.__statuses.push({text, busy});
                    }
                }
            };
            new MutationObserver(note).observe(document.body, {
                subtree: true, childList: true, characterData: true, attributes: true,
                attributeFilter: ['aria-busy'],
            });
            note();
        }"""
    )


def statuses(page: Page) -> list[dict[str, Any]]:
    """What :func:`record_statuses` noted: ``{text, busy}`` in order."""
    return page.evaluate("() => window.__statuses")


def layers_panel(page: Page) -> Locator:
    """The Layers panel."""
    return page.get_by_role("complementary", name="Layers")


def layer_entry(page: Page, name: str) -> Locator:
    """The Layers panel's entry for the layer ``name``."""
    return layers_panel(page).get_by_role("listitem", name=name, exact=True)


def app_layers(page: Page) -> list[dict[str, Any]]:
    """``window.geolibre.layers``: the app's own list of what it draws."""
    return page.evaluate(
        "() => window.geolibre.layers.map(l => ({id: l.id, name: l.name, kind: l.kind, "
        "featureCount: l.featureCount}))"
    )


def upload(page: Page, dialog: Locator, path: Path) -> dict[str, Any]:
    """Choose ``path`` as the Image; returns the server's description of the image
    (``POST ml/images``'s answer) once its raster layer is in the Layers panel."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/ml/images"), timeout=WAIT_MS
    ) as answer:
        dialog.get_by_label("Image", exact=True).set_input_files(str(path))
    response = answer.value
    assert response.status == 201, response.text()
    expect(layer_entry(page, path.name)).to_be_visible(timeout=WAIT_MS)
    return response.json()


def choose_mode(dialog: Locator, label: str) -> None:
    """Pick a Mode by its option text."""
    dialog.get_by_label("Mode", exact=True).select_option(label=label)


def segment(page: Page, dialog: Locator) -> None:
    """Click Segment."""
    dialog.get_by_role("button", name="Segment", exact=True).click()


def start(page: Page, sidecar: Any, path: Path, shot: Any) -> tuple[Locator, dict[str, Any]]:
    """Open the app and the dialog, wait for the backend, choose the image."""
    open_app(page, sidecar.url)
    shot("app")
    dialog = open_dialog(page)
    wait_ready(dialog)
    shot("dialog ready")
    info = upload(page, dialog, path)
    wait_idle(page)
    shot("image on the map")
    return dialog, info


def wait_idle(page: Page) -> None:
    """Wait until the map has no camera move under way and every tile it wants is drawn."""
    page.evaluate(
        """() => new Promise(resolve => {
            const map = window.geolibre.map;
            const settled = () => map.loaded() && map.areTilesLoaded() && !map.isMoving();
            if (settled()) { requestAnimationFrame(() => resolve()); return; }
            map.once('idle', () => requestAnimationFrame(() => resolve()));
        })"""
    )


def added_count(dialog: Locator, layer: str) -> int:
    """Wait for "Added N features to <layer>." and return N."""
    pattern = re.compile(rf"^\s*Added (\d+) features? to {re.escape(layer)}\.\s*$")
    expect(status_line(dialog)).to_have_text(pattern, timeout=WAIT_MS)
    found = pattern.match(status_line(dialog).inner_text().strip())
    assert found is not None
    count = int(found.group(1))
    noun = "feature" if count == 1 else "features"
    assert f"{count} {noun}" in found.group(0), "the message's plural does not fit N"
    return count


def vector_layer(page: Page, name: str, count: int) -> dict[str, Any]:
    """Check the Layers panel shows ``name (count)`` and the app lists it as a vector layer
    with that count; returns the app's layer."""
    entry = layer_entry(page, name)
    expect(entry).to_be_visible()
    expect(entry).to_contain_text(f"{name} ({count})")
    layers = [layer for layer in app_layers(page) if layer["name"] == name]
    assert len(layers) == 1, app_layers(page)
    assert layers[0]["kind"] == "vector"
    assert layers[0]["featureCount"] == count
    return layers[0]


# --- requests --------------------------------------------------------------------------------


def form_fields(request: Request) -> dict[str, str]:
    """The text fields of a form request (multipart or URL-encoded); a file field's value
    is its file name."""
    body = request.post_data_buffer or b""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode()))
    assert content_type.startswith("multipart/form-data"), content_type
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        fields[name] = filename if filename is not None else part.get_content().strip()
    return fields


def requests_to(requests: list[Request], method: str, path: str) -> list[Request]:
    """The recorded requests with ``method`` whose URL path ends with ``path``."""
    return [r for r in requests if r.method == method and r.url.split("?")[0].endswith(path)]


def tile_responses(responses: list[Response], image_id: str) -> list[Response]:
    """The answers to the raster layer's tile requests."""
    marker = f"/ml/images/{image_id}/tiles/"
    return [r for r in responses if marker in r.url]


def assert_tiles_answered(responses: list[Response], image_id: str) -> None:
    """The raster layer asked for tiles and every one was answered 200."""
    tiles = tile_responses(responses, image_id)
    assert tiles, "the raster layer asked for no tiles"
    assert all(r.status == 200 for r in tiles), [(r.url, r.status) for r in tiles]


def json_of(response: Response) -> Any:
    """The JSON body of an answer."""
    return json.loads(response.body())


# --- what the map shows ----------------------------------------------------------------------


def to_lnglat(col: float, row: float) -> tuple[float, float]:
    """Longitude and latitude of a pixel position in the test scenes' UTM grid."""
    x, y = UTM_TRANSFORM @ (col, row)
    transformer = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True)
    lng, lat = transformer.transform(x, y)
    return lng, lat


def screen_point(page: Page, lng: float, lat: float) -> tuple[float, float]:
    """Where ``lng, lat`` is on the page (CSS pixels from the viewport's corner)."""
    return tuple(
        page.evaluate(
            """([lng, lat]) => {
                const map = window.geolibre.map;
                const p = map.project([lng, lat]);
                const box = map.getContainer().getBoundingClientRect();
                return [box.left + p.x, box.top + p.y];
            }""",
            [lng, lat],
        )
    )


def assert_on_map(page: Page, x: float, y: float) -> None:
    """The point ``x, y`` is the map's canvas, not a panel or the dialog over it, and can be
    clicked (nothing makes the map inert)."""
    hit = page.evaluate(
        """([x, y]) => {
            const el = document.elementFromPoint(x, y);
            const canvas = window.geolibre.map.getCanvas();
            return {onMap: el === canvas, what: el ? el.outerHTML.slice(0, 120) : null,
                    inert: !!canvas.closest('[inert]')};
        }""",
        [x, y],
    )
    assert hit["onMap"] and not hit["inert"], f"the map is covered at ({x:.0f}, {y:.0f}): {hit}"


def screen_rect(page: Page, bounds: list[float]) -> tuple[float, float, float, float]:
    """The on-page rectangle (left, top, right, bottom) of ``[west, south, east, north]``."""
    west, south, east, north = bounds
    x0, y0 = screen_point(page, west, north)
    x1, y1 = screen_point(page, east, south)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def covered_rects(page: Page) -> list[tuple[float, float, float, float]]:
    """Rectangles of what lies over the map: the dialog, the panels, the top bar."""
    return [
        tuple(r)
        for r in page.evaluate(
            """() => [...document.querySelectorAll('dialog[open], aside, header, nav, [role=menu]')]
                .map(e => e.getBoundingClientRect())
                .filter(r => r.width > 0 && r.height > 0)
                .map(r => [r.left, r.top, r.right, r.bottom])"""
        )
    ]


def pixels(page: Page) -> np.ndarray:
    """The page as an RGB array (one element per CSS pixel at 1280 x 720)."""
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=np.int16)


def visible_mask(
    page: Page, rect: tuple[float, float, float, float], shape: tuple[int, ...]
) -> np.ndarray:
    """Pixels inside ``rect`` (shrunk by 10 % to keep off the edges) and not under a panel."""
    mask = np.zeros(shape[:2], dtype=bool)
    left, top, right, bottom = rect
    dx, dy = (right - left) * 0.1, (bottom - top) * 0.1
    mask[
        max(int(top + dy), 0) : max(int(bottom - dy), 0),
        max(int(left + dx), 0) : max(int(right - dx), 0),
    ] = True
    for c_left, c_top, c_right, c_bottom in covered_rects(page):
        mask[
            max(int(c_top), 0) : max(int(c_bottom) + 1, 0),
            max(int(c_left), 0) : max(int(c_right) + 1, 0),
        ] = False
    return mask


def assert_raster_drawn(
    page: Page, name: str, rect: tuple[float, float, float, float], shot: Any
) -> None:
    """The raster layer ``name`` is drawn where it lies: inside ``rect`` most pixels change
    when the user hides the layer ("Show <name>"), and come back when it is shown again."""
    wait_idle(page)
    shown = pixels(page)
    mask = visible_mask(page, rect, shown.shape)
    assert mask.sum() > 400, f"too little of the raster is in view: rect {rect}"
    toggle = layer_entry(page, name).get_by_label(f"Show {name}", exact=True)
    expect(toggle).to_be_checked()
    toggle.uncheck()
    wait_idle(page)
    shot(f"{name} hidden")
    hidden = pixels(page)
    toggle.check()
    wait_idle(page)
    changed = np.abs(shown - hidden).sum(axis=2) > 24
    share = changed[mask].mean()
    assert share > 0.5, f"only {share:.0%} of the raster's area changed when it was hidden"
