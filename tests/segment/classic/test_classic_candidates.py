"""Classic predict answers one mask per object: overlapping boxes, and multimask_output."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from classic_scenes import landscape, read_chip, write_true_colour

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import PointBoxPrompt

BACKEND = ClassicBackend("default")
LAKE_BOX = (30.0, 30.0, 160.0, 140.0)
ACROSS = (60.0, 40.0, 230.0, 200.0)  # part lake, part forest and field
OVERLAPPING = (100.0, 60.0, 250.0, 200.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_true_colour(tmp_path_factory.mktemp("candidates") / "scene.tif", landscape())


def test_overlapping_boxes_each_get_their_whole_object(scene) -> None:
    alone = {
        box: BACKEND.run(read_chip(scene), PointBoxPrompt(boxes=(box,))).objects[0].pixels.sum()
        for box in (LAKE_BOX, OVERLAPPING)
    }
    both = BACKEND.run(read_chip(scene), PointBoxPrompt(boxes=(LAKE_BOX, OVERLAPPING)))
    assert [o.origin.box for o in both] == [LAKE_BOX, OVERLAPPING]
    # Neither loses the pixels the other also claims (a label image would).
    assert [int(o.pixels.sum()) for o in both] == [alone[LAKE_BOX], alone[OVERLAPPING]]
    result = segment_raster(scene, PointBoxPrompt(boxes=(LAKE_BOX, OVERLAPPING)), BACKEND)
    a, b = result.features.geometries
    assert shapely.intersection(a, b).area > 0


def test_multimask_output_offers_a_second_candidate_when_it_differs(scene) -> None:
    chip = read_chip(scene)
    one = BACKEND.run(chip, PointBoxPrompt(boxes=(ACROSS,)))
    several = BACKEND.run(chip, PointBoxPrompt(boxes=(ACROSS,), multimask_output=True))
    assert len(one) == 1 and len(several) == 2
    assert [o.origin.candidate for o in several] == [0, 1]
    np.testing.assert_array_equal(several.objects[0].pixels, one.objects[0].pixels)
    first, second = (o.pixels for o in several)
    assert not np.array_equal(first, second)
    x0, y0, x1, y1 = several.objects[1].box
    assert ACROSS[0] <= x0 and ACROSS[1] <= y0 and x1 <= ACROSS[2] and y1 <= ACROSS[3]
    assert all(0 <= o.score <= 1 for o in several)


def test_a_candidate_equal_to_the_first_is_left_out(scene) -> None:
    # Over the lake, GrabCut and the region under the box's centre agree.
    found = BACKEND.run(read_chip(scene), PointBoxPrompt(boxes=(LAKE_BOX,), multimask_output=True))
    assert len(found) == 1
