"""What a backend answers: a label image with a score per object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MaskSet:
    """Objects found in one chip, as a label image.

    Attributes:
        labels: ``(H, W)`` int32 on the chip's pixel grid; 0 is background and
            ``1..n`` are objects. Where a model returns overlapping masks, the
            higher-scoring object is drawn last and so wins the shared pixels.
        scores: ``(n + 1,)`` float32; ``scores[k]`` is the confidence of object
            ``k`` in [0, 1] (NaN where the model gives none); ``scores[0]`` is unused.
    """

    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> MaskSet:
        """A mask set with no objects on a grid of ``shape`` (height, width)."""
        return cls(np.zeros(shape, dtype=np.int32), np.full(1, np.nan, dtype=np.float32))

    @classmethod
    def from_masks(cls, masks: list[np.ndarray], scores: list[float]) -> MaskSet:
        """Flatten boolean masks into a label image, the highest score drawn last.

        Args:
            masks: boolean ``(H, W)`` arrays, one per object, all the same shape.
            scores: one confidence per mask, in [0, 1].
        """
        if not masks:
            raise ValueError("from_masks needs at least one mask; use MaskSet.empty")
        order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
        labels = np.zeros(masks[0].shape, dtype=np.int32)
        out_scores = np.full(len(masks) + 1, np.nan, dtype=np.float32)
        for rank, index in enumerate(order, start=1):
            labels[masks[index]] = rank
            out_scores[rank] = scores[index]
        return cls(labels, out_scores)

    @property
    def count(self) -> int:
        """Number of labels (objects) the set can hold, present or not."""
        return len(self.scores) - 1
