"""Exact georeferencing: polygon vertices land on the CRS coordinates of pixel corners.

The label image of :mod:`label_fixtures` is polygonized under north-up, south-up
and rotated grids, in a UTM CRS, in EPSG:4326 and in pixel space, directly and
end to end through ``segment_raster`` on GeoTIFFs written with rasterio.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from label_fixtures import (
    LABELS,
    FixedLabels,
    assert_same_vertices,
    pixel_polygons,
    through,
)
from pyproj import CRS
from rasterio.transform import from_origin

from geolibre_ml.segment import AutomaticPrompt, OutputOptions, segment_raster
from geolibre_ml.segment.geojson import geojson_bytes
from geolibre_ml.segment.vectorize import polygonize
from support.rasters import write_raster

# Pixel-space rasters (PNG, no transform) are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

# Pixel sizes and origins exact in binary, so that every vertex is exact.
UTM = "EPSG:32633"
NORTH_UP = from_origin(500000.0, 4000000.0, 10.0, 10.0)
SOUTH_UP = Affine(10.0, 0.0, 500000.0, 0.0, 10.0, 3999920.0)
ROTATED = (
    Affine.translation(500000.0, 4000000.0) @ Affine.rotation(30.0) @ Affine.scale(10.0, -10.0)
)
DEGREES = from_origin(12.0, 45.0, 0.25, 0.25)
# Decimal pixel sizes are not exact in binary: vertices are then within rounding.
FINE_DEGREES = from_origin(12.3, 45.7, 1e-4, 1e-4)

GRIDS = {
    "utm-north-up": (UTM, NORTH_UP),
    "utm-south-up": (UTM, SOUTH_UP),
    "utm-rotated-30": (UTM, ROTATED),
    "wgs84-north-up": ("EPSG:4326", DEGREES),
    "wgs84-fine": ("EPSG:4326", FINE_DEGREES),
    "wgs84-rotated-30": (
        "EPSG:4326",
        Affine.translation(12.0, 45.0) @ Affine.rotation(30.0) @ Affine.scale(0.25, -0.25),
    ),
}


def corner(transform_name: str, col: float, row: float) -> tuple[float, float]:
    """The CRS coordinates of pixel corner (col, row), written out by hand."""
    if transform_name == "utm-north-up":
        return 500000.0 + 10.0 * col, 4000000.0 - 10.0 * row
    if transform_name == "utm-south-up":
        return 500000.0 + 10.0 * col, 3999920.0 + 10.0 * row
    if transform_name == "utm-rotated-30":
        c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
        return (
            500000.0 + 10.0 * col * c + 10.0 * row * s,
            4000000.0 + 10.0 * col * s - 10.0 * row * c,
        )
    if transform_name == "wgs84-north-up":
        return 12.0 + 0.25 * col, 45.0 - 0.25 * row
    if transform_name == "wgs84-fine":
        return 12.3 + 1e-4 * col, 45.7 - 1e-4 * row
    if transform_name == "wgs84-rotated-30":
        c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
        return 12.0 + 0.25 * (col * c + row * s), 45.0 + 0.25 * (col * s - row * c)
    raise AssertionError(transform_name)


def by_hand(name: str, geometry: shapely.Geometry) -> shapely.Geometry:
    def apply(xy: np.ndarray) -> np.ndarray:
        return np.array([corner(name, x, y) for x, y in xy])

    return shapely.transform(geometry, apply)


EXACT = {"utm-north-up", "utm-south-up", "wgs84-north-up"}


@pytest.mark.parametrize("name", list(GRIDS))
def test_vertices_are_the_crs_coordinates_of_pixel_corners(name: str) -> None:
    _crs, transform = GRIDS[name]
    polygons = polygonize(LABELS, transform=transform)
    assert polygons.values.tolist() == [1, 2, 3, 4]
    for value, geometry in zip(polygons.values, polygons.geometries, strict=True):
        expected = pixel_polygons()[int(value)]
        # Bit for bit what affine's own ``transform @ (x, y)`` gives...
        assert_same_vertices(geometry, through(transform, expected))
        # ...which is the hand-computed coordinate: exactly where the arithmetic is
        # exact, within rounding otherwise.
        rtol = 0.0 if name in EXACT else 1e-12
        assert_same_vertices(geometry, by_hand(name, expected), rtol=rtol)


def test_north_up_square_has_exactly_its_four_corners() -> None:
    square = polygonize(LABELS, transform=NORTH_UP).geometries[0]
    # One vertex per corner (straight runs of pixel edges merged), closed, counter-clockwise.
    assert square.geom_type == "Polygon"
    coords = list(square.exterior.coords)
    assert len(coords) == 5 and coords[0] == coords[-1]
    assert sorted(coords[:-1]) == [
        (500010.0, 3999970.0),
        (500010.0, 3999990.0),
        (500030.0, 3999970.0),
        (500030.0, 3999990.0),
    ]
    assert square.exterior.is_ccw


def test_pixel_space_is_pixel_edges_x_right_y_down() -> None:
    polygons = polygonize(LABELS)
    expected = pixel_polygons()
    for value, geometry in zip(polygons.values, polygons.geometries, strict=True):
        assert_same_vertices(geometry, expected[int(value)])
    ring = polygons.geometries[1]
    assert ring.bounds == (5.0, 0.0, 9.0, 4.0)
    assert [tuple(h.bounds) for h in ring.interiors] == [(6.0, 1.0, 8.0, 3.0)]


@pytest.mark.parametrize("name", list(GRIDS))
def test_orientation_validity_and_holes(name: str) -> None:
    _crs, transform = GRIDS[name]
    geometries = polygonize(LABELS, transform=transform).geometries
    assert shapely.is_valid(geometries).all()
    parts = shapely.get_parts(geometries)
    # RFC 7946: exteriors counter-clockwise, holes clockwise, whatever the grid's handedness.
    assert shapely.is_ccw(shapely.get_exterior_ring(parts)).all()
    holes = [h for p in parts for h in p.interiors]
    assert len(holes) == 1
    assert not holes[0].is_ccw
    assert [g.geom_type for g in geometries] == [
        "Polygon",
        "Polygon",
        "MultiPolygon",
        "MultiPolygon",
    ]
    # Ground truth for the areas: pixels times the pixel's area in CRS units.
    pixel_area = abs(transform.determinant)
    np.testing.assert_allclose(shapely.area(geometries), np.array([4, 12, 2, 4]) * pixel_area)


# -- end to end: a GeoTIFF through segment_raster ---------------------------------------


def rgb(height: int = 8, width: int = 10) -> np.ndarray:
    return np.full((3, height, width), 120, dtype=np.uint8)


@pytest.mark.parametrize("name", ["utm-north-up", "utm-south-up", "utm-rotated-30", "wgs84-fine"])
def test_segment_raster_puts_objects_on_the_geotiff_grid(tmp_path: Path, name: str) -> None:
    crs, transform = GRIDS[name]
    path = write_raster(tmp_path / "scene.tif", rgb(), crs=crs, transform=transform)
    backend = FixedLabels()

    result = segment_raster(path, AutomaticPrompt(), backend)

    assert backend.chip_shapes == [(8, 10)]
    assert result.output_crs == CRS.from_user_input(crs)
    features = result.features
    assert [p["value"] for p in features.properties] == [1, 2, 3, 4]
    for props, geometry in zip(features.properties, features.geometries, strict=True):
        assert_same_vertices(geometry, through(transform, pixel_polygons()[props["value"]]))
    # The GeoJSON answer carries the same coordinates, exactly, and names the CRS.
    body = json.loads(geojson_bytes(features))
    code = CRS.from_user_input(crs).to_epsg()
    assert body["crs"] == {
        "type": "name",
        "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"},
    }
    for feature, geometry in zip(body["features"], features.geometries, strict=True):
        assert_same_vertices(shapely.geometry.shape(feature["geometry"]), geometry)


def test_segment_raster_properties(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "scene.tif", rgb(), crs=UTM, transform=NORTH_UP)
    result = segment_raster(path, AutomaticPrompt(), FixedLabels(), name="upload.tif")
    props = result.features.properties
    assert props[0] == {
        "value": 1,
        "score": 0.9,
        "area_m2": props[0]["area_m2"],
        "mode": "automatic",
        "model": "fixed",
        "model_id": "test",
        "source": "upload.tif",
    }
    assert list(props[0]) == ["value", "score", "area_m2", "mode", "model", "model_id", "source"]
    # Label 3 has no score: the key is absent, not NaN.
    assert "score" not in props[2]
    # 10 m UTM pixels near the central meridian: planar area over the scale factor squared.
    for p, pixels in zip(props, [4, 12, 2, 4], strict=True):
        assert p["area_m2"] == pytest.approx(pixels * 100 / 0.9996**2, rel=2e-6)


def test_nodata_pixels_never_fall_inside_a_polygon(tmp_path: Path) -> None:
    data = rgb()
    data[:, 1, 1] = 0  # nodata in a corner of square 1
    data[:, 2, 6] = 0  # nodata in the hole of square 2 (already background)
    data[:, 0, 7] = 0  # nodata on the ring of square 2: it cuts the ring open
    path = write_raster(tmp_path / "holes.tif", data, crs=UTM, transform=NORTH_UP, nodata=0)

    result = segment_raster(path, AutomaticPrompt(), FixedLabels())

    geometries = dict(
        zip(
            [p["value"] for p in result.features.properties],
            result.features.geometries,
            strict=True,
        )
    )
    nodata_centres = [(1.5, 1.5), (7.5, 0.5), (6.5, 2.5)]
    for x, y in nodata_centres:
        centre = shapely.Point(NORTH_UP @ (x, y))
        assert not any(g.contains(centre) for g in geometries.values())
    square = shapely.box(1, 1, 3, 3).difference(shapely.box(1, 1, 2, 2))
    assert_same_vertices(geometries[1], through(NORTH_UP, square))
    ring = pixel_polygons()[2].difference(shapely.box(7, 0, 8, 1))
    assert shapely.equals(geometries[2], through(NORTH_UP, ring))
    assert result.labels[1, 1] == 0 and result.labels[0, 7] == 0
    assert result.features.properties[0]["area_m2"] == pytest.approx(300 / 0.9996**2, rel=2e-6)


def test_raster_without_georeferencing_gives_pixel_coordinates(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "plain.png", rgb(), crs=None, transform=None, driver="PNG")
    result = segment_raster(path, AutomaticPrompt(), FixedLabels())
    assert result.output_crs is None
    for props, geometry in zip(result.features.properties, result.features.geometries, strict=True):
        assert_same_vertices(geometry, pixel_polygons()[props["value"]])
        assert "area_m2" not in props
    body = json.loads(geojson_bytes(result.features))
    assert "crs" not in body


def test_geotransform_without_crs_gives_map_coordinates_but_no_area(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", rgb(), crs=None, transform=NORTH_UP)
    result = segment_raster(path, AutomaticPrompt(), FixedLabels())
    assert result.output_crs is None
    assert result.features.transform_only
    for props, geometry in zip(result.features.properties, result.features.geometries, strict=True):
        assert_same_vertices(geometry, through(NORTH_UP, pixel_polygons()[props["value"]]))
        assert "area_m2" not in props
    assert "crs" not in json.loads(geojson_bytes(result.features))


def test_size_filters_count_pixels_of_the_whole_object(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "scene.tif", rgb(), crs=UTM, transform=NORTH_UP)

    def values(**options: int | None) -> list[int]:
        result = segment_raster(
            path, AutomaticPrompt(), FixedLabels(), output=OutputOptions(**options)
        )
        return [p["value"] for p in result.features.properties]

    assert values(min_size=3) == [1, 2, 4]  # object 3 has 2 pixels (two parts of 1)
    assert values(min_size=4, max_size=4) == [1, 4]  # 4 pixels over two parts counts as 4
    assert values(max_size=5) == [1, 3, 4]
    assert values(max_size=0) == values(max_size=None) == values(max_size=-1) == [1, 2, 3, 4]
    assert values(min_size=13) == []
