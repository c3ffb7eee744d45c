"""The ``classic`` backend: image-processing algorithms, no neural network, CPU, offline."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from ..chip import ImageChip
from ..classic.indices import membership
from ..classic.interactive import segment_prompt
from ..classic.regions import segment_regions
from ..classic.vocabulary import resolve_class
from ..errors import UnsupportedPrompt
from ..masks import MaskSet
from ..prompts import AutomaticPrompt, PointBoxPrompt, Prompt, TextPrompt
from .base import Availability, Backend


class ClassicBackend(Backend):
    """Segmentation with classic image-processing algorithms (see docs/classic.md)."""

    version: ClassVar[str] = "classic"
    model_ids: ClassVar[tuple[str, ...]] = ("default",)
    thread_safe: ClassVar[bool] = True

    @classmethod
    def availability(cls, model_id: str) -> Availability:
        return Availability(True, "The classic backend is built in and always ready.")

    def check_prompt(self, prompt: Prompt) -> None:
        if isinstance(prompt, TextPrompt):
            resolve_class(prompt.text)
        elif not isinstance(prompt, (AutomaticPrompt, PointBoxPrompt)):
            raise UnsupportedPrompt(f"The classic backend cannot answer {type(prompt).__name__}.")

    def run(self, prepared: ImageChip, prompt: Prompt) -> MaskSet:
        chip = prepared
        if isinstance(prompt, TextPrompt):
            return self._text(chip, prompt)
        if isinstance(prompt, AutomaticPrompt):
            return segment_regions(chip)
        return segment_prompt(chip, prompt)

    def _text(self, chip: ImageChip, prompt: TextPrompt) -> MaskSet:
        p = membership(chip, resolve_class(prompt.text))
        p[~chip.valid] = 0
        cut = min(prompt.confidence_threshold, 0.5)
        count, labels = cv2.connectedComponents((p >= cut).astype(np.uint8), 4, cv2.CV_32S)
        sums = np.bincount(labels.ravel(), weights=p.ravel(), minlength=count)
        sizes = np.bincount(labels.ravel(), minlength=count)
        scores = (sums / np.maximum(sizes, 1)).astype(np.float32)
        keep = scores >= prompt.confidence_threshold
        keep[0] = False
        lut = np.zeros(count, dtype=np.int32)
        lut[keep] = np.arange(1, keep.sum() + 1)
        out_scores = np.concatenate([[np.nan], scores[keep]]).astype(np.float32)
        return MaskSet(lut[labels], out_scores)
