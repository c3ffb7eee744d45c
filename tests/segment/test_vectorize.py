"""Label images to polygons: filters, exactness, validity, topology, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from label_fixtures import LABELS, SIZES, assert_same_vertices, pixel_polygons, through, voronoi
from pyproj import CRS

from geolibre_ml.segment.crs import reproject
from geolibre_ml.segment.vectorize import filter_labels, junction_corners, polygonize, simplify

# -- filter_labels --------------------------------------------------------------------


def test_filter_counts_pixels_and_keeps_everything_by_default() -> None:
    out, counts = filter_labels(LABELS)
    np.testing.assert_array_equal(out, LABELS)
    assert out.dtype == np.int32
    assert {v: int(counts[v]) for v in SIZES} == SIZES
    assert counts[0] == LABELS.size - sum(SIZES.values())


@pytest.mark.parametrize(
    ("min_size", "max_size", "kept"),
    [
        (0, None, [1, 2, 3, 4]),
        (3, None, [1, 2, 4]),
        (4, 4, [1, 4]),
        (0, 5, [1, 3, 4]),
        (0, 0, [1, 2, 3, 4]),  # max_size <= 0: no upper limit
        (0, -1, [1, 2, 3, 4]),
        (12, 12, [2]),
        (13, None, []),
    ],
)
def test_size_limits_are_inclusive_pixel_counts(
    min_size: int, max_size: int | None, kept: list[int]
) -> None:
    out, counts = filter_labels(LABELS, min_size=min_size, max_size=max_size)
    assert sorted(set(np.unique(out).tolist()) - {0}) == kept
    assert [v for v in SIZES if counts[v] > 0] == kept
    # Dropped objects leave background, kept ones are untouched.
    np.testing.assert_array_equal(out, np.where(np.isin(LABELS, kept), LABELS, 0))


def test_nodata_pixels_are_blanked_before_sizes_are_counted() -> None:
    valid = np.ones(LABELS.shape, dtype=bool)
    valid[1:3, 1] = False  # half of square 1 (4 pixels -> 2)
    out, counts = filter_labels(LABELS, valid=valid, min_size=3)
    assert counts[1] == 0 and 1 not in out  # 2 valid pixels left: under min_size
    assert not out[~valid].any()
    out, counts = filter_labels(LABELS, valid=valid)
    assert counts[1] == 2
    np.testing.assert_array_equal(out[1:3, 1:3], [[0, 1], [0, 1]])


def test_filter_never_changes_its_input_and_accepts_any_integer_type() -> None:
    labels = LABELS.astype(np.uint16)
    before = labels.copy()
    valid = np.ones(labels.shape, dtype=bool)
    valid[0, 5] = False
    out, _ = filter_labels(labels, valid=valid, min_size=3)
    np.testing.assert_array_equal(labels, before)
    assert out.dtype == np.int32 and out[0, 5] == 0 and 3 not in out
    signed = LABELS.astype(np.int64)
    signed[7, 0] = -5  # negative values are background
    out, counts = filter_labels(signed)
    assert out[7, 0] == 0 and counts[0] == LABELS.size - sum(SIZES.values())
    untouched = LABELS.copy()
    out, _ = filter_labels(untouched)
    assert out is untouched  # nothing to change: no copy of a large image


def test_filter_rejects_what_gdal_cannot_polygonize() -> None:
    with pytest.raises(ValueError, match="int32"):
        filter_labels(np.array([[2**31]], dtype=np.int64))
    with pytest.raises(ValueError, match="does not match"):
        filter_labels(LABELS, valid=np.ones((2, 2), dtype=bool))


# -- polygonize -----------------------------------------------------------------------


def test_empty_image_gives_no_polygons() -> None:
    polygons = polygonize(np.zeros((4, 5), dtype=np.int32))
    assert len(polygons) == 0
    assert polygons.values.dtype == np.int64 and polygons.geometries.dtype == object


def test_values_are_sorted_and_geometries_follow_them() -> None:
    labels = np.zeros((3, 7), dtype=np.int32)
    labels[0, 6] = 9
    labels[2, 0] = 2
    labels[1, 3] = 40000  # beyond 16 bits
    polygons = polygonize(labels)
    assert polygons.values.tolist() == [2, 9, 40000]
    assert [g.bounds for g in polygons.geometries] == [
        (0.0, 2.0, 1.0, 3.0),
        (6.0, 0.0, 7.0, 1.0),
        (3.0, 1.0, 4.0, 2.0),
    ]


def test_diagonal_pixels_are_separate_parts_and_holes_are_kept() -> None:
    polygons = polygonize(LABELS)
    geometries = dict(zip(polygons.values.tolist(), polygons.geometries, strict=True))
    assert len(geometries[3].geoms) == 2  # corner contact is no connection (4-connectivity)
    assert geometries[3].geoms[0].touches(geometries[3].geoms[1])
    assert len(geometries[2].interiors) == 1
    assert geometries[2].area == 12


def test_object_inside_another_objects_hole() -> None:
    labels = np.zeros((5, 5), dtype=np.int32)
    labels[0:5, 0:5] = 1
    labels[1:4, 1:4] = 2
    labels[2, 2] = 3
    polygons = polygonize(labels)
    outer, middle, inner = polygons.geometries
    assert_same_vertices(
        outer, shapely.Polygon(shapely.box(0, 0, 5, 5).exterior, [shapely.box(1, 1, 4, 4).exterior])
    )
    assert_same_vertices(
        middle,
        shapely.Polygon(shapely.box(1, 1, 4, 4).exterior, [shapely.box(2, 2, 3, 3).exterior]),
    )
    assert_same_vertices(inner, shapely.box(2, 2, 3, 3))
    # They tile the square: no gaps, no overlaps.
    assert shapely.area(polygons.geometries).sum() == 25
    assert shapely.union_all(polygons.geometries).equals(shapely.box(0, 0, 5, 5))


def test_hole_touching_the_outside_at_a_corner_stays_valid() -> None:
    # A ring of pixels whose inside reaches the outside through a corner only.
    labels = np.array(
        [
            [1, 1, 1, 0],
            [1, 0, 1, 0],
            [1, 1, 0, 0],
            [0, 0, 0, 0],
        ],
        dtype=np.int32,
    )
    (geometry,) = polygonize(labels).geometries
    assert geometry.is_valid, shapely.is_valid_reason(geometry)
    assert geometry.area == 7
    assert not geometry.contains(shapely.Point(1.5, 1.5))


@pytest.mark.parametrize("seed", range(6))
def test_polygons_rasterize_back_to_the_label_image(seed: int) -> None:
    """Any label image (many small objects, diagonal contacts, holes) round-trips."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(24, 31)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.1] = 50 + seed
    transform = Affine(0.5, 0.0, 100.0, 0.0, -0.5, 200.0)
    polygons = polygonize(labels, transform=transform)

    assert shapely.is_valid(polygons.geometries).all()
    assert shapely.is_ccw(shapely.get_exterior_ring(shapely.get_parts(polygons.geometries))).all()
    back = rasterio.features.rasterize(
        zip(polygons.geometries, polygons.values.tolist(), strict=True),
        out_shape=labels.shape,
        transform=transform,
        dtype="int32",
    )
    np.testing.assert_array_equal(back, labels)
    # Neighbours share edges exactly: the areas add up to the covered pixels.
    covered = np.count_nonzero(labels) * 0.25
    assert shapely.area(polygons.geometries).sum() == pytest.approx(covered, rel=1e-12)
    assert shapely.area(shapely.union_all(polygons.geometries)) == pytest.approx(covered, rel=1e-12)


def test_every_corner_puts_a_vertex_on_each_pixel_corner_of_the_boundary() -> None:
    labels = np.array([[1, 1, 1], [2, 3, 3]], dtype=np.int32)
    merged = polygonize(labels).geometries
    dense = polygonize(labels, every_corner=True).geometries
    # Object 1's bottom edge borders 2 and 3: merged, it lacks their shared corner (1, 1).
    assert (1.0, 1.0) not in merged[0].exterior.coords
    assert (1.0, 1.0) in dense[0].exterior.coords
    assert len(dense[0].exterior.coords) == 9  # 8 unit edges around a 3 x 1 box, closed
    assert shapely.equals(merged, dense).all()
    assert not shapely.coverage_is_valid(merged)
    assert shapely.coverage_is_valid(dense)


def test_every_corner_keeps_coordinates_exact_after_the_transform() -> None:
    transform = Affine(0.1, 0.0, 10.0, 0.0, -0.1, 50.0)  # 0.1 is not exact in binary
    pixel = polygonize(LABELS, every_corner=True).geometries
    mapped = polygonize(LABELS, transform=transform, every_corner=True).geometries
    corners = shapely.get_coordinates(pixel)
    assert (corners == np.round(corners)).all()  # unit steps, no rounding drift
    for got, want in zip(mapped, pixel, strict=True):
        assert_same_vertices(got, through(transform, want))
    assert shapely.coverage_is_valid(mapped)


def test_junction_corners_are_where_three_labels_meet() -> None:
    labels = np.array([[1, 1, 1], [2, 3, 3]], dtype=np.int32)
    corners = junction_corners(labels)
    assert corners.shape == (3, 4)
    # (x=1, y=1) joins 1, 2 and 3; the image's outside is a label too, so the ends of
    # the 1|2 and 2|3 and 1|3 boundaries on the image's edge are junctions as well.
    assert {(int(x), int(y)) for y, x in zip(*np.nonzero(corners), strict=True)} == {
        (1, 1),
        (0, 1),
        (3, 1),
        (1, 2),
    }


def test_junctions_add_only_the_vertices_neighbours_need() -> None:
    labels = np.array([[1, 1, 1], [2, 3, 3]], dtype=np.int32)
    merged = polygonize(labels).geometries
    shared = polygonize(labels, junctions=True).geometries
    dense = polygonize(labels, every_corner=True).geometries
    assert (1.0, 1.0) in shared[0].exterior.coords
    assert (2.0, 1.0) not in shared[0].exterior.coords  # inside the 1|3 edge: not needed
    assert shapely.equals(merged, shared).all()
    assert shapely.coverage_is_valid(shared)
    counts = shapely.get_num_coordinates
    assert counts(merged).sum() < counts(shared).sum() < counts(dense).sum()


def test_junctions_keep_a_reprojected_coverage_free_of_slivers() -> None:
    labels = voronoi(80, 12, seed=3)
    labels[:, :5] = 0  # background along one side
    # 30 m pixels in UTM 33N: 2.4 km, enough for straight UTM edges to bend in degrees.
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0)
    for junctions, valid in ((False, False), (True, True)):
        polygons = polygonize(labels, transform=transform, junctions=junctions)
        lonlat = reproject(polygons.geometries, CRS.from_epsg(32633), CRS.from_epsg(4326))
        assert bool(shapely.coverage_is_valid(lonlat)) is valid
        assert shapely.is_valid(lonlat).all()
    union = shapely.union_all(lonlat)
    assert shapely.area(lonlat).sum() == pytest.approx(union.area, rel=1e-12)


# -- simplification as a coverage --------------------------------------------------------


def test_coverage_simplification_opens_no_gaps_and_makes_no_overlaps() -> None:
    labels = voronoi(60, 9, seed=1)
    labels[25:28, 25:28] = 99  # a small object in the middle of the others
    transform = Affine(2.0, 0.0, 300000.0, 0.0, -2.0, 5000000.0)
    polygons = polygonize(labels, transform=transform, junctions=True)
    before = polygons.geometries
    after = simplify(before, 5.0)  # 2.5 pixels

    assert shapely.is_valid(after).all()
    assert shapely.coverage_is_valid(after)
    assert shapely.get_num_coordinates(after).sum() < shapely.get_num_coordinates(before).sum() / 3
    # No overlaps: areas add up to the area of the union. No gaps: the union has no holes.
    union = shapely.union_all(after)
    assert shapely.area(after).sum() == pytest.approx(union.area, rel=1e-12)
    assert union.geom_type == "Polygon" and len(union.interiors) == 0
    # Neighbours stay neighbours, along a shared edge.
    for i in range(len(before)):
        for j in range(i + 1, len(before)):
            shared = shapely.intersection(before[i], before[j]).length
            if shared > 0:
                assert shapely.intersection(after[i], after[j]).length > 0, (i, j)
    # Every object keeps its identity: the small one is still there and still inside.
    assert after[-1].area > 0
    assert after[-1].within(shapely.union_all(before).buffer(1e-6))


def test_simplify_with_no_tolerance_changes_nothing() -> None:
    geometries = polygonize(LABELS).geometries
    assert simplify(geometries, 0) is geometries
    assert simplify(geometries, -1) is geometries


def test_pixel_polygons_of_the_fixture() -> None:
    # The fixture's own expectations agree with GDAL (guards the other tests' premise).
    polygons = polygonize(LABELS)
    for value, geometry in zip(polygons.values, polygons.geometries, strict=True):
        assert_same_vertices(geometry, pixel_polygons()[int(value)])
