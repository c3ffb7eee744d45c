"""A PNG without georeferencing: shown in pixel space, its results drawn over it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support.servers import ServerProcess

from .conftest import Guards, Shot
from .ui import (
    added_count,
    app_layers,
    assert_raster_drawn,
    choose_mode,
    form_fields,
    open_dialog,
    requests_to,
    screen_rect,
    segment,
    start,
    vector_layer,
    wait_idle,
    wait_ready,
)

pytestmark = pytest.mark.browser

#: Where the page drew the image (its ``image`` source's corners), the basemap's
#: visibility, and the layer's features: its source's data and what is rendered of it, in
#: longitude/latitude.
DRAWN = """async (layerId) => {
    const map = window.geolibre.map;
    const style = map.getStyle();
    const images = Object.values(style.sources).filter(s => s.type === 'image');
    const own = style.layers.filter(l => l.source === layerId).map(l => l.id);
    const rendered = own.length ? map.queryRenderedFeatures({layers: own}) : [];
    const source = map.getSource(layerId);
    const data = source && source.getData ? await source.getData() : null;
    const basemap = style.layers.filter(l => l.id.startsWith('countries'))
        .map(l => map.getLayoutProperty(l.id, 'visibility') || 'visible');
    return {images: images.map(s => s.coordinates), styleLayers: own, basemap,
            rendered: rendered.length, features: data ? data.features : []};
}"""

#: The PNG scene's lake: centre and size as shares of the image's width and height
#: (see ``support.rasters.scene``), x right and y down.
LAKE_CENTRE, LAKE_SIZE = (0.3, 0.35), (0.36, 0.4)


def mercator_y(lat: float) -> float:
    """Web Mercator's y (up) of a latitude: the page maps pixels linearly into it."""
    return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def _points(geometry: dict) -> list:
    """Every vertex of a Polygon or MultiPolygon."""
    coords = geometry["coordinates"]
    rings = coords if geometry["type"] == "Polygon" else [r for p in coords for r in p]
    return [point for ring in rings for point in ring]


def test_png_in_pixel_space(
    page: Page, sidecar: ServerProcess, scene_png: Path, shot: Shot, guards: Guards
) -> None:
    dialog, info = start(page, sidecar, scene_png, shot)
    assert info["crs"] is None and info["bounds_4326"] is None
    (raster,) = [layer for layer in app_layers(page) if layer["name"] == "photo.png"]
    assert raster["kind"] == "raster"
    previews = [
        r for r in guards.responses if f"/ml/images/{info['image_id']}/preview.png" in r.url
    ]
    assert previews and all(r.status == 200 for r in previews), [
        (r.url, r.status) for r in previews
    ]
    assert not [r for r in guards.requests if "/tiles/" in r.url]  # no tiles without a CRS

    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(dialog).to_be_hidden()
    drawn = page.evaluate(DRAWN, raster["id"])
    assert len(drawn["images"]) == 1, drawn
    corners = drawn["images"][0]
    assert all(v == "none" for v in drawn["basemap"]), f"basemap shown: {drawn['basemap']}"
    lngs, lats = [c[0] for c in corners], [c[1] for c in corners]
    west, east, south, north = min(lngs), max(lngs), min(lats), max(lats)
    assert_raster_drawn(page, "photo.png", screen_rect(page, [west, south, east, north]), shot)

    dialog = open_dialog(page)
    wait_ready(dialog)
    choose_mode(dialog, "Automatic (everything)")
    segment(page, dialog)
    count = added_count(dialog, "Automatic")
    layer = vector_layer(page, "Automatic", count)
    dialog.get_by_role("button", name="Close", exact=True).click()
    # The answer is in pixels; the page must not ask for a reprojection it cannot have.
    (job,) = requests_to(guards.requests, "POST", "/ml/jobs/segment/automatic")
    assert "output_crs" not in form_fields(job)
    page.evaluate(
        "() => window.geolibre.map.fitBounds(%s, {duration: 0})" % [[west, south], [east, north]]
    )
    wait_idle(page)
    shot("results over the image")
    drawn = page.evaluate(DRAWN, layer["id"])
    assert drawn["rendered"], f"none of the layer's features is drawn: {drawn['styleLayers']}"
    assert len(drawn["features"]) == count
    # Every vertex lies on the image's rectangle (a small margin for rounding), and the
    # lake's outline is where the lake is in the image: not flipped, shifted or scaled.
    top, bottom = mercator_y(north), mercator_y(south)
    margin = 1e-3
    lake_found = []
    for feature in drawn["features"]:
        rel = [
            ((lng - west) / (east - west), (top - mercator_y(lat)) / (top - bottom))
            for lng, lat in _points(feature["geometry"])
        ]
        for x, y in rel:
            assert -margin <= x <= 1 + margin and -margin <= y <= 1 + margin, (x, y)
        xs, ys = [x for x, _ in rel], [y for _, y in rel]
        centre = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        size = (max(xs) - min(xs), max(ys) - min(ys))
        pairs = zip(centre + size, LAKE_CENTRE + LAKE_SIZE, strict=True)
        if all(abs(a - b) < 0.05 for a, b in pairs):
            lake_found.append(feature)
    assert len(lake_found) == 1, "no feature outlines the lake where the image shows it"
