"""A run's objects once merged: one outline per object, in raster pixels.

After the per-window work every object is a polygon on the raster's pixel grid
(integer corners, x right, y down), carried with its pixel count, score and origin
until the answer. Polygons, unlike masks, cost what the object's outline costs, not
what its area costs, and pieces of one object seen by several tiles join exactly
(:mod:`.seams`). A label image is made from them only where an answer needs one,
window by window (:meth:`OutlineSet.label_window`): pixels whose centre lies inside
an outline, which on the exact grid are the object's own pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import rasterio.features
import shapely
from affine import Affine

from .crs import apply_transform
from .masks import Box, Origin
from .vectorize import to_grid

#: Outlines moved onto the grid at a time (see :meth:`OutlineSet.move_to_grid`).
_GRID_BATCH = 4096


@dataclass(frozen=True)
class Outline:
    """One object of a run (a row of an :class:`OutlineSet`).

    Attributes:
        value: its number in the run (its feature's ``value``, its label).
        box: ``(col0, row0, col1, row1)``, pixel edges, ends exclusive.
        score: confidence in [0, 1], NaN where the model gives none.
        origin: the prompt element that found it.
        geometry: its (multi)polygon in raster pixels.
        pixels: its pixel count.
    """

    value: int
    box: Box
    score: float
    origin: Origin
    geometry: shapely.Geometry
    pixels: int


@dataclass
class OutlineSet:
    """Objects as pixel polygons, column by column.

    Attributes:
        geometries: shapely (multi)polygons in raster pixels (object array).
        pixels: pixel count of each (int64).
        scores: score of each (float64, NaN: none).
        origins: origin of each.
        layered: True for objects that tile an area with their neighbours (one
            label layer of a backend): simplified together as a coverage.
        seamed: True for objects whose outline was cut along a tile's core (their
            vertices along it must be matched to their neighbours' before
            reprojection or simplification; see :func:`.seams.node_seams`).
        values: each object's number in the run (1, 2, ... by default).
        transform: where ``geometries`` are not in raster pixels but on the raster's
            grid in its CRS, the raster's transform (pixels to CRS); None: pixels.
            Once a run is finished its outlines are the features' own polygons, so
            the answer is held once.
        box_array: ``(n, 4)`` int64 pixel boxes, kept when the outlines leave pixel
            space; None: taken from the outlines.
    """

    geometries: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    pixels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    origins: list[Origin] = field(default_factory=list)
    layered: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    seamed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    values: np.ndarray | None = None
    transform: Affine | None = None
    box_array: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.values is None:
            self.values = np.arange(1, len(self.geometries) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.geometries)

    def __iter__(self) -> Iterator[Outline]:
        boxes = self.boxes()
        for i in range(len(self)):
            yield Outline(
                int(self.values[i]),
                boxes[i],
                float(self.scores[i]),
                self.origins[i],
                self.geometries[i],
                int(self.pixels[i]),
            )

    def boxes(self) -> list[Box]:
        """Each object's pixel box ``(col0, row0, col1, row1)`` (its outline's bounds)."""
        return [tuple(int(v) for v in row) for row in self.pixel_boxes()]  # type: ignore[misc]

    def pixel_boxes(self) -> np.ndarray:
        """``(n, 4)`` int64 ``(col0, row0, col1, row1)`` of each object."""
        if self.box_array is not None:
            return self.box_array
        if not len(self):
            return np.empty((0, 4), dtype=np.int64)
        assert self.transform is None, "outlines off the pixel grid keep their boxes"
        return shapely.bounds(self.geometries).round().astype(np.int64)

    def pixel_geometries(self) -> np.ndarray:
        """The outlines in raster pixels (x right, y down), whatever :attr:`transform`."""
        if self.transform is None or not len(self):
            return self.geometries
        inverse = ~self.transform

        def back(xy: np.ndarray) -> np.ndarray:
            x, y = apply_transform(inverse, xy[:, 0], xy[:, 1])
            # Pixel corners are whole numbers; the inverse leaves rounding noise.
            return np.round(np.column_stack([x, y]), 6)

        return shapely.transform(self.geometries, back)

    def subset(self, keep: np.ndarray) -> OutlineSet:
        """The objects where ``keep`` (one bool per object) is True, values kept."""
        return self.take(np.flatnonzero(np.asarray(keep, dtype=bool)))

    def take(self, indices: np.ndarray) -> OutlineSet:
        """The objects at ``indices`` (int positions), in that order, values kept."""
        idx = np.asarray(indices, dtype=np.int64)
        return OutlineSet(
            self.geometries[idx],
            self.pixels[idx],
            self.scores[idx],
            [self.origins[i] for i in idx.tolist()],
            self.layered[idx],
            self.seamed[idx],
            self.values[idx],
            self.transform,
            None if self.box_array is None else self.box_array[idx],
        )

    def keep_only(self, keep: np.ndarray) -> None:
        """Drop, in place, the objects where ``keep`` is False (values kept). In place, so
        that the dropped outlines are freed even while a caller still holds the set."""
        kept = self.subset(keep)
        vars(self).update(vars(kept))

    def move_to_grid(self, transform: Affine) -> None:
        """Move the outlines, in place, from raster pixels onto the raster's grid by
        ``transform`` (see :func:`.vectorize.to_grid`), boxes kept.

        A few thousand at a time, each replacing its pixel outlines, so the answer is
        never held twice.
        """
        boxes = self.pixel_boxes()
        for start in range(0, len(self), _GRID_BATCH):
            part = slice(start, start + _GRID_BATCH)
            self.geometries[part] = to_grid(self.geometries[part], transform)
        self.transform = None if transform.is_identity else transform
        self.box_array = boxes

    @property
    def top_value(self) -> int:
        """The largest value (0 when empty)."""
        return int(self.values.max()) if len(self) else 0

    def label_window(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        """The ``(height, width)`` int32 label image of a window (0: no object).

        Where objects overlap, the highest score wins (ties: the higher value; a
        missing score loses to any score), as samgeo-api flattens its masks.
        """
        out = np.zeros((height, width), dtype=np.int32)
        if not len(self):
            return out
        x0, y0, x1, y1 = self.pixel_boxes().T
        hits = np.flatnonzero((x0 < col + width) & (x1 > col) & (y0 < row + height) & (y1 > row))
        if not hits.size:
            return out
        rank = np.where(np.isfinite(self.scores[hits]), self.scores[hits], -1.0)
        # Burnt in rising score: later shapes overwrite earlier ones.
        order = hits[np.lexsort((self.values[hits], rank))]
        shapes = zip(self.geometries[order], self.values[order].tolist(), strict=True)
        return rasterio.features.rasterize(
            shapes,
            out_shape=(height, width),
            transform=(self.transform or Affine.identity()) @ Affine.translation(col, row),
            fill=0,
            dtype="int32",
            out=out,
        )

    def label_image(self, shape: tuple[int, int]) -> np.ndarray:
        """The whole ``(height, width)`` label image (small rasters; see
        :meth:`label_window`)."""
        return self.label_window(0, 0, shape[1], shape[0])

    @staticmethod
    def concat(sets: list[OutlineSet]) -> OutlineSet:
        """All objects of ``sets``, renumbered 1, 2, ... in order."""
        joined = OutlineSet.join(sets)
        joined.values = np.arange(1, len(joined) + 1, dtype=np.int64)
        return joined

    @staticmethod
    def join(sets: list[OutlineSet]) -> OutlineSet:
        """All objects of ``sets``, in order, values kept; the sets share their
        :attr:`transform` (that of the first)."""
        sets = [s for s in sets if len(s)]
        if not sets:
            return OutlineSet()
        boxes = None
        if sets[0].transform is not None or any(s.box_array is not None for s in sets):
            boxes = np.concatenate([s.pixel_boxes() for s in sets])
        return OutlineSet(
            np.concatenate([s.geometries for s in sets]),
            np.concatenate([s.pixels for s in sets]),
            np.concatenate([s.scores for s in sets]),
            [o for s in sets for o in s.origins],
            np.concatenate([s.layered for s in sets]),
            np.concatenate([s.seamed for s in sets]),
            np.concatenate([s.values for s in sets]),
            sets[0].transform,
            boxes,
        )
