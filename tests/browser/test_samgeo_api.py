"""The web app against segment-geospatial's real ``samgeo-api``, which has no ml/images and
no ml/jobs (docs/web-app.md, "A backend without ml/images").

The sidecar is in front of segment-geospatial 1.4.2's own ``samgeo.api`` app (its stand-in
model, ``tests/support/samgeo_harness.py``, makes the image's bright pixels the masks). The
page must fall back: the upload's 404 makes it send the file with every request, and the
job's 404 makes it run the synchronous ml/segment/text, with a spinner.

samgeo-api has no ``output_crs``: it answers in the raster's own CRS, which this page can
place only when it is WGS84, so the GeoTIFF here is in EPSG:4326.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect
from rasterio.transform import from_origin

from support.rasters import write_raster
from support.samgeo import SAMGEO_VERSION
from support.servers import ServerProcess

from .conftest import Guards, Shot, sidecar_for
from .ui import (
    added_count,
    app_layers,
    choose_mode,
    form_fields,
    json_of,
    layer_entry,
    layers_panel,
    open_app,
    open_dialog,
    record_statuses,
    requests_to,
    segment,
    status_line,
    statuses,
    vector_layer,
    wait_idle,
    wait_ready,
)

pytestmark = pytest.mark.browser

#: The GeoTIFF's grid: WGS84, 0.001° pixels, 96 x 128.
WEST, NORTH, STEP = 13.0, 52.0, 0.001
HEIGHT, WIDTH = 96, 128
#: Two bright squares (row0, row1, col0, col1) on a dark ground: the stand-in's two masks.
SQUARES = [(10, 40, 12, 52), (50, 86, 70, 118)]


@pytest.fixture(scope="module")
def samgeo_sidecar(
    samgeo_api: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The sidecar (and the web app) in front of the samgeo-api."""
    with sidecar_for(samgeo_api.url, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def bright_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB GeoTIFF in EPSG:4326: two bright squares on a dark ground."""
    data = np.full((3, HEIGHT, WIDTH), 30, dtype=np.uint8)
    for r0, r1, c0, c1 in SQUARES:
        data[:, r0:r1, c0:c1] = 220
    path = tmp_path_factory.mktemp("browser-samgeo-rasters") / "bright.tif"
    return write_raster(path, data, crs="EPSG:4326", transform=from_origin(WEST, NORTH, STEP, STEP))


def square_bounds(r0: int, r1: int, c0: int, c1: int) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of a square of pixels."""
    return (WEST + c0 * STEP, NORTH - r1 * STEP, WEST + c1 * STEP, NORTH - r0 * STEP)


def test_text_prompt_falls_back_to_the_file_and_a_synchronous_run(
    page: Page,
    samgeo_sidecar: ServerProcess,
    bright_tif: Path,
    shot: Shot,
    guards: Guards,
) -> None:
    # samgeo-api answers 404 at ml/images and ml/jobs: Chromium logs each as a console error.
    guards.expect_status(404)
    open_app(page, samgeo_sidecar.url)
    dialog = open_dialog(page)
    wait_ready(dialog)
    expect(dialog.get_by_label("Model", exact=True)).to_have_value("sam3")
    shot("dialog ready")
    status = json_of(
        next(r for r in guards.responses if r.url.split("?")[0].endswith("/ml/status"))
    )
    assert status["version"] == SAMGEO_VERSION, status

    # No ml/images: the file is kept in the page, and a GeoTIFF is not drawn (documented).
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/ml/images")
    ) as upload:
        dialog.get_by_label("Image", exact=True).set_input_files(str(bright_tif))
    assert upload.value.status == 404
    expect(status_line(dialog)).to_have_text(
        "This backend keeps no images: bright.tif is sent with each request, "
        "and the raster cannot be shown on the map."
    )
    assert app_layers(page) == []
    expect(layers_panel(page)).to_contain_text("No layers yet.")
    shot("file kept in the page")

    record_statuses(page)
    choose_mode(dialog, "Text prompt")
    dialog.get_by_label("Prompt", exact=True).fill("water")
    segment(page, dialog)
    count = added_count(dialog, "water")
    wait_idle(page)
    shot("water result")

    # What the user sees: the two squares as a layer "water (2)", and the spinner on the way.
    assert count == len(SQUARES)
    vector_layer(page, "water", count)
    assert [layer["name"] for layer in app_layers(page)] == ["water"]
    expect(layer_entry(page, "bright.tif")).to_have_count(0)
    # GeoJSON is the answer held; GeoPackage and GeoParquet would need a job's result.
    entry = layer_entry(page, "water")
    expect(entry.get_by_role("button", name="Download water as GeoJSON")).to_be_visible()
    for kind in ("GeoPackage", "GeoParquet"):
        expect(entry.get_by_role("button", name=f"Download water as {kind}")).to_be_hidden()
    seen = statuses(page)
    assert {"text": "Segmenting…", "busy": True} in seen, seen
    expect(status_line(dialog)).not_to_have_attribute("aria-busy", "true")
    expect(dialog.get_by_label("Progress", exact=True)).to_be_hidden()

    # The job was refused (404) and never made; the synchronous call carried the file.
    jobs = requests_to(guards.requests, "POST", "/ml/jobs/segment/text")
    assert len(jobs) == 1, [r.url for r in jobs]
    assert jobs[0].response() is not None and jobs[0].response().status == 404
    job_answers = [r for r in guards.responses if "/ml/jobs" in r.url and r.ok]
    assert not job_answers, [(r.url, r.status) for r in job_answers]
    runs = requests_to(guards.requests, "POST", "/ml/segment/text")
    assert len(runs) == 1, [r.url for r in runs]
    fields = form_fields(runs[0])
    assert fields["file"] == "bright.tif" and "image_id" not in fields, fields
    assert fields["prompt"] == "water"
    answer = runs[0].response()
    assert answer is not None and answer.status == 200, answer and answer.text()

    # samgeo-api's own answer, in WGS84, one polygon on each square.
    geojson = json_of(answer)
    assert geojson["crs"]["properties"]["name"].endswith("EPSG::4326")
    found = []
    for feature in geojson["features"]:
        assert feature["properties"]["score"] == pytest.approx(0.9)
        lngs, lats = zip(*feature["geometry"]["coordinates"][0], strict=True)
        found.append((min(lngs), min(lats), max(lngs), max(lats)))
    expected = [square_bounds(*square) for square in SQUARES]
    assert np.allclose(sorted(found), sorted(expected), atol=1e-9), found
