"""A label image with known objects, the polygons it must give, and a test backend.

The image (8 rows x 10 columns) holds, in pixel coordinates (x right, y down):

1. a 2 x 2 square, box (1, 1) - (3, 3);
2. a 4 x 4 square with a 2 x 2 hole, box (5, 0) - (9, 4) minus (6, 1) - (8, 3);
3. two pixels touching only at a corner: two parts under 4-connectivity;
4. a two-part object: box (5, 6) - (7, 7) and box (8, 5) - (9, 7).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import shapely
from affine import Affine

from geolibre_ml.segment.backends import Backend
from geolibre_ml.segment.masks import MaskSet

LABELS = np.array(
    [
        [0, 0, 0, 0, 0, 2, 2, 2, 2, 0],
        [0, 1, 1, 0, 0, 2, 0, 0, 2, 0],
        [0, 1, 1, 0, 0, 2, 0, 0, 2, 0],
        [0, 0, 0, 0, 0, 2, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 3, 0, 0, 0, 0, 0, 0, 4, 0],
        [0, 0, 3, 0, 0, 4, 4, 0, 4, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ],
    dtype=np.int32,
)
#: Scores per label value; label 3 has none (NaN).
SCORES = np.array([np.nan, 0.9, 0.8, np.nan, 0.6], dtype=np.float32)
#: Pixels per label.
SIZES = {1: 4, 2: 12, 3: 2, 4: 4}


def pixel_polygons() -> dict[int, shapely.Geometry]:
    """The expected geometry of each label, in pixel coordinates."""
    return {
        1: shapely.box(1, 1, 3, 3),
        2: shapely.Polygon(shapely.box(5, 0, 9, 4).exterior, [shapely.box(6, 1, 8, 3).exterior]),
        3: shapely.MultiPolygon([shapely.box(1, 5, 2, 6), shapely.box(2, 6, 3, 7)]),
        4: shapely.MultiPolygon([shapely.box(5, 6, 7, 7), shapely.box(8, 5, 9, 7)]),
    }


def through(transform: Affine, geometry: shapely.Geometry) -> shapely.Geometry:
    """``geometry`` with every vertex mapped by ``transform @ (x, y)``."""

    def apply(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transform @ (xy[:, 0], xy[:, 1]))

    return shapely.transform(geometry, apply)


def canonical(geometry: shapely.Geometry) -> tuple[str, np.ndarray, list[int]]:
    """Type, vertices and ring sizes in a canonical order, to compare vertex by vertex."""
    normal = shapely.normalize(geometry)
    rings = shapely.get_rings(shapely.get_parts(normal))
    return normal.geom_type, shapely.get_coordinates(normal), [len(r.coords) for r in rings]


def assert_same_vertices(
    actual: shapely.Geometry, expected: shapely.Geometry, *, rtol: float = 0.0
) -> None:
    """Same type, same rings, and vertices equal (exactly unless ``rtol``)."""
    kind, coords, sizes = canonical(actual)
    want_kind, want_coords, want_sizes = canonical(expected)
    assert (kind, sizes) == (want_kind, want_sizes), (actual.wkt, expected.wkt)
    if rtol == 0.0:
        np.testing.assert_array_equal(coords, want_coords)
    else:
        np.testing.assert_allclose(coords, want_coords, rtol=rtol, atol=0)


def voronoi(size: int, regions: int, seed: int) -> np.ndarray:
    """A partition of a square image into irregular regions (labels 1..regions)."""
    rng = np.random.default_rng(seed)
    seeds = rng.random((regions, 2)) * size
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    return (np.argmin(d, axis=-1) + 1).astype(np.int32)


class FixedLabels(Backend):
    """A test model: answers every prompt with the label image it was given."""

    version: ClassVar[str] = "fixed"
    model_ids: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(self, labels: np.ndarray = LABELS, scores: np.ndarray = SCORES) -> None:
        super().__init__("test")
        self.labels = np.asarray(labels, dtype=np.int32)
        self.scores = np.asarray(scores, dtype=np.float32)
        self.chip_shapes: list[tuple[int, int]] = []

    def run(self, prepared: Any, prompt: Any) -> MaskSet:
        self.chip_shapes.append(prepared.shape)
        assert prepared.shape == self.labels.shape, "the test raster and labels differ in size"
        return MaskSet(self.labels.copy(), self.scores.copy())
