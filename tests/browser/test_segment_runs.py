"""Segment runs from the AI Segmentation dialog: automatic, text, none found, download, cancel.

Each test goes through the page as a user does, against the session's real sidecar and
model server, and checks what the user sees: the layers in the Layers panel, their
feature counts, the status line's messages, the raster drawn under the results.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pyogrio
import pytest
from playwright.sync_api import Page, expect

from support.servers import ServerProcess

from .conftest import Guards, Shot
from .ui import (
    WAIT_MS,
    added_count,
    app_layers,
    assert_raster_drawn,
    assert_tiles_answered,
    choose_mode,
    form_fields,
    json_of,
    layer_entry,
    open_dialog,
    requests_to,
    screen_rect,
    segment,
    start,
    status_line,
    vector_layer,
    wait_idle,
    wait_ready,
)

pytestmark = pytest.mark.browser


def result_features(guards: Guards, job_id: str) -> list:
    """The features of the job's result as the page fetched it."""
    answers = [
        r
        for r in guards.responses
        if f"/ml/jobs/{job_id}/result" in r.url and r.request.method == "GET" and r.ok
    ]
    assert answers, "the page did not fetch the job's result"
    return json_of(answers[0])["features"]


def job_of(guards: Guards, mode: str) -> tuple[dict, str]:
    """The form of the page's one job request for ``mode`` and the job's id."""
    posts = requests_to(guards.requests, "POST", f"/ml/jobs/segment/{mode}")
    assert len(posts) == 1, [r.url for r in posts]
    answer = posts[0].response()
    assert answer is not None and answer.status == 202, answer and answer.text()
    return form_fields(posts[0]), json_of(answer)["job_id"]


def test_automatic_on_a_geotiff(
    page: Page, sidecar: ServerProcess, scene_tif: Path, shot: Shot, guards: Guards
) -> None:
    dialog, info = start(page, sidecar, scene_tif, shot)
    raster = [layer for layer in app_layers(page) if layer["name"] == "scene.tif"]
    assert len(raster) == 1 and raster[0]["kind"] == "raster", app_layers(page)
    assert_tiles_answered(guards.responses, info["image_id"])

    # The dialog is modal in this mode: close it to reach the Layers panel, then come back.
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(dialog).to_be_hidden()
    assert_raster_drawn(page, "scene.tif", screen_rect(page, info["bounds_4326"]), shot)
    dialog = open_dialog(page)
    wait_ready(dialog)

    choose_mode(dialog, "Automatic (everything)")
    segment(page, dialog)
    count = added_count(dialog, "Automatic")
    wait_idle(page)
    shot("automatic result")
    assert count >= 2  # the scene has a lake, a forest and bare soil
    vector_layer(page, "Automatic", count)
    fields, job_id = job_of(guards, "automatic")
    assert fields["image_id"] == info["image_id"] and "file" not in fields
    assert fields["output_crs"] == "EPSG:4326"
    assert len(result_features(guards, job_id)) == count
    # The upload was the only time the pixels travelled.
    assert len(requests_to(guards.requests, "POST", "/ml/images")) == 1


def test_text_water(
    page: Page, sidecar: ServerProcess, scene_tif: Path, shot: Shot, guards: Guards
) -> None:
    dialog, info = start(page, sidecar, scene_tif, shot)
    assert_tiles_answered(guards.responses, info["image_id"])
    choose_mode(dialog, "Text prompt")
    dialog.get_by_label("Prompt", exact=True).fill("water")
    shot("prompt typed")
    segment(page, dialog)
    count = added_count(dialog, "water")
    wait_idle(page)
    shot("water result")
    assert count >= 1
    vector_layer(page, "water", count)
    fields, job_id = job_of(guards, "text")
    assert fields["prompt"] == "water" and fields["image_id"] == info["image_id"]
    features = result_features(guards, job_id)
    assert len(features) == count
    assert all(f["properties"]["prompt"] == "water" for f in features)
    # The answer is in WGS84 and lies on the image.
    west, south, east, north = info["bounds_4326"]
    for feature in features:
        for ring in _rings(feature["geometry"]):
            for lng, lat in ring:
                assert west - 1e-6 <= lng <= east + 1e-6 and south - 1e-6 <= lat <= north + 1e-6


def test_no_objects_found(
    page: Page, sidecar: ServerProcess, soil_tif: Path, shot: Shot, guards: Guards
) -> None:
    guards.expect_status(404)  # "no objects found" is the protocol's 404, a normal outcome
    dialog, _ = start(page, sidecar, soil_tif, shot)
    choose_mode(dialog, "Text prompt")
    dialog.get_by_label("Prompt", exact=True).fill("water")
    segment(page, dialog)
    message = 'No objects found for "water". Try a lower confidence threshold.'
    status = status_line(dialog)
    expect(status).to_have_text(message, timeout=WAIT_MS)
    shot("no objects")
    # Said as information, not as an error.
    assert status.get_attribute("role") == "status"
    attributes = status.evaluate("e => [...e.attributes].map(a => `${a.name}=${a.value}`)")
    assert not [a for a in attributes if re.search(r"error|fail|alert", a, re.IGNORECASE)]
    assert status.evaluate("e => !e.closest('[role=alert]')")
    assert [layer["name"] for layer in app_layers(page)] == ["soil.tif"]
    expect(layer_entry(page, "water")).to_have_count(0)


def test_geopackage_download_read_by_gdal(
    page: Page, sidecar: ServerProcess, scene_tif: Path, shot: Shot, tmp_path: Path
) -> None:
    dialog, _ = start(page, sidecar, scene_tif, shot)
    choose_mode(dialog, "Text prompt")
    dialog.get_by_label("Prompt", exact=True).fill("water")
    segment(page, dialog)
    count = added_count(dialog, "water")
    vector_layer(page, "water", count)
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(dialog).to_be_hidden()
    shot("water layer")
    button = layer_entry(page, "water").get_by_role(
        "button", name="Download water as GeoPackage", exact=True
    )
    with page.expect_download(timeout=WAIT_MS) as download_info:
        button.click()
    download = download_info.value
    assert download.failure() is None, download.failure()
    assert download.suggested_filename == "water.gpkg"
    saved = tmp_path / "water.gpkg"
    download.save_as(saved)
    info = pyogrio.read_info(saved)
    assert info["features"] == count
    assert info["crs"] == "EPSG:4326"
    assert info["geometry_type"] in ("Polygon", "MultiPolygon")
    _, _, geometry, _ = pyogrio.raw.read(saved)
    assert len(geometry) == count and all(g is not None for g in geometry)


def test_cancel_during_a_long_run(
    page: Page, sidecar: ServerProcess, large_tif: Path, shot: Shot, guards: Guards
) -> None:
    dialog, _ = start(page, sidecar, large_tif, shot)
    choose_mode(dialog, "Automatic (everything)")
    segment(page, dialog)
    progress = dialog.get_by_label("Progress", exact=True)
    cancel = dialog.get_by_role("button", name="Cancel", exact=True)
    expect(cancel).to_be_visible(timeout=WAIT_MS)
    # Under way: some tiles done, not all.
    page.wait_for_function(
        "el => Number(el.value) > 0", arg=progress.element_handle(), timeout=WAIT_MS
    )
    shot("running")
    _, job_id = job_of(guards, "automatic")
    cancel.click()
    expect(status_line(dialog)).to_have_text("Cancelled.", timeout=WAIT_MS)
    shot("cancelled")
    expect(cancel).to_be_hidden()
    assert [layer["name"] for layer in app_layers(page)] == ["large.tif"]
    assert requests_to(guards.requests, "DELETE", f"/ml/jobs/{job_id}")
    job = settled_job(sidecar.url, job_id)
    assert job["status"] == "cancelled", job
    assert job["progress"]["done"] < job["progress"]["total"], job


def settled_job(base: str, job_id: str) -> dict:
    """The job's status once it has left ``queued``/``running`` (it stops within a tile)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        job = httpx.get(f"{base}/ml/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _rings(geometry: dict) -> list:
    """The rings of a Polygon or MultiPolygon."""
    if geometry["type"] == "Polygon":
        return geometry["coordinates"]
    return [ring for polygon in geometry["coordinates"] for ring in polygon]
