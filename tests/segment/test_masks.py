"""Objects carried per object: cropped masks, label layers, overlaps, flattening."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from label_fixtures import LABELS, SCORES, pixel_polygons

from geolibre_ml.segment.masks import MaskSet, ObjectSet, Origin
from geolibre_ml.segment.vectorize import polygonize_objects


def disc(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_cropped_masks_keep_their_boxes_scores_and_origins() -> None:
    a, b = disc((40, 50), 15, 20, 8), disc((40, 50), 25, 20, 8)  # overlapping
    objects = ObjectSet.from_masks(
        [a, b], [0.4, 0.9], [Origin(point=(15, 20)), Origin(point=(25, 20))]
    )
    assert [o.box for o in objects] == [(7, 12, 23, 28), (17, 12, 33, 28)]
    assert [o.score for o in objects] == [pytest.approx(0.4), pytest.approx(0.9)]
    assert objects.objects[1].origin.point == (25, 20)
    for obj, full in zip(objects, [a, b], strict=True):
        assert obj.mask is not None and obj.mask.shape == (16, 16)
        np.testing.assert_array_equal(obj.pixels, full[obj.slices])
    # Memory is the boxes', not two full images.
    assert objects.nbytes == 2 * 16 * 16


def test_overlapping_objects_are_each_whole_and_flatten_with_the_highest_score_on_top() -> None:
    a, b = disc((40, 50), 15, 20, 8), disc((40, 50), 25, 20, 8)
    objects = ObjectSet.from_masks([a, b], [0.9, 0.4]).numbered()
    polygons = polygonize_objects(objects)
    # Each polygon covers its whole object, overlap included.
    assert polygons.values.tolist() == [1, 2]
    assert [g.area for g in polygons.geometries] == [a.sum(), b.sum()]
    assert shapely.intersection(*polygons.geometries).area == (a & b).sum() > 0
    labels = objects.label_image((40, 50))
    np.testing.assert_array_equal(labels[a & b], 1)  # 0.9 beats 0.4
    np.testing.assert_array_equal(labels[b & ~a], 2)
    # And the other way round.
    swapped = ObjectSet.from_masks([a, b], [0.4, 0.9]).numbered().label_image((40, 50))
    np.testing.assert_array_equal(swapped[a & b], 2)


def test_a_label_layer_is_shared_and_costs_no_more_than_the_label_image() -> None:
    labels = np.arange(100 * 100, dtype=np.int32).reshape(100, 100) // 10 + 1  # 1,000 objects
    objects = MaskSet(labels, np.full(labels.max() + 1, 0.5, np.float32)).objects()
    assert len(objects) == 1000 and len(objects.layers) == 1
    assert objects.nbytes == labels.nbytes
    assert objects.objects[0].box == (0, 0, 10, 1)
    np.testing.assert_array_equal(objects.numbered().label_image(labels.shape), labels)


def test_a_layer_polygonizes_as_the_label_image_does() -> None:
    objects = MaskSet(LABELS.copy(), SCORES.copy()).objects().numbered()
    polygons = polygonize_objects(objects)
    expected = pixel_polygons()
    assert polygons.values.tolist() == [1, 2, 3, 4]
    for value, geometry in zip(polygons.values, polygons.geometries, strict=True):
        assert geometry.equals(expected[int(value)])


def test_shifting_moves_boxes_layers_and_origins_to_raster_pixels() -> None:
    mask = disc((20, 20), 10, 10, 4)
    cropped = ObjectSet.from_masks([mask], [0.5], [Origin(box=(5.0, 5.0, 15.0, 15.0))])
    layered = MaskSet(LABELS.copy(), SCORES.copy()).objects()
    moved = ObjectSet.concat([cropped.shifted(100, 200), layered.shifted(30, 40)]).numbered()
    assert moved.objects[0].box == (206, 106, 214, 114)
    assert moved.objects[0].origin.box == (205.0, 105.0, 215.0, 115.0)
    assert moved.objects[1].box == (41, 31, 43, 33)
    labels = moved.label_image((200, 300))
    np.testing.assert_array_equal(labels[31:33, 41:43], moved.objects[1].value)
    assert (labels[106:114, 206:214] == moved.objects[0].value).sum() == mask.sum()
    # A backend's label values are kept; cropped objects are numbered after them.
    assert [o.value for o in moved] == [5, 1, 2, 3, 4]
    polygons = polygonize_objects(moved)
    geometry = polygons.geometries[polygons.values.tolist().index(5)]
    assert geometry.bounds == (206.0, 106.0, 214.0, 114.0)


def test_nodata_is_removed_per_object_and_empty_objects_dropped() -> None:
    a = disc((30, 30), 10, 10, 5)
    b = np.zeros((30, 30), bool)
    b[20:25, 20:25] = True
    valid = np.ones((30, 30), bool)
    valid[:, :10] = False  # the left half of a, and nothing of b
    valid[20:25, 20:25] = False  # all of b
    objects = ObjectSet.from_masks([a, b], [0.5, 0.6]).without_invalid(valid)
    assert len(objects) == 1
    assert objects.objects[0].box[0] == 10
    assert objects.objects[0].pixels.sum() == (a & valid).sum()


def test_a_subset_erases_dropped_layer_objects_from_its_copy_of_the_layer() -> None:
    objects = MaskSet(LABELS.copy(), SCORES.copy()).objects().numbered()
    kept = objects.subset(np.array([True, False, True, False]))
    assert [o.value for o in kept] == [1, 3]
    assert set(np.unique(kept.layers[0].labels)) == {0, 1, 3}
    assert set(np.unique(objects.layers[0].labels)) == {0, 1, 2, 3, 4}  # untouched
    assert kept.pixel_counts().tolist() == [4, 2]
