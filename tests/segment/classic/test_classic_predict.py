"""Classic box and point prompts: GrabCut in boxes, region selection for points."""

from __future__ import annotations

import numpy as np
import pytest
from classic_scenes import iou, landscape, read_chip, write_multispectral, write_true_colour

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.classic.interactive import separability
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import PointBoxPrompt, point_box_prompt

BACKEND = ClassicBackend("default")
# In support.rasters.scene(240, 320): the lake is an ellipse around (x 96, y 84) of
# radii 57.6 x 48; the forest is x 160..288, y 132..240 (minus the lake).
LAKE_BOX = (30.0, 30.0, 160.0, 140.0)
FOREST_BOX = (150.0, 125.0, 300.0, 240.0)


@pytest.fixture(scope="module")
def scene_chip(tmp_path_factory):
    planes = landscape()
    path = write_true_colour(tmp_path_factory.mktemp("predict") / "scene.tif", planes)
    return planes, read_chip(path)


def _box_mask(box, shape):
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = (round(v) for v in box)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize(("box", "truth"), [(LAKE_BOX, "water"), (FOREST_BOX, "vegetation")])
def test_a_box_returns_the_object_inside_it(scene_chip, box, truth):
    planes, chip = scene_chip
    result = BACKEND.segment(chip, PointBoxPrompt(boxes=(box,)))
    assert result.count == 1
    found = result.labels == 1
    assert iou(found, planes[truth] & _box_mask(box, found.shape)) > 0.9
    assert not (found & ~_box_mask(box, found.shape)).any()
    assert 0.5 < result.scores[1] <= 1.0


def test_the_object_stays_inside_a_box_that_cuts_it(scene_chip):
    _planes, chip = scene_chip
    # The left half of the lake, with a foreground point to say which object is meant.
    half = (30.0, 30.0, 96.0, 140.0)
    prompt = PointBoxPrompt(points=((70.0, 84.0),), labels=(1,), boxes=(half,))
    found = BACKEND.segment(chip, prompt).labels == 1
    assert found[84, 70]
    assert not (found & ~_box_mask(half, found.shape)).any()


def test_several_boxes_give_one_object_each(scene_chip):
    _planes, chip = scene_chip
    result = BACKEND.segment(chip, PointBoxPrompt(boxes=(LAKE_BOX, FOREST_BOX)))
    assert result.count == 2
    found = {int(result.labels[84, 96]), int(result.labels[200, 230])}
    assert found == {1, 2}


def test_a_foreground_point_returns_the_region_holding_it(scene_chip):
    planes, chip = scene_chip
    result = BACKEND.segment(chip, PointBoxPrompt(points=((96.0, 84.0),), labels=(1,)))
    assert result.count == 1
    assert iou(result.labels == 1, planes["water"]) > 0.9


def test_several_foreground_points_join_their_regions(scene_chip):
    planes, chip = scene_chip
    prompt = PointBoxPrompt(points=((96.0, 84.0), (230.0, 200.0)), labels=(1, 1))
    found = BACKEND.segment(chip, prompt).labels == 1
    assert iou(found, planes["water"] | planes["vegetation"]) > 0.9


def test_a_background_point_excludes_the_region_it_sits_in(scene_chip):
    planes, chip = scene_chip
    # Foreground on the soil at the top left, background on the soil at the bottom
    # left: the soil is one region, so it must be split between the two points.
    fg, bg = (10.0, 10.0), (10.0, 230.0)
    prompt = PointBoxPrompt(points=(fg, bg), labels=(1, 0))
    found = BACKEND.segment(chip, prompt).labels == 1
    assert found[10, 10]
    assert not found[230, 10]
    assert not (found & planes["water"]).any()
    # A background point in another region changes nothing.
    alone = BACKEND.segment(chip, PointBoxPrompt(points=((96.0, 84.0),), labels=(1,))).labels
    with_bg = BACKEND.segment(
        chip, PointBoxPrompt(points=((96.0, 84.0), (230.0, 200.0)), labels=(1, 0))
    ).labels
    assert iou(alone == 1, with_bg == 1) > 0.98


def test_points_inside_a_box_refine_it(scene_chip):
    planes, chip = scene_chip
    # A box over the lake and the soil below it, with a background point on that soil.
    box = (30.0, 30.0, 160.0, 200.0)
    prompt = PointBoxPrompt(points=((96.0, 84.0), (96.0, 180.0)), labels=(1, 0), boxes=(box,))
    result = BACKEND.segment(chip, prompt)
    assert result.count == 1
    found = result.labels == 1
    assert found[84, 96]
    assert not found[180, 96]
    assert iou(found, planes["water"]) > 0.85


def test_nodata_is_never_part_of_an_object(tmp_path):
    planes = landscape()
    path = write_multispectral(tmp_path / "collar.tif", planes, nodata_border=50)
    chip = read_chip(path)
    prompts = [
        PointBoxPrompt(boxes=((0.0, 0.0, 160.0, 140.0),)),
        PointBoxPrompt(points=((96.0, 84.0),), labels=(1,)),
        PointBoxPrompt(points=((150.0, 150.0),), labels=(1,)),
    ]
    for prompt in prompts:
        result = BACKEND.segment(chip, prompt)
        assert result.count == 1
        assert not (result.labels[~chip.valid] > 0).any()
    # A box wholly over nodata finds nothing, and says so through the pipeline.
    empty = BACKEND.segment(chip, PointBoxPrompt(boxes=((0.0, 0.0, 40.0, 40.0),)))
    assert not (empty.labels > 0).any()
    result = segment_raster(path, point_box_prompt((), (), ((0.0, 0.0, 40.0, 40.0),)), BACKEND)
    assert len(result.features.geometries) == 0


def test_a_box_over_the_whole_image_still_finds_an_object(scene_chip):
    _planes, chip = scene_chip
    height, width = chip.shape
    result = BACKEND.segment(chip, PointBoxPrompt(boxes=((0.0, 0.0, float(width), float(height)),)))
    assert result.count == 1
    assert 0 < (result.labels == 1).sum() < height * width


def test_separability_scores():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:, 10:] = (200, 40, 40)
    left = np.zeros((20, 20), bool)
    left[:, :10] = True
    assert separability(rgb, left, ~left) == pytest.approx(1.0)
    assert separability(rgb, left[:, ::-1] & left, left) == pytest.approx(1.0)
    half = np.zeros((20, 20), bool)
    half[:, :5] = True
    assert separability(rgb, half, left & ~half) == pytest.approx(0.0)


def test_a_box_inside_a_uniform_area_returns_the_area_within_the_box(tmp_path):
    # Nothing in the box differs from around it: GrabCut finds no object, and the
    # answer is the region under the box, cut to the box.
    planes = landscape()
    chip = read_chip(write_true_colour(tmp_path / "scene.tif", planes))
    box = (10.0, 150.0, 60.0, 200.0)  # soil only
    result = BACKEND.segment(chip, PointBoxPrompt(boxes=(box,)))
    assert result.count == 1
    found = result.labels == 1
    assert iou(found, _box_mask(box, found.shape)) > 0.95
    assert result.scores[1] < 0.2  # and its colours are those around it


def test_specks_in_a_uniform_box_are_not_the_object(tmp_path):
    # Sea with small bright specks (popcorn clouds, boats), as in Landsat scenes: GrabCut
    # may call a single speck "the object". An object of a few pixels in a large box is
    # not what the box meant; the answer is the area under the box.
    planes = landscape()
    rng = np.random.default_rng(7)
    soil = np.zeros(planes["water"].shape, bool)
    soil[150:230, 0:80] = True
    specks = soil & (rng.random(soil.shape) < 0.01)
    for band in ("red", "green", "blue"):
        planes[band] = np.where(specks, 0.3, planes[band])
    chip = read_chip(write_true_colour(tmp_path / "specks.tif", planes))
    box = (10.0, 160.0, 70.0, 220.0)
    result = BACKEND.segment(chip, PointBoxPrompt(boxes=(box,)))
    assert result.count == 1
    found = result.labels == 1
    assert found.sum() > 0.5 * _box_mask(box, found.shape).sum()
    assert not (found & ~_box_mask(box, found.shape)).any()
