"""The backend interface: one segmentation model behind a small, fixed surface.

A backend prepares an image chip once (for SAM 3, the expensive image encoding;
for classic, the chip itself) and then answers any number of prompts on it with an
:class:`~geolibre_ml.segment.masks.ObjectSet`: one mask per object, cropped to its
box, with its score and origin (or, for non-overlapping objects, a
:class:`~geolibre_ml.segment.masks.MaskSet` label image, turned into objects that
share it). The pipeline keeps prepared state in a cache between prompts
(:mod:`..cache`), so :meth:`Backend.prepare` must not depend on the prompt.
Nothing outside a backend knows which model runs. Backend modules import their
heavy dependencies (torch, transformers) inside methods, never at module level, so
that listing models stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..cache import nbytes_of
from ..chip import ImageChip
from ..masks import MaskSet, ObjectSet
from ..prompts import Mode, Prompt


@dataclass(frozen=True)
class Availability:
    """Whether a model can be loaded here, now, offline; and if not, how to fix it."""

    ready: bool
    message: str


class Backend(ABC):
    """A segmentation model.

    Class attributes describe the model family (one ``model_version`` in the
    samgeo-api protocol); an instance is one loaded model (one ``model_id``).
    """

    #: The protocol's ``model_version`` (e.g. ``"classic"``, ``"sam3"``).
    version: ClassVar[str]
    #: Model identifiers this backend can load; the first is the default.
    model_ids: ClassVar[tuple[str, ...]]
    #: Prompt modes the backend answers.
    modes: ClassVar[frozenset[Mode]] = frozenset({"text", "automatic", "predict"})
    #: True when :meth:`prepare` and :meth:`run` may be called from several threads at once.
    thread_safe: ClassVar[bool] = False
    #: True when the model wants a GPU: on a Dask cluster its tiles then ask for a
    #: worker with the ``GPU`` resource (:mod:`..cluster`).
    wants_gpu: ClassVar[bool] = False
    #: True when any model id is accepted (checkpoint folders), not only :attr:`model_ids`.
    accepts_any_model_id: ClassVar[bool] = False
    #: What a box means when a predict prompt's ``box_mode`` is not given: ``object``
    #: (the boxed object) or ``similar`` (every object like it).
    default_box_mode: ClassVar[str] = "object"
    #: Chips :meth:`prepare_batch` encodes in one pass; tiles are given in groups of it.
    batch_size: int = 1

    def __init__(self, model_id: str, device: str | None = None) -> None:
        self.model_id = model_id
        self.device = device

    @classmethod
    def availability(cls, model_id: str) -> Availability:
        """Whether ``model_id`` can be loaded now, without network (cheap: loads nothing)."""
        return Availability(True, f"{cls.version} is ready.")

    @property
    def input_size(self) -> int | None:
        """Edge in pixels of the tiles the model works best on, or None for any size."""
        return None

    @property
    def tile_overlap(self) -> int | None:
        """Pixels tiles should share with their neighbours, or None for an eighth of a tile
        (see :mod:`..tiling`): wide enough for the model to see an object that crosses
        a seam from both sides."""
        return None

    def check_prompt(self, prompt: Prompt) -> None:
        """Raise :class:`~geolibre_ml.segment.errors.UnsupportedPrompt` if unanswerable.

        Called before any pixel is read, so that a bad prompt fails fast.
        """

    def prepare(self, chip: ImageChip) -> Any:
        """Compute what prompts on ``chip`` share (an image embedding, features).

        The result may be cached and reused for later prompts on the same pixels.
        """
        return chip

    def prepare_batch(self, chips: Sequence[ImageChip]) -> list[Any]:
        """:meth:`prepare` for several chips (tiles of one raster, or several images),
        in as few model passes as the backend can; the default prepares each alone."""
        return [self.prepare(chip) for chip in chips]

    def prepared_nbytes(self, prepared: Any) -> int:
        """Memory held by a prepared state, in bytes (what the cache counts)."""
        return nbytes_of(prepared)

    @abstractmethod
    def run(self, prepared: Any, prompt: Prompt) -> ObjectSet | MaskSet:
        """Answer ``prompt`` on a prepared chip; prompt coordinates are chip pixels,
        and so are the boxes of the objects returned."""

    def segment(self, chip: ImageChip, prompt: Prompt) -> ObjectSet | MaskSet:
        """Prepare ``chip`` and answer ``prompt`` on it."""
        return self.run(self.prepare(chip), prompt)

    def close(self) -> None:
        """Release what the model holds (GPU memory, caches)."""
