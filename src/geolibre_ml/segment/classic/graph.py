"""Region adjacency graphs and Felzenszwalb-Huttenlocher merging.

The region adjacency graph (RAG) of a label image has one node per label and one
edge per pair of labels that touch (4-connectivity). It is built with vectorised
numpy: every horizontal and vertical pixel pair whose labels differ yields a key
``min * (n + 1) + max``, and :func:`numpy.unique` collects the distinct keys.

Merging follows Felzenszwalb and Huttenlocher, "Efficient Graph-Based Image
Segmentation" (IJCV 59(2), 2004), applied to the RAG instead of the pixel grid:
edges are visited in order of increasing weight, and two components ``A`` and ``B``
merge when the edge's weight is at most ``min(Int(A) + k / |A|, Int(B) + k / |B|)``,
where ``Int`` is the largest edge weight inside a component (its internal
difference) and ``|A|`` its area in pixels. The ``k / |A|`` term lets small components
merge readily and makes large ones demand weaker boundaries, so the sizes of the
regions follow the content: a uniform lake becomes one region however large it is,
while a textured or detailed area keeps smaller ones. Components still smaller than
``min_size`` pixels are then merged along their weakest edge, as in the paper; and
(our addition) components smaller than ``small_size`` are merged across edges that
are not clearly stronger than the merge threshold, which removes the patches of
texture that the criterion leaves behind inside large regions while keeping small,
contrasted objects.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Merge(NamedTuple):
    """The result of :func:`felzenszwalb_merge`, per node of the graph.

    Attributes:
        root: index of the node representing the node's component.
        internal: internal difference ``Int`` of the component (at its root).
        threshold: ``Int + k / area`` of the component (at its root): the largest
            edge weight at which it would still have merged.
    """

    root: np.ndarray
    internal: np.ndarray
    threshold: np.ndarray


#: Rows per strip of :func:`adjacency`.
_ADJACENCY_ROWS = 512


def adjacency(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the region adjacency graph of ``labels`` (4-connectivity).

    Args:
        labels: ``(H, W)`` int32 labels ``0..count``; label 0 (nodata) is left out.
        count: the largest label.

    Returns:
        ``(u, v)``: int32 arrays of label pairs with ``0 < u < v``, each pair once.
    """
    # In strips of rows, each reduced to its unique pairs at once: the pairs of a whole
    # image (one per boundary pixel, as int64) would be its largest temporary.
    found = []
    height = labels.shape[0]
    for top in range(0, height, _ADJACENCY_ROWS):
        bottom = min(top + _ADJACENCY_ROWS, height)
        strip = labels[top:bottom]
        pairs = [(strip[:, :-1], strip[:, 1:])]
        if bottom < height:  # vertical pairs down to the next strip's first row
            pairs.append((labels[top:bottom], labels[top + 1 : bottom + 1]))
        else:
            pairs.append((strip[:-1], strip[1:]))
        keys = []
        for a, b in pairs:
            differ = a != b
            first = a[differ].astype(np.int64)
            second = b[differ].astype(np.int64)
            both = (first > 0) & (second > 0)
            first, second = first[both], second[both]
            keys.append(np.minimum(first, second) * (count + 1) + np.maximum(first, second))
        found.append(np.unique(np.concatenate(keys)))
    unique = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return (unique // (count + 1)).astype(np.int32), (unique % (count + 1)).astype(np.int32)


def felzenszwalb_merge(
    u: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray,
    sizes: np.ndarray,
    k: float,
    min_size: float = 0,
    small_size: float = 0,
    small_contrast: float = 1.0,
    internal: np.ndarray | None = None,
) -> Merge:
    """Merge the nodes of a weighted graph with Felzenszwalb-Huttenlocher's criterion.

    Args:
        u, v: edge end points (node indexes).
        weights: edge weights (dissimilarities, >= 0).
        sizes: area of each node in pixels (the graph has ``len(sizes)`` nodes).
        k: scale: larger values favour larger components.
        min_size: components smaller than this (pixels) are merged afterwards
            with the neighbour across their weakest edge.
        small_size, small_contrast: components smaller than ``small_size`` pixels
            are also merged across any edge weaker than ``small_contrast`` times
            the merge threshold there: a small region survives only if it is
            clearly distinct (a house in a field), not if it is a slightly odd
            patch of texture.
        internal: initial internal difference ``Int`` of each node (0 for single
            pixels; nodes that are already regions bring their own).

    Returns:
        Each node's component, with its internal difference and merge threshold.
    """
    n = len(sizes)
    order = np.argsort(weights, kind="stable")
    us = u[order].tolist()
    vs = v[order].tolist()
    ws = weights[order].tolist()
    parent = list(range(n))
    area = np.asarray(sizes, dtype=np.float64).tolist()
    inner = [0.0] * n if internal is None else np.asarray(internal, dtype=np.float64).tolist()
    threshold = [i + k / a if a > 0 else float("inf") for i, a in zip(inner, area, strict=True)]
    for a, b, w in zip(us, vs, ws, strict=True):
        ra = a
        while parent[ra] != ra:
            ra = parent[ra]
        rb = b
        while parent[rb] != rb:
            rb = parent[rb]
        parent[a] = ra  # path halving keeps the trees shallow
        parent[b] = rb
        if ra == rb or w > threshold[ra] or w > threshold[rb]:
            continue
        if area[ra] < area[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        area[ra] += area[rb]
        # Edges come in increasing order, so w is the largest edge inside the
        # union, unless a node brought a larger Int of its own.
        inner[ra] = max(w, inner[ra], inner[rb])
        threshold[ra] = inner[ra] + k / area[ra]
    if min_size > 0 or small_size > 0:
        for a, b, w in zip(us, vs, ws, strict=True):
            ra = a
            while parent[ra] != ra:
                ra = parent[ra]
            rb = b
            while parent[rb] != rb:
                rb = parent[rb]
            if ra == rb:
                continue
            smaller = min(area[ra], area[rb])
            weak = w < small_contrast * min(threshold[ra], threshold[rb])
            if smaller < min_size or (smaller < small_size and weak):
                if area[ra] < area[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra
                area[ra] += area[rb]
    root = np.asarray(parent, dtype=np.int64)
    while True:
        up = root[root]
        if np.array_equal(up, root):
            break
        root = up
    return Merge(root, np.asarray(inner, dtype=np.float64), np.asarray(threshold, dtype=np.float64))
