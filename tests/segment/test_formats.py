"""The answer formats: geojson, geotiff, png, json and detections, read back and checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from label_fixtures import LABELS, FixedLabels, assert_same_vertices, pixel_polygons, through
from pyproj import CRS, Transformer
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from geolibre_ml.segment import (
    AutomaticPrompt,
    InvalidRequest,
    OutputOptions,
    SegmentResult,
    TextPrompt,
    segment_raster,
)
from geolibre_ml.segment.features import FeatureSet
from geolibre_ml.segment.formats import (
    MEDIA_TYPES,
    OUTPUT_FORMATS,
    check_format,
    render,
)
from geolibre_ml.segment.geojson import geojson_bytes
from support.rasters import write_raster

# Pixel-space rasters (PNG, no transform) are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

NORTH_UP = from_origin(500000.0, 4000000.0, 10.0, 10.0)
ROTATED = (
    Affine.translation(500000.0, 4000000.0) @ Affine.rotation(30.0) @ Affine.scale(10.0, -10.0)
)
# Expected pixel boxes [xmin, ymin, xmax, ymax] of the fixture's objects (max exclusive).
BOXES = {1: [1, 1, 3, 3], 2: [5, 0, 9, 4], 3: [1, 5, 3, 7], 4: [5, 5, 9, 7]}


def run(
    tmp_path: Path,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = NORTH_UP,
    backend: FixedLabels | None = None,
    output: OutputOptions | None = None,
    prompt: object = None,
) -> SegmentResult:
    backend = backend or FixedLabels()
    height, width = backend.labels.shape
    driver = "GTiff" if transform is not None or crs is not None else "PNG"
    suffix = ".tif" if driver == "GTiff" else ".png"
    path = write_raster(
        tmp_path / f"scene{suffix}",
        np.full((3, height, width), 100, dtype=np.uint8),
        crs=crs,
        transform=transform,
        driver=driver,
    )
    return segment_raster(path, prompt or AutomaticPrompt(), backend, output=output)


def read_raster(body: bytes) -> tuple[np.ndarray, dict]:
    with MemoryFile(body) as memfile, memfile.open() as ds:
        profile = {
            "driver": ds.driver,
            "dtype": ds.dtypes[0],
            "count": ds.count,
            "nodata": ds.nodata,
            "crs": ds.crs,
            "transform": ds.transform,
            "tags": ds.tags(),
            "description": ds.descriptions[0],
        }
        return ds.read(1), profile


def strict_json(body: bytes) -> dict:
    """Parse as standard JSON: NaN or Infinity would be an error."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(body, parse_constant=refuse)


# -- format names --------------------------------------------------------------------


def test_format_names_and_media_types() -> None:
    assert OUTPUT_FORMATS == ("geojson", "geotiff", "png", "json", "detections")
    assert set(MEDIA_TYPES) == set(OUTPUT_FORMATS)
    assert MEDIA_TYPES["geotiff"] == "image/tiff" and MEDIA_TYPES["png"] == "image/png"
    assert check_format(" GeoTIFF ") == "geotiff"
    assert check_format("") == "geojson"
    with pytest.raises(InvalidRequest, match=r"Unknown output_format 'shp'.*geojson, geotiff"):
        check_format("shp")


# -- geotiff -------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [NORTH_UP, ROTATED], ids=["north-up", "rotated"])
def test_geotiff_is_the_label_image_on_the_input_grid(tmp_path: Path, transform: Affine) -> None:
    result = run(tmp_path, transform=transform, prompt=TextPrompt("water"))
    labels, profile = read_raster(render(result, "geotiff"))

    np.testing.assert_array_equal(labels, LABELS)
    assert profile["driver"] == "GTiff"
    assert profile["dtype"] == "uint8" and profile["count"] == 1 and profile["nodata"] == 0
    assert profile["transform"] == transform
    assert profile["crs"] == rasterio.crs.CRS.from_epsg(32633)
    assert profile["crs"].to_epsg() == 32633
    assert profile["tags"]["prompt"] == "water" and profile["tags"]["model"] == "fixed"
    assert profile["description"] == "object label (0 = none)"


def test_geotiff_keeps_a_custom_crs(tmp_path: Path) -> None:
    custom = CRS.from_proj4("+proj=tmerc +lat_0=10 +lon_0=13.3 +k=0.9996 +x_0=500 +ellps=GRS80")
    result = run(tmp_path, crs=custom.to_wkt())
    _labels, profile = read_raster(render(result, "geotiff"))
    assert CRS.from_wkt(profile["crs"].to_wkt()).equals(custom)


@pytest.mark.parametrize(
    ("top", "dtype"),
    [(255, "uint8"), (256, "uint16"), (65535, "uint16"), (65536, "uint32"), (70000, "uint32")],
)
def test_geotiff_picks_the_smallest_type_that_holds_every_label(
    tmp_path: Path, top: int, dtype: str
) -> None:
    labels = LABELS.copy()
    labels[labels == 4] = top
    backend = FixedLabels(labels, np.full(top + 1, 0.5, dtype=np.float32))
    result = run(tmp_path, backend=backend)
    back, profile = read_raster(render(result, "geotiff"))
    assert profile["dtype"] == dtype
    np.testing.assert_array_equal(back, labels)


def test_geotiff_after_filters_and_without_georeferencing(tmp_path: Path) -> None:
    result = run(tmp_path, crs=None, transform=None, output=OutputOptions(min_size=3))
    back, profile = read_raster(render(result, "geotiff"))
    np.testing.assert_array_equal(back, np.where(LABELS == 3, 0, LABELS))
    assert profile["crs"] is None
    assert profile["transform"] == Affine.identity()


# -- png -----------------------------------------------------------------------------


def test_png_is_an_8_bit_label_image(tmp_path: Path) -> None:
    result = run(tmp_path)
    body = render(result, "png")
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    labels, profile = read_raster(body)
    assert profile["driver"] == "PNG" and profile["dtype"] == "uint8"
    np.testing.assert_array_equal(labels, LABELS)


def test_png_is_16_bit_beyond_255_objects_and_refuses_beyond_65535(tmp_path: Path) -> None:
    labels = LABELS.copy()
    labels[labels == 4] = 300
    result = run(tmp_path, backend=FixedLabels(labels, np.full(301, 0.5, dtype=np.float32)))
    back, profile = read_raster(render(result, "png"))
    assert profile["dtype"] == "uint16"
    np.testing.assert_array_equal(back, labels)

    labels[labels == 300] = 65536
    result = run(tmp_path, backend=FixedLabels(labels, np.full(65537, 0.5, dtype=np.float32)))
    with pytest.raises(InvalidRequest, match=r"more than 65,535 objects.*output_format=geotiff"):
        render(result, "png")


# -- json ----------------------------------------------------------------------------


def test_json_gives_pixel_edge_boxes_and_scores(tmp_path: Path) -> None:
    body = strict_json(render(run(tmp_path), "json"))
    assert body["image_width"] == 10 and body["image_height"] == 8
    assert body["num_detections"] == 4
    detections = body["detections"]
    assert [d["value"] for d in detections] == [1, 2, 3, 4]
    assert [d["id"] for d in detections] == [1, 2, 3, 4]
    assert {d["value"]: d["bbox"] for d in detections} == BOXES
    assert [(d["width"], d["height"]) for d in detections] == [(2, 2), (4, 4), (2, 2), (4, 2)]
    assert [d.get("score") for d in detections] == [0.9, 0.8, None, 0.6]
    assert "score" not in detections[2]  # no score: no key, never NaN


def test_json_boxes_are_pixels_whatever_the_georeferencing(tmp_path: Path) -> None:
    body = strict_json(render(run(tmp_path, transform=ROTATED), "json"))
    assert {d["value"]: d["bbox"] for d in body["detections"]} == BOXES


# -- detections ------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [NORTH_UP, ROTATED], ids=["north-up", "rotated"])
def test_detections_are_box_polygons_on_the_grid(tmp_path: Path, transform: Affine) -> None:
    body = strict_json(render(run(tmp_path, transform=transform), "detections"))
    assert body["type"] == "FeatureCollection"
    assert body["num_detections"] == 4
    assert body["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    for feature in body["features"]:
        props = feature["properties"]
        x0, y0, x1, y1 = BOXES[props["value"]]
        assert props["bbox_pixel"] == [x0, y0, x1, y1]
        polygon = shapely.geometry.shape(feature["geometry"])
        # All four corners of the box go through the transform: a rotated grid gives
        # a rotated rectangle, exactly.
        assert_same_vertices(polygon, through(transform, shapely.box(x0, y0, x1, y1)))
        assert polygon.exterior.is_ccw
        assert props["mode"] == "automatic" and props["model"] == "fixed"
    assert [f["properties"].get("score") for f in body["features"]] == [0.9, 0.8, None, 0.6]


def test_detections_follow_output_crs(tmp_path: Path) -> None:
    result = run(tmp_path, transform=ROTATED, output=OutputOptions(output_crs="EPSG:4326"))
    body = strict_json(render(result, "detections"))
    assert body["crs"]["properties"] == {"name": "urn:ogc:def:crs:EPSG::4326"}
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    for feature in body["features"]:
        x0, y0, x1, y1 = BOXES[feature["properties"]["value"]]
        box = through(ROTATED, shapely.box(x0, y0, x1, y1))
        expected = shapely.transform(box, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
        assert_same_vertices(shapely.geometry.shape(feature["geometry"]), expected)


def test_detections_in_pixel_space(tmp_path: Path) -> None:
    body = strict_json(render(run(tmp_path, crs=None, transform=None), "detections"))
    assert "crs" not in body
    for feature in body["features"]:
        x0, y0, x1, y1 = BOXES[feature["properties"]["value"]]
        assert_same_vertices(
            shapely.geometry.shape(feature["geometry"]), shapely.box(x0, y0, x1, y1)
        )


def test_no_objects_gives_empty_collections(tmp_path: Path) -> None:
    empty = FixedLabels(np.zeros((8, 10), dtype=np.int32), np.full(1, np.nan, np.float32))
    result = run(tmp_path, backend=empty)
    assert strict_json(render(result, "detections"))["features"] == []
    assert strict_json(render(result, "json"))["num_detections"] == 0
    assert strict_json(render(result, "geojson"))["features"] == []


# -- geojson -------------------------------------------------------------------------


def test_geojson_answer(tmp_path: Path) -> None:
    result = run(tmp_path, prompt=TextPrompt("lakes"))
    body = strict_json(render(result, "geojson"))
    assert body["type"] == "FeatureCollection"
    assert body["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    assert [f["id"] for f in body["features"]] == [1, 2, 3, 4]
    assert [f["geometry"]["type"] for f in body["features"]] == [
        "Polygon",
        "Polygon",
        "MultiPolygon",
        "MultiPolygon",
    ]
    for feature in body["features"]:
        props = feature["properties"]
        assert {"value", "area_m2", "mode", "prompt", "model", "source"} <= set(props)
        assert props["prompt"] == "lakes" and props["mode"] == "text"
        assert props["source"] == "scene.tif"
        assert_same_vertices(
            shapely.geometry.shape(feature["geometry"]),
            through(NORTH_UP, pixel_polygons()[props["value"]]),
        )
        # GeoJSON holes and parts keep RFC 7946 orientation.
        rings = feature["geometry"]["coordinates"]
        polygons = [rings] if feature["geometry"]["type"] == "Polygon" else rings
        for polygon in polygons:
            assert shapely.LinearRing(polygon[0]).is_ccw
            assert all(not shapely.LinearRing(hole).is_ccw for hole in polygon[1:])


def test_geojson_leaves_out_values_json_cannot_hold() -> None:
    features = FeatureSet(
        np.array([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], dtype=object),
        [
            {"value": 1, "score": float("nan"), "area_m2": np.float32("nan"), "mode": "text"},
            {"value": np.int64(2), "score": np.float32(0.25), "area_m2": float("inf")},
        ],
    )
    body = strict_json(geojson_bytes(features))
    assert [f["properties"] for f in body["features"]] == [
        {"value": 1, "mode": "text"},
        {"value": 2, "score": 0.25},
    ]
    # The caller's properties are left as they were.
    assert np.isnan(features.properties[0]["score"])


def test_geojson_extra_members() -> None:
    features = FeatureSet(np.array([shapely.box(0, 0, 1, 1)], dtype=object), [{"value": 1}])
    parsed = strict_json(geojson_bytes(features, {"num_detections": 1}))
    assert parsed["num_detections"] == 1
    assert "crs" not in parsed
    geometry = shapely.geometry.shape(parsed["features"][0]["geometry"])
    assert_same_vertices(geometry, shapely.box(0, 0, 1, 1))
