"""Box and point prompts without a neural network (placeholder)."""

from __future__ import annotations

import numpy as np

from ..chip import ImageChip
from ..masks import MaskSet
from ..prompts import PointBoxPrompt


def segment_prompt(chip: ImageChip, prompt: PointBoxPrompt) -> MaskSet:
    """One object per box (placeholder: the box itself)."""
    masks, scores = [], []
    for x0, y0, x1, y1 in prompt.boxes:
        mask = np.zeros(chip.shape, dtype=bool)
        mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        masks.append(mask)
        scores.append(1.0)
    if not masks:
        return MaskSet.empty(chip.shape)
    return MaskSet.from_masks(masks, scores)
