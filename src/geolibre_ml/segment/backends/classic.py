"""The ``classic`` backend: image-processing algorithms, no neural network, CPU, offline.

- text: a fixed vocabulary of land-cover classes (:mod:`..classic.vocabulary`), each
  found from spectral indices or colour (:mod:`..classic.indices`) and cut into
  scored objects (:mod:`..classic.objects`);
- automatic: watershed superpixels merged with Felzenszwalb-Huttenlocher's criterion
  (:mod:`..classic.regions`);
- predict: GrabCut for boxes, region selection for points (:mod:`..classic.interactive`).

See docs/classic.md for the algorithms, their parameters, scores and limits.
"""

from __future__ import annotations

from typing import ClassVar

from ..chip import ImageChip
from ..classic.indices import membership
from ..classic.interactive import segment_prompt
from ..classic.objects import minimum_mapping_unit, objects_from_membership
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
        # Classic objects never overlap: one label image holds them all, which costs
        # less than a mask per region (thousands of them in automatic mode).
        chip = prepared
        if isinstance(prompt, TextPrompt):
            return self._text(chip, prompt)
        if isinstance(prompt, AutomaticPrompt):
            return segment_regions(chip)
        return segment_prompt(chip, prompt)

    def _text(self, chip: ImageChip, prompt: TextPrompt) -> MaskSet:
        evidence = membership(chip, resolve_class(prompt.text))
        return objects_from_membership(
            evidence.values,
            prompt.confidence_threshold,
            valid=chip.valid,
            min_pixels=minimum_mapping_unit(chip.pixel_size_m),
        )
