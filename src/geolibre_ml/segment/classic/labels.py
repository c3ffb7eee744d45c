"""Label-image utilities shared by the classic algorithms: per-label sums and relabelling.

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
