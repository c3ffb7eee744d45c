"""Automatic segmentation: every distinct region of the image as its own object.

Two steps, both well known:

1. **Superpixels** (:mod:`.superpixels`): marker-controlled watershed from a grid of
   markers, a fine over-segmentation whose boundaries lie on the image's edges.
2. **Region merging** (:mod:`.graph`): Felzenszwalb-Huttenlocher's graph criterion on
   the superpixels' adjacency graph. Each superpixel is described by its mean colour
   in CIELAB (from the unsmoothed image) and, when the raster's metadata identifies
   the bands, by its mean NDVI, NDWI and MNDWI (so that water and forest separate even
   where they look alike in colour). An edge's weight is the Euclidean distance
   between the two descriptions divided by ``1 + s / TEXTURE``, where ``s`` is the
   pooled standard deviation of the features inside the two superpixels: textured surfaces
   (forest, crop rows, rough water) vary more between superpixels without being
   different things.

Scale and sizes are in pixels: superpixels of about :data:`CELL` x :data:`CELL`
pixels, the merging scale ``k = SCALE * CELL**2``, and a smallest region of
:data:`MIN_REGION_PIXELS`. None of them depends on the image's extent, so a crop
segments like the same area of the whole image, up to the superpixel grid.

Each region's score is its *distinctness*: ``1 - MInt / Dif``, where ``Dif`` is the
weight of its weakest boundary (the edge to its most similar neighbour) and
``MInt`` the largest weight at which the merging would still have joined those two
regions. 0 means "barely kept apart", 0.5 "the weakest boundary is twice as strong
as needed", 1 "no neighbour at all".
"""

from __future__ import annotations

import cv2
import numpy as np

from ..chip import ImageChip
from ..masks import MaskSet
from .graph import adjacency, felzenszwalb_merge
from .indices import normalized_difference
from .labels import label_sums
from .superpixels import lab_image, superpixels

#: Superpixel grid spacing, in pixels.
CELL = 12
#: Felzenszwalb-Huttenlocher scale per superpixel: ``k = SCALE * CELL**2``, in
#: colour-difference units times pixels.
SCALE = 10.0
#: Colour standard deviation (CIELAB units) at which an edge's weight is halved.
TEXTURE = 12.0
#: Smallest region, in pixels.
MIN_REGION_PIXELS = CELL * CELL // 2
#: Regions smaller than this (pixels) survive only if their weakest boundary is at
#: least SMALL_REGION_CONTRAST times the merge threshold there.
SMALL_REGION_PIXELS = 8 * CELL * CELL
SMALL_REGION_CONTRAST = 2.5
#: Weight of a spectral index difference against colour: an NDVI difference of 0.2
#: counts as much as a CIELAB distance of 10.
INDEX_WEIGHT = 50.0

# Spectral indices used as region features: name -> (band a, band b) of (a - b) / (a + b).
_INDEX_FEATURES: dict[str, tuple[str, str]] = {
    "NDVI": ("nir", "red"),
    "NDWI": ("green", "nir"),
    "MNDWI": ("green", "swir1"),
}


def segment_regions(chip: ImageChip) -> MaskSet:
    """Split a chip into regions of homogeneous colour (and spectra), each one object.

    Returns:
        Regions ``1..n`` covering every valid pixel (nodata stays 0), each one
        4-connected piece, with its distinctness score (see the module docstring).
    """
    valid = chip.valid
    labels, count = superpixels(lab_image(chip.rgb), valid, CELL)
    if count == 0:
        return MaskSet.empty(chip.shape)
    sizes = label_sums(labels, None, count + 1)
    means, variance = _features(chip, labels, count, sizes)
    u, v = adjacency(labels, count)
    weights = _edge_weights(means, variance, u, v)
    root, threshold = felzenszwalb_merge(
        u,
        v,
        weights,
        sizes,
        k=SCALE * CELL * CELL,
        min_size=MIN_REGION_PIXELS,
        small_size=SMALL_REGION_PIXELS,
        small_contrast=SMALL_REGION_CONTRAST,
    )
    return _regions(labels, root, sizes, threshold, u, v, weights)


def _features(
    chip: ImageChip, labels: np.ndarray, count: int, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature vector and total variance (summed over features) of every superpixel."""
    n = count + 1
    area = np.maximum(sizes, 1)
    lab = cv2.cvtColor(chip.rgb, cv2.COLOR_RGB2LAB)
    columns, variance = [], np.zeros(n)
    for channel, scale in enumerate((100 / 255, 1.0, 1.0)):
        plane = lab[..., channel].astype(np.float32) * np.float32(scale)
        mean = label_sums(labels, plane, n) / area
        square = label_sums(labels, plane * plane, n) / area
        columns.append(mean)
        variance += np.maximum(square - mean * mean, 0)
    del lab
    spectral = chip.spectral
    for a, b in _INDEX_FEATURES.values():
        if a in spectral and b in spectral:
            index = normalized_difference(spectral[a], spectral[b])
            index *= np.float32(INDEX_WEIGHT)
            mean = label_sums(labels, index, n) / area
            square = label_sums(labels, index * index, n) / area
            columns.append(mean)
            variance += np.maximum(square - mean * mean, 0)
    return np.stack(columns, axis=1), variance


def _edge_weights(
    means: np.ndarray, variance: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    distance = np.linalg.norm(means[u] - means[v], axis=1)
    texture = np.sqrt((variance[u] + variance[v]) / 2)
    return distance / (1.0 + texture / TEXTURE)


def _regions(
    labels: np.ndarray,
    root: np.ndarray,
    sizes: np.ndarray,
    threshold: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray,
) -> MaskSet:
    """Number the merged components 1..m and score them."""
    present = sizes > 0
    present[0] = False
    roots = np.unique(root[present])
    region_of_root = np.zeros(len(root), dtype=np.int32)
    region_of_root[roots] = np.arange(1, len(roots) + 1, dtype=np.int32)
    lut = region_of_root[root]
    lut[0] = 0
    out = lut[labels]

    # Distinctness: weakest boundary against the merge threshold there.
    ru, rv = root[u], root[v]
    across = ru != rv
    ru, rv, w = ru[across], rv[across], weights[across]
    limit = np.minimum(threshold[ru], threshold[rv])
    ratio = np.full(len(root), np.inf)
    np.minimum.at(ratio, ru, w / np.maximum(limit, 1e-9))
    np.minimum.at(ratio, rv, w / np.maximum(limit, 1e-9))
    with np.errstate(divide="ignore"):
        score = np.clip(1.0 - 1.0 / ratio[roots], 0.0, 1.0)
    scores = np.concatenate([[np.nan], score]).astype(np.float32)
    return MaskSet(out, scores)
