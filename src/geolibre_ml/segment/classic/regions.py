"""Automatic segmentation: every distinct region of the image as its own object.

Two steps, both well known:

1. **Superpixels** (:mod:`.superpixels`): marker-controlled watershed from a grid of
   markers, a fine over-segmentation whose boundaries lie on the image's edges.
2. **Region merging** (:mod:`.graph`): Felzenszwalb-Huttenlocher's graph criterion on
   the superpixels' adjacency graph. Each superpixel is described by its mean colour
   in CIELAB (from the unsmoothed image) and, when the raster's metadata identifies
   the bands, by its mean NDVI, NDWI and MNDWI (so that water and forest separate even
   where they look alike in colour), averaged over its interior pixels only. An
   edge's weight is the Euclidean distance between the two descriptions, less what
   noise alone explains (three standard errors of the difference of the means),
   divided by ``1 + s / TEXTURE``, where ``s`` is the local standard deviation of
   colour around the superpixels' pixels: textured surfaces (forest, crop rows,
   rough water) vary more between superpixels without being different things.

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

from typing import NamedTuple

import cv2
import numpy as np

from ..checkpoints import checkpoint
from ..chip import ImageChip
from ..masks import MaskSet
from .graph import Merge, adjacency, felzenszwalb_merge
from .indices import normalized_difference
from .labels import STRIP_ROWS, interior_counts, interior_rows, label_sums
from .superpixels import FLOOD_SIGMA, lab_image, superpixels

#: Superpixel grid spacing, in pixels.
CELL = 12
#: Felzenszwalb-Huttenlocher scale per superpixel: ``k = SCALE * CELL**2``, in
#: colour-difference units times pixels.
SCALE = 10.0
#: Colour standard deviation (CIELAB units) at which an edge's weight is halved.
TEXTURE = 12.0
#: Window (pixels a side) of the local colour variance that measures texture, and
#: the rows of context it needs at a strip's edge. Wider than the rows of a crop
#: (about 6 pixels a period on the benchmark landscape). Its values are averaged
#: over superpixels, so a box (the fastest filter) is as good as a disk here.
TEXTURE_WINDOW = 7
TEXTURE_HALO = TEXTURE_WINDOW // 2
#: Smallest region, in pixels.
MIN_REGION_PIXELS = CELL * CELL // 2
#: Regions smaller than this (pixels) survive only if their weakest boundary is at
#: least SMALL_REGION_CONTRAST times the merge threshold there: a roof in a field
#: (weight 20 or more against a threshold about 1) stays, a superpixel that
#: followed a single crop row (2 to 3 against about 1) goes.
SMALL_REGION_PIXELS = 8 * CELL * CELL
SMALL_REGION_CONTRAST = 4.0
#: Standard errors of a difference of two mean colours that noise alone may explain
#: (see :func:`_edge_weights`).
NOISE_DEVIATIONS = 3.0
#: Fewest interior pixels (pixels whose 4-neighbours are in the same superpixel)
#: from which a superpixel's features are taken; thinner superpixels use all theirs.
MIN_INTERIOR_PIXELS = 8
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
    labels, count = superpixels(lab_image(chip.rgb, FLOOD_SIGMA), chip.valid, CELL)
    if count == 0:
        return MaskSet.empty(chip.shape)
    checkpoint()
    stats = _superpixel_stats(chip, labels, count)
    checkpoint()
    u, v = adjacency(labels, count)
    checkpoint()
    k = SCALE * CELL * CELL

    # Pass 1: superpixels.
    weights = _edge_weights(*_describe(stats), u, v)
    first = felzenszwalb_merge(
        u,
        v,
        weights,
        stats.count,
        k=k,
        min_size=MIN_REGION_PIXELS,
        small_size=SMALL_REGION_PIXELS,
        small_contrast=SMALL_REGION_CONTRAST,
    )
    checkpoint()
    # Pass 2: the regions of pass 1, described by statistics over their whole area,
    # which are steadier than a superpixel's (a forest's texture averages out).
    group = first.root
    gu, gv = _region_edges(group[u], group[v])
    grouped = _group_stats(stats, group)
    weights = _edge_weights(*_describe(grouped), gu, gv)
    second = felzenszwalb_merge(
        gu,
        gv,
        weights,
        grouped.count,
        k=k,
        internal=first.internal,
    )
    return _regions(labels, second.root[group], grouped.count, second, gu, gv, weights)


class _Stats(NamedTuple):
    """Per-node sums: area, the pixels described, feature sums ``(n, d)``, texture sum.

    ``count`` is the node's area in pixels (what the merging criterion weighs);
    ``sums``, ``texture`` and ``spread`` are taken over ``described`` of those
    pixels, the superpixels' interiors (see :func:`_superpixel_stats`).
    ``texture`` sums each pixel's local colour variance (CIELAB, over L*, a*, b*, in
    a window of :data:`TEXTURE_WINDOW`), so that a region's texture is the mean
    texture around its pixels, not the spread of its superpixels' means: merging
    a field with a forest does not make either look textured. ``spread`` sums
    ``pixels * variance`` inside each superpixel over every feature (colour and
    spectral indices): what noise does to the features' means.
    """

    count: np.ndarray
    described: np.ndarray
    sums: np.ndarray
    texture: np.ndarray
    spread: np.ndarray


def _superpixel_stats(chip: ImageChip, labels: np.ndarray, count: int) -> _Stats:
    """Feature sums of every superpixel: CIELAB (unsmoothed) and spectral indices.

    Features are averaged over the superpixel's interior, the pixels whose four
    neighbours are in the same superpixel: a superpixel's outline may lie one pixel
    off the object's (the watershed floods a smoothed image, and real edges have
    mixed pixels), and those few pixels of a very different neighbour would shift
    its mean colour by a fraction of the contrast. On a uniform object with a
    strong edge that shift was larger than the merge threshold of a large region,
    which cut the object in two. A superpixel with fewer than
    :data:`MIN_INTERIOR_PIXELS` interior pixels (a thin sliver) is described by all
    of its pixels.

    Texture is each pixel's colour variance in a fixed window (:func:`_local_variance`),
    not the variance inside the superpixel: the watershed floods a lightly smoothed
    image, and its superpixels may follow single crop rows, each uniform, in a field
    that is not.

    Accumulated in strips of rows, so that no full-size float copy of the image is made.
    """
    n = count + 1
    spectral = chip.spectral
    indices = [(a, b) for a, b in _INDEX_FEATURES.values() if a in spectral and b in spectral]
    sizes = label_sums(labels, None, n)
    inner = interior_counts(labels, n)
    everything = inner < MIN_INTERIOR_PIXELS  # superpixels described by all their pixels
    described = np.where(everything, sizes, inner)
    sums = np.zeros((n, 3 + len(indices)))
    squares = np.zeros((n, 3 + len(indices)))
    local = np.zeros(n)
    scale = np.array([100 / 255, 1.0, 1.0], dtype=np.float32)
    height = labels.shape[0]
    for top in range(0, height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, height)
        ids = labels[top:bottom]
        # The pixels left out are counted under label 0, nodata, which is not used.
        ids = np.where(interior_rows(labels, top, bottom) | everything[ids], ids, 0).ravel()
        lo, hi = max(top - TEXTURE_HALO, 0), min(bottom + TEXTURE_HALO, height)
        wide = cv2.cvtColor(chip.rgb[lo:hi], cv2.COLOR_RGB2LAB).astype(np.float32) * scale
        local += np.bincount(
            ids, weights=_local_variance(wide)[top - lo : bottom - lo].ravel(), minlength=n
        )
        lab = wide[top - lo : bottom - lo].reshape(-1, 3)
        planes = [lab[:, channel] for channel in range(3)]
        for a, b in indices:
            index = normalized_difference(spectral[a][top:bottom], spectral[b][top:bottom])
            planes.append(index.ravel() * INDEX_WEIGHT)
        for j, plane in enumerate(planes):
            sums[:, j] += np.bincount(ids, weights=plane, minlength=n)
            squares[:, j] += np.bincount(ids, weights=plane * plane, minlength=n)
    area = np.maximum(described, 1)
    variance = np.maximum(squares - sums**2 / area[:, None], 0)
    return _Stats(sizes, described, sums, local, variance.sum(axis=1))


def _local_variance(lab: np.ndarray) -> np.ndarray:
    """Per pixel, the CIELAB variance (summed over L*, a*, b*) in a square window.

    ``lab``: ``(h, w, 3)`` float32. The window (:data:`TEXTURE_WINDOW`) does not depend
    on the superpixels' shapes: superpixels that follow crop rows are each
    uniform, but the field around them is not.
    """
    out = np.zeros(lab.shape[:2], dtype=np.float32)
    for channel in range(3):
        plane = np.ascontiguousarray(lab[..., channel])
        window = (TEXTURE_WINDOW, TEXTURE_WINDOW)
        mean = cv2.blur(plane, window)
        out += cv2.sqrBoxFilter(plane, -1, window)
        out -= cv2.multiply(mean, mean)
    return np.maximum(out, 0, out=out)


def _group_stats(stats: _Stats, group: np.ndarray) -> _Stats:
    """The sums of each group of nodes, indexed by the group's node id."""
    n = len(group)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values, minlength=n)

    sums = np.stack([total(stats.sums[:, j]) for j in range(stats.sums.shape[1])], axis=1)
    return _Stats(
        total(stats.count),
        total(stats.described),
        sums,
        total(stats.texture),
        total(stats.spread),
    )


def _describe(stats: _Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per node: mean features, colour and feature variances (within superpixels), pixels."""
    area = np.maximum(stats.described, 1)
    return stats.sums / area[:, None], stats.texture / area, stats.spread / area, area


def _region_edges(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pairs of different groups among edges ``(a, b)``."""
    across = a != b
    low = np.minimum(a[across], b[across]).astype(np.int64)
    high = np.maximum(a[across], b[across]).astype(np.int64)
    span = int(high.max()) + 1 if high.size else 1
    keys = np.unique(low * span + high)
    return keys // span, keys % span


def _edge_weights(
    means: np.ndarray,
    variance: np.ndarray,
    spread: np.ndarray,
    described: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """Dissimilarity of nodes ``u`` and ``v``: their feature distance beyond noise, over texture.

    Two samples of one uniform surface have different means: by about
    ``sqrt(var_u / n_u + var_v / n_v)`` (``var`` the pixel variance summed over the
    features, ``spread``; ``n`` the pixels described), more for small superpixels than for
    large ones. That much of the distance, times :data:`NOISE_DEVIATIONS`, is not
    evidence of an edge and is taken off; without it a small superpixel of a noisy
    uniform object differed from the object's large region by more than the
    region's merge threshold and stayed apart.
    """
    distance = np.linalg.norm(means[u] - means[v], axis=1)
    error = spread / described
    noise = np.sqrt(error[u] + error[v])
    distance = np.maximum(distance - NOISE_DEVIATIONS * noise, 0.0)
    texture = np.sqrt((variance[u] + variance[v]) / 2)
    return distance / (1.0 + texture / TEXTURE)


def _regions(
    labels: np.ndarray,
    root: np.ndarray,
    sizes: np.ndarray,
    merge: Merge,
    u: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray,
) -> MaskSet:
    """Number the final components 1..m and score them.

    ``root`` maps every superpixel to its final component's node; ``u``, ``v``,
    ``weights`` and ``merge`` describe the last merging pass, over nodes.
    """
    present = np.unique(root[1:][sizes[root[1:]] > 0]) if len(root) > 1 else root[:0]
    region_of_node = np.zeros(len(root), dtype=np.int32)
    region_of_node[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    lut = region_of_node[root]
    lut[0] = 0
    out = lut[labels]

    # Distinctness: weakest boundary against the merge threshold there.
    ru, rv = merge.root[u], merge.root[v]
    across = ru != rv
    ru, rv, w = ru[across], rv[across], weights[across]
    limit = np.maximum(np.minimum(merge.threshold[ru], merge.threshold[rv]), 1e-9)
    ratio = np.full(len(root), np.inf)
    np.minimum.at(ratio, ru, w / limit)
    np.minimum.at(ratio, rv, w / limit)
    with np.errstate(divide="ignore"):
        score = np.clip(1.0 - 1.0 / ratio[present], 0.0, 1.0)
    scores = np.concatenate([[np.nan], score]).astype(np.float32)
    return MaskSet(out, scores)
