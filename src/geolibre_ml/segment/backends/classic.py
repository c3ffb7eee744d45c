"""The ``classic`` backend: image-processing algorithms, no neural network, CPU, offline.

- text: a fixed vocabulary of land-cover classes (:mod:`..classic.vocabulary`), each
  found from spectral indices or colour (:mod:`..classic.indices`) and cut into
  scored objects (:mod:`..classic.objects`); several concepts are answered one after
  the other, each object carrying its own; exemplar boxes are refused (classic has
  nothing to compare them with);
- automatic: watershed superpixels merged with Felzenszwalb-Huttenlocher's criterion
  (:mod:`..classic.regions`);
- predict: GrabCut for boxes, region selection for points (:mod:`..classic.interactive`);
  one object per box (each whole where boxes overlap) and one for the points outside
  every box; with ``multimask_output``, a second candidate for each (see :meth:`_predict`).
  That is ``box_mode=object``; ``similar`` (every object like the boxed one) is refused.

See docs/classic.md for the algorithms, their parameters, scores and limits.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from ..chip import ImageChip
from ..classic.indices import membership
from ..classic.interactive import segment_prompt
from ..classic.objects import minimum_mapping_unit, objects_from_membership
from ..classic.regions import segment_regions
from ..classic.vocabulary import resolve_class
from ..errors import UnsupportedPrompt
from ..masks import MaskSet, ObjectSet, Origin, tight_box
from ..prompts import AutomaticPrompt, PointBoxPrompt, Prompt, TextPrompt
from .base import Availability, Backend

#: Overlap between tiles, in pixels (see :attr:`ClassicBackend.tile_overlap`).
CLASSIC_OVERLAP = 64


class ClassicBackend(Backend):
    """Segmentation with classic image-processing algorithms (see docs/classic.md)."""

    version: ClassVar[str] = "classic"
    model_ids: ClassVar[tuple[str, ...]] = ("default",)
    thread_safe: ClassVar[bool] = True

    @classmethod
    def availability(cls, model_id: str) -> Availability:
        return Availability(True, "The classic backend is built in and always ready.")

    @property
    def tile_overlap(self) -> int | None:
        # Regions need only their superpixels' context (cells of 12 px, a 7 px texture
        # window) to be the same in both tiles: half the default overlap, and a 20,000 px
        # raster reads 16 % more pixels than it has instead of 39 %.
        return CLASSIC_OVERLAP

    def check_prompt(self, prompt: Prompt) -> None:
        if isinstance(prompt, TextPrompt):
            if prompt.boxes:
                raise UnsupportedPrompt(
                    "the classic backend does not take exemplar boxes; use model_version=sam3 "
                    "or drop boxes.",
                    fields=("boxes", "model_version"),
                )
            for concept in prompt.concepts:
                resolve_class(concept)
        elif isinstance(prompt, PointBoxPrompt):
            if prompt.box_mode == "similar":
                raise UnsupportedPrompt(
                    "the classic backend answers one object per box and cannot find every "
                    "object similar to it; use box_mode=object or model_version=sam3.",
                    fields=("box_mode", "model_version"),
                )
        elif not isinstance(prompt, AutomaticPrompt):
            raise UnsupportedPrompt(f"The classic backend cannot answer {type(prompt).__name__}.")

    def run(self, prepared: ImageChip, prompt: Prompt) -> MaskSet | ObjectSet:
        # Classic objects never overlap: one label image holds them all, which costs
        # less than a mask per region (thousands of them in automatic mode).
        chip = prepared
        # run() may be called without segment()'s caller having checked the prompt.
        self.check_prompt(prompt)
        if isinstance(prompt, TextPrompt):
            concepts = prompt.concepts
            if len(concepts) == 1:
                return self._text(chip, concepts[0], prompt.confidence_threshold)
            return self._concepts(chip, concepts, prompt.confidence_threshold)
        if isinstance(prompt, AutomaticPrompt):
            return segment_regions(chip)
        return self._predict(chip, prompt)

    def _concepts(self, chip: ImageChip, concepts: tuple[str, ...], threshold: float) -> ObjectSet:
        """Each concept answered on its own, joined as cropped objects: two classes'
        label images would collide in numbering, and their objects may overlap
        (``water`` and ``wetland`` share pixels)."""
        found = [
            self._text(chip, concept, threshold).objects(Origin(prompt=concept)).cropped()
            for concept in concepts
        ]
        joined = ObjectSet.concat(found)
        joined.shape = chip.shape
        return joined

    def _text(self, chip: ImageChip, concept: str, threshold: float) -> MaskSet:
        evidence = membership(chip, resolve_class(concept))
        return objects_from_membership(
            evidence.values,
            threshold,
            valid=chip.valid,
            min_pixels=minimum_mapping_unit(chip.pixel_size_m),
        )

    def _predict(self, chip: ImageChip, prompt: PointBoxPrompt) -> ObjectSet:
        """One object per box and one for the points outside every box, each its own mask.

        With ``multimask_output`` each gets a second candidate made the other way, as
        SAM offers alternatives: for a box, the automatic region under its centre (or
        its first foreground point), cut to the box, beside GrabCut's object; for
        points, GrabCut in the box around their object, beside the regions holding
        them. A candidate equal to the first (IoU over 0.95) is left out.
        """
        found = _Candidates(chip.shape)
        for box in prompt.boxes:
            inside = prompt.points_in(box)
            first = found.add(segment_prompt(chip, _prompt(inside, (box,))), Origin(box=box), None)
            if prompt.multimask_output:
                seed = next((p for p, lab in inside if lab == 1), _centre(box))
                region = segment_prompt(chip, _prompt([(seed, 1)], ()))
                found.add(region, Origin(box=box, candidate=1), first, clip=box)
        loose = prompt.points_outside_boxes()
        seeds = [p for p, lab in loose if lab == 1]
        if seeds:
            origin = Origin(point=seeds[0])
            first = found.add(segment_prompt(chip, _prompt(loose, ())), origin, None)
            if prompt.multimask_output and first is not None:
                box = _grown_box(first, chip.shape)
                cut = segment_prompt(chip, _prompt(loose, (box,)))
                found.add(cut, Origin(point=seeds[0], candidate=1), first)
        return found.objects()


class _Candidates:
    """Masks collected for a predict answer, with their scores and origins."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.masks: list[np.ndarray] = []
        self.scores: list[float] = []
        self.origins: list[Origin] = []

    def add(
        self,
        answer: MaskSet,
        origin: Origin,
        like: np.ndarray | None,
        *,
        clip: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray | None:
        """Keep ``answer``'s object (unless empty, or nearly ``like``); return its mask."""
        if answer.count < 1:
            return None
        mask = answer.labels == 1
        if clip is not None:
            x0, y0 = math.floor(clip[0]), math.floor(clip[1])
            x1, y1 = math.ceil(clip[2]), math.ceil(clip[3])
            inside = np.zeros_like(mask)
            inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
            mask &= inside
        if not mask.any():
            return None
        if like is not None:
            union = np.count_nonzero(mask | like)
            if np.count_nonzero(mask & like) > 0.95 * union:
                return None
        self.masks.append(mask)
        self.scores.append(float(answer.scores[1]))
        self.origins.append(origin)
        return mask

    def objects(self) -> ObjectSet:
        return ObjectSet.from_masks(self.masks, self.scores, self.origins, shape=self.shape)


def _prompt(
    points: list[tuple[tuple[float, float], int]],
    boxes: tuple[tuple[float, float, float, float], ...],
) -> PointBoxPrompt:
    return PointBoxPrompt(
        points=tuple(p for p, _ in points), labels=tuple(lab for _, lab in points), boxes=boxes
    )


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _grown_box(mask: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """The bounding box of ``mask`` grown by a quarter of its size on each side."""
    box = tight_box(mask)
    assert box is not None
    x0, y0, x1, y1 = box
    dx, dy = max((x1 - x0) // 4, 2), max((y1 - y0) // 4, 2)
    height, width = shape
    return (
        float(max(x0 - dx, 0)),
        float(max(y0 - dy, 0)),
        float(min(x1 + dx, width)),
        float(min(y1 + dy, height)),
    )
