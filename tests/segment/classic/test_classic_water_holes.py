"""Text `water` on true colour with isolated bright pixels and small clouds (issue 7).

On a Landsat true-colour scene with scattered small clouds, the water polygon was
riddled with square holes a few pixels wide around isolated bright pixels: the
"smooth" test of the colour rule measured texture in a 5 x 5 box, so one bright
pixel made its whole box rough. Holes smaller than the minimum mapping unit inside
water are water, and no hole may take the shape of a filter kernel.
"""

from __future__ import annotations

import cv2
import numpy as np
from classic_scenes import landscape, read_chip, write_true_colour

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.prompts import TextPrompt

BACKEND = ClassicBackend("default")
CLOUD = {"blue": 0.29, "green": 0.29, "red": 0.28, "nir": 0.3, "swir1": 0.25, "swir2": 0.2}


def _holes(mask: np.ndarray) -> list[np.ndarray]:
    """The enclosed background pieces of ``mask`` (8-connected), as boolean masks."""
    count, pieces = cv2.connectedComponents((~mask).view(np.uint8), connectivity=8)
    height, width = mask.shape
    out = []
    for value in range(1, count):
        piece = pieces == value
        ys, xs = np.nonzero(piece)
        if ys.min() > 0 and xs.min() > 0 and ys.max() < height - 1 and xs.max() < width - 1:
            out.append(piece)
    return out


def _is_square(piece: np.ndarray) -> bool:
    """True for a filled rectangle at least 3 pixels a side: a box filter's footprint."""
    ys, xs = np.nonzero(piece)
    rows, cols = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return min(rows, cols) >= 3 and piece.sum() == rows * cols


def test_isolated_bright_pixels_and_cloudlets_do_not_riddle_water(tmp_path):
    planes = landscape(480, 640)
    water = planes["water"]
    rng = np.random.default_rng(7)
    # The lake's inner part, away from its shore, where bright specks are put.
    inner = cv2.erode(water.view(np.uint8), np.ones((15, 15), np.uint8)) > 0
    ys, xs = np.nonzero(inner)
    specks = rng.choice(len(ys), 60, replace=False)
    bright = np.zeros_like(water)
    bright[ys[specks], xs[specks]] = True  # single bright pixels (glint, a boat)
    clouds = np.zeros_like(water)
    for y, x in zip(ys[specks[:6]], xs[specks[:6]], strict=True):
        clouds[y - 6 : y - 4, x + 4 : x + 6] = True  # 2 x 2 cloudlets
    bright |= clouds & inner
    for role, value in CLOUD.items():
        planes[role][bright] = value
    chip = read_chip(write_true_colour(tmp_path / "lake.tif", planes))
    result = BACKEND.segment(chip, TextPrompt("water", 0.5))
    found = result.labels > 0
    lake = found & water
    # Deep open water is covered: the specks and cloudlets are below the minimum
    # mapping unit once their pixels alone are left out, so they are water.
    assert lake[inner].mean() > 0.999
    holes = [h for h in _holes(found) if (h & inner).any()]
    assert sum(int(h.sum()) for h in holes) <= int(bright.sum())
    assert not any(_is_square(h) for h in holes)


def test_a_cloud_above_the_mapping_unit_stays_a_round_hole(tmp_path):
    planes = landscape(480, 640)
    water = planes["water"]
    inner = cv2.erode(water.view(np.uint8), np.ones((25, 25), np.uint8)) > 0
    ys, xs = np.nonzero(inner)
    y, x = int(np.median(ys)), int(np.median(xs))
    cloud = np.zeros_like(water)
    cloud[y - 3 : y + 3, x - 3 : x + 3] = True  # 6 x 6 pixels: not water
    for role, value in CLOUD.items():
        planes[role][cloud] = value
    chip = read_chip(write_true_colour(tmp_path / "lake.tif", planes))
    found = BACKEND.segment(chip, TextPrompt("water", 0.5)).labels > 0
    holes = [h for h in _holes(found) if (h & cloud).any()]
    assert len(holes) == 1
    hole = holes[0]
    assert (hole & cloud).sum() == cloud.sum()
    # The hole is the cloud and a thin rim, not the cloud grown by a square window.
    assert hole.sum() <= 2.5 * cloud.sum()
    assert not (found & cloud).any()
