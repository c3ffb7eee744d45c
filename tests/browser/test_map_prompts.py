"""Box / point mode: prompts drawn and clicked on the map, answered at once, accepted as a
layer; and a second prompt on the same image without a second upload."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Request, Response, expect

from support.servers import ServerProcess

from .conftest import SCENE_SIZE, Guards, Shot
from .ui import (
    WAIT_MS,
    app_layers,
    assert_on_map,
    assert_tiles_answered,
    choose_mode,
    form_fields,
    requests_to,
    screen_point,
    start,
    status_line,
    to_lnglat,
    vector_layer,
    wait_idle,
)

pytestmark = pytest.mark.browser

PREVIEW = re.compile(r"^\s*Added (\d+) features? to the preview\.\s*$")


def at(page: Page, col: float, row: float) -> tuple[float, float]:
    """The page position of a point of the scene given as a share of its width and height."""
    x, y = screen_point(page, *to_lnglat(col * SCENE_SIZE, row * SCENE_SIZE))
    assert_on_map(page, x, y)
    return x, y


def is_predict(request: Request) -> bool:
    """Whether ``request`` is the page's synchronous Box / point segmentation."""
    return request.method == "POST" and request.url.split("?")[0].endswith("/ml/segment/predict")


def predict_mode(page: Page, dialog: Locator, tool: str) -> None:
    """Box / point mode with the ``tool`` ("Box" or "Point") chosen."""
    choose_mode(dialog, "Box / point")
    dialog.get_by_role("radio", name=tool, exact=True).check()
    wait_idle(page)


def drag_box(
    page: Page, start: tuple[float, float], end: tuple[float, float]
) -> tuple[Request, Response]:
    """Drag a box on the map; returns the predict request it sent, with its answer."""
    # Few moves: each one redraws the map (software WebGL here), and a drag needs only
    # a press, a move and a release.
    with page.expect_request(is_predict, timeout=WAIT_MS) as sent:
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        page.mouse.move(*end)
        page.mouse.up()
    request = sent.value
    return request, request.response()


def preview_count(dialog: Locator) -> int:
    """Wait for "Added N features to the preview." and return N."""
    expect(status_line(dialog)).to_have_text(PREVIEW, timeout=WAIT_MS)
    return int(PREVIEW.match(status_line(dialog).inner_text().strip()).group(1))


def accept(page: Page, dialog: Locator, count: int, name: str = "Box / point") -> None:
    """Accept the preview and check it became the layer ``name`` with ``count`` features."""
    dialog.get_by_role("button", name="Accept", exact=True).click()
    expect(
        page.get_by_role("complementary", name="Layers").get_by_role(
            "listitem", name=name, exact=True
        )
    ).to_be_visible(timeout=WAIT_MS)
    vector_layer(page, name, count)


def access_log_since(server: ServerProcess, before: str, line: str, count: int) -> str:
    """The server's log after ``before``, once it holds ``count`` access lines ``line`` (the
    server writes a line as it answers, so it may land just after the page got the answer)."""
    deadline = time.monotonic() + 10
    while True:
        received = server.log()[len(before) :]
        if received.count(line) >= count or time.monotonic() > deadline:
            return received
        time.sleep(0.05)


def lies_in(box: list[float], lnglat: tuple[float, float]) -> bool:
    """Whether ``lnglat`` lies in ``[west, south, east, north]``."""
    west, south, east, north = box
    return west <= lnglat[0] <= east and south <= lnglat[1] <= north


def test_box_drawn_on_the_map(
    page: Page, sidecar: ServerProcess, scene_tif: Path, shot: Shot, guards: Guards
) -> None:
    dialog, info = start(page, sidecar, scene_tif, shot)
    assert_tiles_answered(guards.responses, info["image_id"])
    predict_mode(page, dialog, "Box")
    shot("box tool")
    # A box around the lake (centre 0.3, 0.35 of the width/height; radii 0.18, 0.2).
    request, answer = drag_box(page, at(page, 0.08, 0.1), at(page, 0.52, 0.6))
    assert answer.status == 200, answer.text()
    count = preview_count(dialog)
    wait_idle(page)
    shot("preview")
    assert count >= 1
    fields = form_fields(request)
    assert fields["image_id"] == info["image_id"] and "file" not in fields
    assert fields["point_crs"] == "EPSG:4326"
    (box,) = json.loads(fields["boxes"])
    # Sent in map coordinates: the box holds the lake's centre, and lies on the image.
    assert lies_in(box, to_lnglat(0.3 * SCENE_SIZE, 0.35 * SCENE_SIZE))
    assert lies_in(info["bounds_4326"], (box[0], box[1])) and lies_in(
        info["bounds_4326"], (box[2], box[3])
    )
    features = answer.json()["features"]
    assert len(features) == count
    assert [layer["name"] for layer in app_layers(page)] == ["scene.tif"]  # a preview only
    accept(page, dialog, count)
    wait_idle(page)
    shot("accepted")


def test_foreground_and_background_points(
    page: Page, sidecar: ServerProcess, scene_tif: Path, shot: Shot
) -> None:
    dialog, info = start(page, sidecar, scene_tif, shot)
    predict_mode(page, dialog, "Point")
    lake = at(page, 0.3, 0.35)
    soil = at(page, 0.2, 0.8)
    with page.expect_request(is_predict, timeout=WAIT_MS) as first:
        page.mouse.click(*lake)
    assert json.loads(form_fields(first.value)["point_labels"]) == [1]
    preview_count(dialog)
    shot("foreground point")
    with page.expect_request(is_predict, timeout=WAIT_MS) as second:
        page.keyboard.down("Alt")
        page.mouse.click(*soil)
        page.keyboard.up("Alt")
    request = second.value
    answer = request.response()
    assert answer.status == 200, answer.text()
    fields = form_fields(request)
    assert fields["image_id"] == info["image_id"] and fields["point_crs"] == "EPSG:4326"
    assert json.loads(fields["point_labels"]) == [1, 0]
    coords = json.loads(fields["point_coords"])
    assert len(coords) == 2
    assert all(lies_in(info["bounds_4326"], tuple(c)) for c in coords)
    count = preview_count(dialog)
    wait_idle(page)
    shot("background point")
    assert count == len(answer.json()["features"]) >= 1
    accept(page, dialog, count)
    shot("accepted")


def test_same_image_prompted_twice_uploads_once(
    page: Page,
    sidecar: ServerProcess,
    model_server: ServerProcess,
    scene_tif: Path,
    shot: Shot,
    guards: Guards,
) -> None:
    log_before = model_server.log()
    dialog, info = start(page, sidecar, scene_tif, shot)
    predict_mode(page, dialog, "Box")
    _, first = drag_box(page, at(page, 0.08, 0.1), at(page, 0.52, 0.6))
    assert first.status == 200, first.text()
    preview_count(dialog)
    shot("first box")
    request, second = drag_box(page, at(page, 0.55, 0.6), at(page, 0.88, 0.95))
    assert second.status == 200, second.text()
    preview_count(dialog)
    shot("second box")
    # The second answer reused the image the first one prepared.
    assert second.headers.get("x-geolibre-cache") == "hit", second.headers
    fields = form_fields(request)
    assert fields["image_id"] == info["image_id"] and "file" not in fields
    assert len(json.loads(fields["boxes"])) == 2
    # Counted at the model server: one upload, two prompts.
    received = access_log_since(model_server, log_before, '"POST /segment/predict HTTP', 2)
    assert len(re.findall(r'"POST /images HTTP', received)) == 1, received
    assert len(re.findall(r'"POST /segment/predict HTTP', received)) == 2, received
    assert len(requests_to(guards.requests, "POST", "/ml/images")) == 1
