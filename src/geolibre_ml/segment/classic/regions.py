"""Automatic segmentation: every distinct region of the image as its own object."""

from __future__ import annotations

import cv2
import numpy as np

from ..chip import ImageChip
from ..masks import MaskSet


def segment_regions(chip: ImageChip) -> MaskSet:
    """Split the chip into regions of homogeneous colour (placeholder: quantise + components)."""
    lab = cv2.cvtColor(chip.rgb, cv2.COLOR_RGB2LAB)
    quant = (lab // 32).astype(np.int32)
    key = (quant[..., 0] * 64 + quant[..., 1] * 8 + quant[..., 2]).astype(np.int32)
    labels = np.zeros(key.shape, dtype=np.int32)
    offset = 0
    for value in np.unique(key[chip.valid]):
        count, comp = cv2.connectedComponents(
            ((key == value) & chip.valid).astype(np.uint8), 4, cv2.CV_32S
        )
        labels[comp > 0] = comp[comp > 0] + offset
        offset += count - 1
    scores = np.full(offset + 1, np.nan, dtype=np.float32)
    return MaskSet(labels, scores)
