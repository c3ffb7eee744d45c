"""From a backend's label image to features: build_features and simplify_tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from label_fixtures import (
    LABELS,
    SCORES,
    FixedLabels,
    assert_same_vertices,
    pixel_polygons,
    voronoi,
)
from pyproj import CRS
from rasterio.transform import from_origin

from geolibre_ml.segment import AutomaticPrompt, InvalidRequest, OutputOptions, segment_raster
from geolibre_ml.segment.finish import Finishing
from geolibre_ml.segment.masks import MaskSet
from geolibre_ml.segment.pipeline import build_features
from support.rasters import write_raster

# Pixel-space rasters (PNG, no transform) are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = CRS.from_epsg(32633)
GRID = from_origin(500000.0, 4000000.0, 2.0, 2.0)


def tiles(seed: int = 4) -> np.ndarray:
    """Irregular regions covering a 48 x 48 image, plus one inside another."""
    labels = voronoi(48, 7, seed=seed)
    labels[20:23, 20:23] = 8
    return labels


def assert_clean_coverage(geometries: np.ndarray, before: np.ndarray) -> None:
    assert shapely.is_valid(geometries).all()
    assert shapely.coverage_is_valid(geometries)
    union = shapely.union_all(geometries)
    assert shapely.area(geometries).sum() == pytest.approx(union.area, rel=1e-9)  # no overlap
    assert union.geom_type == "Polygon" and not union.interiors  # no gap
    for i in range(len(before)):
        for j in range(i + 1, len(before)):
            if shapely.intersection(before[i], before[j]).length > 0:
                assert shapely.intersection(geometries[i], geometries[j]).length > 0


def test_build_features_in_a_crs() -> None:
    features, labels = build_features(
        MaskSet(LABELS.copy(), SCORES.copy()),
        valid=None,
        finishing=Finishing(
            GRID, UTM, True, OutputOptions(min_size=3), base={"mode": "automatic", "model": "fixed"}
        ),
    )
    assert [p["value"] for p in features.properties] == [1, 2, 4]
    assert features.crs == UTM and not features.transform_only
    np.testing.assert_array_equal(labels, np.where(LABELS == 3, 0, LABELS))
    assert features.properties[0]["score"] == 0.9
    assert features.properties[0]["mode"] == "automatic"
    assert features.properties[0]["area_m2"] == pytest.approx(16 / 0.9996**2, rel=2e-6)
    # Nine significant digits, whatever the size.
    assert len(repr(features.properties[0]["area_m2"]).replace(".", "")) <= 9


def test_build_features_with_scores_missing_for_some_labels() -> None:
    # A backend may return fewer scores than labels: those objects get no score.
    features, _ = build_features(
        MaskSet(LABELS.copy(), np.array([np.nan, 0.5], dtype=np.float32)),
        valid=None,
        finishing=Finishing(GRID, None, True, OutputOptions()),
    )
    assert [p.get("score") for p in features.properties] == [0.5, None, None, None]
    assert features.crs is None and features.transform_only
    assert all("area_m2" not in p for p in features.properties)


def test_simplify_tolerance_through_segment_raster_keeps_a_clean_coverage(
    tmp_path: Path,
) -> None:
    labels = tiles()
    path = write_raster(
        tmp_path / "tiles.tif", np.full((3, 48, 48), 90, np.uint8), crs=UTM, transform=GRID
    )
    backend = FixedLabels(labels, np.full(9, 0.7, dtype=np.float32))
    plain = segment_raster(path, AutomaticPrompt(), backend)
    simple = segment_raster(
        path, AutomaticPrompt(), backend, output=OutputOptions(simplify_tolerance=5.0)
    )
    before, after = plain.features.geometries, simple.features.geometries
    assert [p["value"] for p in simple.features.properties] == list(range(1, 9))
    assert_clean_coverage(after, before)
    assert shapely.get_num_coordinates(after).sum() < shapely.get_num_coordinates(before).sum() / 2
    # Areas stay those of the objects' pixels, not of the simplified outlines.
    assert [p["area_m2"] for p in simple.features.properties] == pytest.approx(
        [p["area_m2"] for p in plain.features.properties], rel=1e-8
    )


def test_output_crs_without_simplification_keeps_a_clean_coverage(tmp_path: Path) -> None:
    labels = tiles()
    path = write_raster(
        tmp_path / "tiles.tif", np.full((3, 48, 48), 90, np.uint8), crs=UTM, transform=GRID
    )
    backend = FixedLabels(labels, np.full(9, 0.7, dtype=np.float32))
    native = segment_raster(path, AutomaticPrompt(), backend).features.geometries
    result = segment_raster(
        path, AutomaticPrompt(), backend, output=OutputOptions(output_crs="EPSG:4326")
    )
    # Neighbours share every vertex of their common edges, so no sliver opens between
    # them in degrees.
    assert_clean_coverage(result.features.geometries, native)


def test_simplify_tolerance_is_in_output_crs_units(tmp_path: Path) -> None:
    labels = tiles()
    path = write_raster(
        tmp_path / "tiles.tif", np.full((3, 48, 48), 90, np.uint8), crs=UTM, transform=GRID
    )
    backend = FixedLabels(labels, np.full(9, 0.7, dtype=np.float32))

    def vertices(tolerance: float) -> int:
        result = segment_raster(
            path,
            AutomaticPrompt(),
            backend,
            output=OutputOptions(output_crs="EPSG:4326", simplify_tolerance=tolerance),
        )
        assert_clean_coverage(result.features.geometries, result.features.geometries)
        return int(shapely.get_num_coordinates(result.features.geometries).sum())

    # 5 m is about 5e-5 degrees here: 5 "units" of degrees would erase everything but
    # the topology, 1e-9 degrees (0.1 mm) changes nothing but the collinear vertices.
    assert vertices(1e-9) > vertices(5e-5) > vertices(5.0)


def test_simplify_in_pixel_space(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "plain.png",
        np.full((3, 8, 10), 90, np.uint8),
        crs=None,
        transform=None,
        driver="PNG",
    )
    result = segment_raster(
        path, AutomaticPrompt(), FixedLabels(), output=OutputOptions(simplify_tolerance=0.1)
    )
    # Pixel-edge outlines have nothing to simplify below a pixel: the same shapes.
    for props, geometry in zip(result.features.properties, result.features.geometries, strict=True):
        assert shapely.equals(geometry, pixel_polygons()[props["value"]])
    square = result.features.geometries[0]
    assert_same_vertices(square, pixel_polygons()[1])


def test_output_crs_for_a_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "plain.png",
        np.full((3, 8, 10), 90, np.uint8),
        crs=None,
        transform=None,
        driver="PNG",
    )
    with pytest.raises(InvalidRequest, match="output_crs needs a georeferenced raster"):
        segment_raster(
            path, AutomaticPrompt(), FixedLabels(), output=OutputOptions(output_crs="EPSG:4326")
        )
