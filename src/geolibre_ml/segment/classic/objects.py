"""Objects from a membership map: connected areas of a class, scored by mean membership.

A text prompt's answer is built from the class's per-pixel membership (see
:mod:`.indices`) and the request's ``confidence_threshold`` *t*:

1. pixels whose membership exceeds ``min(t, 0.5)`` are candidates (so a threshold
   below 0.5 lets weaker pixels in and grows objects, one above 0.5 never cuts
   objects apart);
2. 4-connected areas of candidates are objects; holes smaller than the minimum
   mapping unit are filled and objects smaller than it are dropped (speckle);
3. an object's **score** is the mean membership of its candidate pixels: the average
   strength of the evidence that each of its pixels belongs to the class (0.5 means
   "on average exactly at the decision threshold", 1 "far beyond it");
4. objects scoring below *t* are dropped.

Raising *t* therefore never adds a pixel: lower finds more, higher is stricter.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..masks import MaskSet
from .labels import keep_labels, label_sums

#: Smallest object and largest hole filled, in pixels and in square metres: the
#: larger of the two applies (4 pixels; 10 m², about one tree crown or a small pond).
MIN_OBJECT_PIXELS = 4
MIN_OBJECT_AREA_M2 = 10.0
#: The lowest pixel cut, so that a threshold of 0 does not make the whole image one object.
MIN_CUT = 0.01


def minimum_mapping_unit(pixel_size_m: float | None) -> int:
    """The smallest object kept (and largest hole filled), in pixels."""
    if not pixel_size_m or not math.isfinite(pixel_size_m) or pixel_size_m <= 0:
        return MIN_OBJECT_PIXELS
    return max(MIN_OBJECT_PIXELS, math.ceil(MIN_OBJECT_AREA_M2 / pixel_size_m**2))


def objects_from_membership(
    values: np.ndarray,
    threshold: float,
    *,
    valid: np.ndarray | None = None,
    min_pixels: int = MIN_OBJECT_PIXELS,
) -> MaskSet:
    """Connected objects of a membership map, each scored by its mean membership.

    Args:
        values: ``(H, W)`` float32 membership in [0, 1].
        threshold: the request's ``confidence_threshold`` in [0, 1].
        valid: ``(H, W)`` bool; pixels that are not valid never belong to an object
            (not even as a filled hole).
        min_pixels: minimum mapping unit (see :func:`minimum_mapping_unit`).

    Returns:
        Objects ``1..n`` and their scores (mean membership, in [0, 1]).
    """
    cut = max(min(float(threshold), 0.5), MIN_CUT)
    candidates = values > np.float32(cut)
    if valid is not None:
        candidates &= valid
    if not candidates.any():
        return MaskSet.empty(values.shape)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        candidates.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    sizes = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    scores = label_sums(labels, values, count) / np.maximum(sizes, 1)
    keep = (sizes >= min_pixels) & (scores >= threshold)
    keep[0] = False
    if not keep.any():
        return MaskSet.empty(values.shape)
    labels = keep_labels(labels, keep)
    _fill_small_holes(labels, min_pixels)
    if valid is not None:
        labels[~valid] = 0
    out_scores = np.concatenate([[np.nan], scores[keep]]).astype(np.float32)
    return MaskSet(labels, out_scores)


def _fill_small_holes(labels: np.ndarray, max_pixels: int) -> None:
    """Give enclosed background areas smaller than ``max_pixels`` to the object around them."""
    background = (labels == 0).view(np.uint8)
    count, holes, stats, _ = cv2.connectedComponentsWithStats(
        background, connectivity=8, ltype=cv2.CV_32S
    )
    height, width = labels.shape
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right = left + stats[:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
    inside = (left > 0) & (top > 0) & (right < width) & (bottom < height)
    small = inside & (stats[:, cv2.CC_STAT_AREA] < max_pixels)
    small[0] = False
    if not small.any():
        return
    # A small enclosed hole touches exactly one object: the one just left of its
    # leftmost pixel on any of its rows (its bounding box's left edge is inside it).
    ys, xs = np.nonzero(small[holes])
    hole_of = holes[ys, xs]
    order = np.lexsort((xs, hole_of))
    first = order[np.r_[True, hole_of[order][1:] != hole_of[order][:-1]]]
    lut = np.zeros(count, dtype=np.int32)
    lut[hole_of[first]] = labels[ys[first], xs[first] - 1]
    labels[ys, xs] = lut[hole_of]
