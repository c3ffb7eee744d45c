"""Label-image utilities shared by the classic algorithms: per-label sums, interiors, relabelling.

Label images are ``(H, W)`` int32 with 0 for "no label". Sums are accumulated in
strips of rows so that a 4096 x 4096 image never needs a float64 copy of itself.
"""

from __future__ import annotations

import numpy as np

#: Rows per strip when accumulating per-label sums.
STRIP_ROWS = 512


def label_sums(labels: np.ndarray, values: np.ndarray | None, count: int) -> np.ndarray:
    """Sum of ``values`` over the pixels of each label ``0..count - 1`` (float64).

    With ``values=None``, the number of pixels of each label.
    """
    out = np.zeros(count, dtype=np.float64)
    for top in range(0, labels.shape[0], STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        weights = None if values is None else values[rows].ravel()
        out += np.bincount(labels[rows].ravel(), weights=weights, minlength=count)[:count]
    return out


def interior_rows(labels: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """Rows ``top:bottom`` of the mask of pixels whose four neighbours share their label.

    Pixels on the image's edge count their missing neighbours as the same label.
    """
    strip = labels[top:bottom]
    out = np.ones(strip.shape, dtype=bool)
    out[:, 1:] &= strip[:, 1:] == strip[:, :-1]
    out[:, :-1] &= strip[:, :-1] == strip[:, 1:]
    out[1:] &= strip[1:] == strip[:-1]
    out[:-1] &= strip[:-1] == strip[1:]
    if top > 0:
        out[0] &= strip[0] == labels[top - 1]
    if bottom < labels.shape[0]:
        out[-1] &= strip[-1] == labels[bottom]
    return out


def interior_counts(labels: np.ndarray, count: int) -> np.ndarray:
    """Number of interior pixels (see :func:`interior_rows`) of each label ``0..count - 1``.

    ``labels`` must be non-negative.
    """
    out = np.zeros(count, dtype=np.float64)
    height = labels.shape[0]
    for top in range(0, height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, height)
        inside = labels[top:bottom][interior_rows(labels, top, bottom)]
        out += np.bincount(inside, minlength=count)[:count]
    return out


def keep_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Renumber ``labels`` so the kept ones become ``1..n`` in order and the others 0.

    Args:
        labels: int label image.
        keep: bool per label value (``keep[0]`` is ignored: 0 stays 0).

    Returns:
        The new int32 label image.
    """
    keep = np.asarray(keep, dtype=bool).copy()
    keep[0] = False
    lut = np.zeros(len(keep), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]
