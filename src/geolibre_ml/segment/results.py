"""What a run produces: the features, and the objects behind them for the other answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from pyproj import CRS

from .features import FeatureSet
from .masks import Box
from .outlines import OutlineSet
from .raster import RasterInfo


@dataclass
class SegmentResult:
    """What a run produced.

    Attributes:
        features: one feature per kept object, in the output CRS, by ``value``.
        objects: the kept objects (after nodata and size filters), numbered (their
            ``value`` is their feature's), outlines in raster pixels, with scores.
        info: the raster that was segmented.
        output_crs: CRS of ``features`` (None for pixel coordinates).
        base_properties: the properties every feature shares (mode, model...).
        reused_windows: windows whose prepared state came from the cache (an
            earlier prompt on the same image), not read and prepared again.
        concepts: the text prompt's concepts (empty in the other modes); each
            object's own is its ``origin.prompt``.
    """

    features: FeatureSet
    objects: OutlineSet
    info: RasterInfo
    output_crs: CRS | None
    base_properties: dict[str, Any] = field(default_factory=dict)
    reused_windows: int = 0
    concepts: tuple[str, ...] = ()

    @property
    def several_concepts(self) -> bool:
        """True when the run answered more than one text concept: answers then say, per
        object, which one found it."""
        return len(self.concepts) > 1

    @cached_property
    def labels(self) -> np.ndarray:
        """``(height, width)`` int32 label image of the whole raster (0 = no object).

        Made on first use only, for answers that need the whole image at once (PNG);
        a GeoTIFF is written window by window (:meth:`label_window`). Where objects
        overlap, the highest score wins.
        """
        return self.objects.label_image((self.info.height, self.info.width))

    def label_window(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        """The ``(height, width)`` int32 label image of one window of the raster."""
        return self.objects.label_window(col, row, width, height)

    @property
    def scores(self) -> np.ndarray:
        """Score per label value (index 0 unused; NaN where the model gives none)."""
        out = np.full(self.objects.top_value + 1, np.nan, dtype=np.float32)
        out[self.objects.values] = self.objects.scores
        return out

    def boxes(self) -> list[tuple[int, Box, float]]:
        """``(value, (xmin, ymin, xmax, ymax), score)`` per object, by value, in pixel edges."""
        found = zip(
            self.objects.values.tolist(),
            self.objects.boxes(),
            self.objects.scores.tolist(),
            strict=True,
        )
        return sorted(found, key=lambda t: t[0])
