"""The five output formats, for a georeferenced GeoTIFF and for PNG/JPEG in pixel space."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from support.rasters import UTM_TRANSFORM

from .helpers import HEIGHT, LAKE_BOX, WIDTH, Images, geometries, pixel_to_map, segment

URN_UTM = "urn:ogc:def:crs:EPSG::32633"
MODES = {
    "text": {"prompt": "water"},
    "automatic": {},
    "predict": {"boxes": json.dumps([LAKE_BOX])},
}


def georeferenced(images: Images, mode: str) -> Path:
    """The GeoTIFF to test ``mode`` on (automatic on RGB: a few hundred objects, not 9,000)."""
    return images.rgb_tif if mode == "automatic" else images.multispectral


def read_raster(content: bytes) -> tuple[np.ndarray, dict]:
    """Band 1 and the profile of an answered GeoTIFF or PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(content) as memfile, memfile.open() as src:
            return src.read(1), {
                "driver": src.driver,
                "crs": src.crs,
                "transform": src.transform,
                "count": src.count,
                "nodata": src.nodata,
            }


def label_values(collection: dict) -> set[int]:
    return {f["properties"]["value"] for f in collection["features"]}


@pytest.mark.parametrize("mode", list(MODES))
def test_geojson_is_a_feature_collection_in_the_raster_crs(
    client: httpx.Client, images: Images, mode: str
) -> None:
    response = segment(
        client, mode, georeferenced(images, mode), {**MODES[mode], "output_format": "geojson"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert body["crs"] == {"type": "name", "properties": {"name": URN_UTM}}
    assert len(body["features"]) >= 1
    west, north = pixel_to_map(0, 0)
    east, south = pixel_to_map(WIDTH, HEIGHT)
    minx, miny, maxx, maxy = shapely.total_bounds(geometries(body))
    assert west <= minx < maxx <= east and south <= miny < maxy <= north
    for feature in body["features"]:
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        assert shapely.geometry.shape(feature["geometry"]).is_valid
        assert {"value", "area_m2", "mode", "model", "source"} <= set(feature["properties"])


@pytest.mark.parametrize("mode", list(MODES))
def test_geotiff_is_the_label_image_with_the_input_georeferencing(
    client: httpx.Client, images: Images, mode: str
) -> None:
    response = segment(
        client, mode, georeferenced(images, mode), {**MODES[mode], "output_format": "geotiff"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/tiff"
    assert 'filename="mask.tif"' in response.headers["content-disposition"]
    labels, profile = read_raster(response.content)
    assert profile["driver"] == "GTiff"
    assert labels.shape == (HEIGHT, WIDTH)
    assert profile["crs"] == rasterio.crs.CRS.from_epsg(32633)
    assert profile["transform"] == UTM_TRANSFORM
    geojson = segment(client, mode, georeferenced(images, mode), MODES[mode]).json()
    assert set(np.unique(labels)) - {0} == label_values(geojson)


@pytest.mark.parametrize("mode", list(MODES))
def test_png_is_the_label_image(client: httpx.Client, images: Images, mode: str) -> None:
    response = segment(client, mode, images.rgb_tif, {**MODES[mode], "output_format": "png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    labels, profile = read_raster(response.content)
    assert profile["driver"] == "PNG"
    assert labels.shape == (HEIGHT, WIDTH)
    geojson = segment(client, mode, images.rgb_tif, MODES[mode]).json()
    assert set(np.unique(labels)) - {0} == label_values(geojson)


@pytest.mark.parametrize("mode", list(MODES))
def test_json_lists_pixel_boxes_and_scores(client: httpx.Client, images: Images, mode: str) -> None:
    response = segment(
        client, mode, georeferenced(images, mode), {**MODES[mode], "output_format": "json"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["image_width"] == WIDTH and body["image_height"] == HEIGHT
    assert body["num_detections"] == len(body["detections"]) >= 1
    for item in body["detections"]:
        x0, y0, x1, y1 = item["bbox"]
        assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
        assert item["width"] == x1 - x0 and item["height"] == y1 - y0
        if mode != "automatic":
            assert 0 <= item["score"] <= 1
    if mode == "predict":
        (item,) = body["detections"]
        bx0, by0, bx1, by1 = LAKE_BOX
        x0, y0, x1, y1 = item["bbox"]
        assert bx0 - 1 <= x0 and by0 - 1 <= y0 and x1 <= bx1 + 1 and y1 <= by1 + 1


@pytest.mark.parametrize("mode", list(MODES))
def test_detections_are_box_polygons_in_the_raster_crs(
    client: httpx.Client, images: Images, mode: str
) -> None:
    response = segment(
        client, mode, georeferenced(images, mode), {**MODES[mode], "output_format": "detections"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert body["crs"]["properties"]["name"] == URN_UTM
    assert body["num_detections"] == len(body["features"]) >= 1
    boxes = segment(
        client, mode, georeferenced(images, mode), {**MODES[mode], "output_format": "json"}
    )
    by_value = {d["value"]: d["bbox"] for d in boxes.json()["detections"]}
    for feature in body["features"]:
        polygon = shapely.geometry.shape(feature["geometry"])
        x0, y0, x1, y1 = feature["properties"]["bbox_pixel"]
        assert feature["properties"]["bbox_pixel"] == by_value[feature["properties"]["value"]]
        left, top = pixel_to_map(x0, y0)
        right, bottom = pixel_to_map(x1, y1)
        assert polygon.equals(shapely.box(left, bottom, right, top))


def test_detections_follow_output_crs(client: httpx.Client, images: Images) -> None:
    response = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water", "output_format": "detections", "output_crs": "EPSG:4326"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    minx, miny, maxx, maxy = shapely.total_bounds(geometries(body))
    assert 14.9 < minx < maxx < 15.1 and 36.0 < miny < maxy < 36.2


@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize("mode", list(MODES))
def test_images_without_georeferencing_answer_in_pixels(
    client: httpx.Client, images: Images, kind: str, mode: str
) -> None:
    image = images.png if kind == "png" else images.jpeg
    response = segment(client, mode, image, MODES[mode])
    assert response.status_code == 200
    body = response.json()
    assert "crs" not in body
    for feature in body["features"]:
        assert "area_m2" not in feature["properties"]
        assert feature["properties"]["source"] == image.name
    minx, miny, maxx, maxy = shapely.total_bounds(geometries(body))
    assert 0 <= minx < maxx <= WIDTH and 0 <= miny < maxy <= HEIGHT
    if mode == "predict":
        # Pixel space, y down: the object lies in the pixel box itself.
        box = shapely.box(*LAKE_BOX)
        assert box.buffer(1).contains(shapely.union_all(geometries(body)))


def test_pixel_space_raster_and_box_formats(client: httpx.Client, images: Images) -> None:
    data = {"prompt": "water"}
    geotiff = segment(client, "text", images.png, {**data, "output_format": "geotiff"})
    assert geotiff.status_code == 200
    labels, profile = read_raster(geotiff.content)
    assert labels.shape == (HEIGHT, WIDTH)
    assert profile["crs"] is None
    png = segment(client, "text", images.png, {**data, "output_format": "png"})
    assert np.array_equal(read_raster(png.content)[0], labels)
    boxes = segment(client, "text", images.png, {**data, "output_format": "json"}).json()
    assert boxes["num_detections"] == len(set(np.unique(labels)) - {0})
    detections = segment(client, "text", images.png, {**data, "output_format": "detections"})
    body = detections.json()
    assert "crs" not in body
    for feature in body["features"]:
        x0, y0, x1, y1 = feature["properties"]["bbox_pixel"]
        assert shapely.geometry.shape(feature["geometry"]).equals(shapely.box(x0, y0, x1, y1))


def test_output_format_is_case_insensitive(client: httpx.Client, images: Images) -> None:
    response = segment(client, "text", images.png, {"prompt": "water", "output_format": "GeoJSON"})
    assert response.status_code == 200
    assert response.json()["type"] == "FeatureCollection"
