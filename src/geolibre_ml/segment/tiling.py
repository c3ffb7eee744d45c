"""Which windows of a raster a run reads: a grid of overlapping tiles, or windows around prompts.

A raster larger than the model's input is cut into square tiles of the model's native
size (:attr:`~.backends.Backend.input_size`; :data:`DEFAULT_TILE` for models without
one), each overlapping its neighbours by :func:`default_overlap` pixels, so that every
tile is seen at full resolution. Each tile *owns* a core: the tiles' overlaps are split
down their middle, so the cores partition the raster and every pixel belongs to exactly
one tile. An object is kept in the core of each tile that saw it, and the pieces of one
object in neighbouring cores are joined where the two tiles agree in their overlap
(:mod:`.seams`).

Box and point prompts need no grid: each box is answered in one window around it, and
the points outside every box in one window around them (:func:`prompt_windows`), so a
box on a huge raster reads a small part of it.

All coordinates are raster pixels; windows are ``(col_off, row_off, width, height)``
and cores ``(col0, row0, col1, row1)`` with the ends exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise

from .masks import Box
from .prompts import PointBoxPrompt

#: ``(col_off, row_off, width, height)`` of a window, in raster pixels.
WindowBox = tuple[int, int, int, int]

#: Tile edge, in pixels, for models without a native input size (the classic backend):
#: large enough that the regions of a typical scene fit in one tile, small enough
#: that a tile's work needs about a hundred MiB.
DEFAULT_TILE = 1024

#: Share of a tile that overlaps each neighbour by default (one eighth: 126 px of
#: SAM 3's 1008, 128 of 1024), wide enough for the two tiles to agree on an object.
OVERLAP_SHARE = 8


def default_overlap(tile_size: int) -> int:
    """The default overlap between tiles of ``tile_size`` pixels."""
    return tile_size // OVERLAP_SHARE


def _starts(size: int, tile: int, step: int) -> list[int]:
    """Tile starts along one axis; the last is moved back inside the raster."""
    if size <= tile:
        return [0]
    out = list(range(0, size - tile, step))
    return [*out, size - tile]


def _bounds(starts: list[int], tile: int, size: int) -> list[int]:
    """Core limits along one axis: 0, the middle of each overlap, ``size``."""
    middles = [(nxt + min(start + tile, size)) // 2 for start, nxt in pairwise(starts)]
    return [0, *middles, size]


@dataclass(frozen=True)
class TileGrid:
    """Square tiles covering a raster, each with the core it owns.

    Attributes:
        width, height: the raster's size, pixels.
        tile_size: the tiles' edge, pixels (a raster smaller than a tile is one tile).
        overlap: pixels each tile shares with its neighbour.
        columns, rows: tile starts along x and y.
    """

    width: int
    height: int
    tile_size: int
    overlap: int
    columns: tuple[int, ...]
    rows: tuple[int, ...]

    @classmethod
    def build(cls, width: int, height: int, tile_size: int, overlap: int) -> TileGrid:
        """The grid of ``tile_size`` tiles overlapping by ``overlap`` pixels.

        Raises:
            ValueError: an overlap outside ``[0, tile_size)``.
        """
        if not 0 <= overlap < tile_size:
            raise ValueError(f"overlap {overlap} must be in [0, {tile_size})")
        step = tile_size - overlap
        return cls(
            width,
            height,
            tile_size,
            overlap,
            tuple(_starts(width, tile_size, step)),
            tuple(_starts(height, tile_size, step)),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of tiles."""
        return len(self.rows), len(self.columns)

    def __len__(self) -> int:
        return len(self.rows) * len(self.columns)

    @property
    def windows(self) -> tuple[WindowBox, ...]:
        """Every tile's window, row by row (index ``i * columns + j``)."""
        w, h = min(self.tile_size, self.width), min(self.tile_size, self.height)
        return tuple((c, r, w, h) for r in self.rows for c in self.columns)

    @property
    def cores(self) -> tuple[Box, ...]:
        """Every tile's core, in the order of :attr:`windows`; together they partition
        the raster."""
        xs = _bounds(list(self.columns), self.tile_size, self.width)
        ys = _bounds(list(self.rows), self.tile_size, self.height)
        return tuple(
            (xs[j], ys[i], xs[j + 1], ys[i + 1])
            for i in range(len(self.rows))
            for j in range(len(self.columns))
        )

    def earlier_neighbours(self, index: int) -> tuple[int, ...]:
        """Tiles before ``index`` (row by row) whose window overlaps or touches its own:
        left, upper-left, up and upper-right. Every neighbouring pair is listed once,
        by the later of the two."""
        ncols = len(self.columns)
        i, j = divmod(index, ncols)
        out = []
        if j > 0:
            out.append(index - 1)
        if i > 0:
            out.extend((i - 1) * ncols + jj for jj in (j - 1, j, j + 1) if 0 <= jj < ncols)
        return tuple(out)

    def window_holding(self, box: tuple[float, float, float, float]) -> WindowBox:
        """The tile whose window holds ``box`` (pixels) nearest its centre, so that
        prompts on one image reuse the tiles' prepared state; a window around the box
        (:func:`window_around`) when no tile holds it whole."""
        x0, y0, x1, y1 = box
        size = self.tile_size
        w, h = min(size, self.width), min(size, self.height)

        def best(starts: tuple[int, ...], lo: float, hi: float, span: int) -> int | None:
            fits = [s for s in starts if s <= lo and hi <= s + span]
            if not fits:
                return None
            return min(fits, key=lambda s: abs(s + span / 2 - (lo + hi) / 2))

        col = best(self.columns, x0, x1, w)
        row = best(self.rows, y0, y1, h)
        if col is None or row is None:
            return window_around(box, size, self.width, self.height)
        return col, row, w, h

    def neighbours(self, index: int) -> tuple[int, ...]:
        """The up to eight tiles around ``index``."""
        nrows, ncols = self.shape
        i, j = divmod(index, ncols)
        return tuple(
            ii * ncols + jj
            for ii in (i - 1, i, i + 1)
            for jj in (j - 1, j, j + 1)
            if (ii, jj) != (i, j) and 0 <= ii < nrows and 0 <= jj < ncols
        )

    def last_neighbour(self, index: int) -> int:
        """The last tile (row by row) that neighbours ``index``: once it is merged,
        ``index``'s outlines are no longer needed."""
        ncols = len(self.columns)
        i, j = divmod(index, ncols)
        if i + 1 < len(self.rows):
            return (i + 1) * ncols + min(j + 1, ncols - 1)
        return index + 1 if j + 1 < ncols else index


def plan_windows(
    width: int, height: int, tile_size: int | None = None, overlap: int = 0
) -> tuple[WindowBox, ...]:
    """Windows covering a ``width`` x ``height`` raster (pixels).

    Without ``tile_size``, or when the raster fits in one tile, the whole raster is
    one window. Otherwise square tiles of ``tile_size`` overlap their neighbours by
    ``overlap`` pixels; the last row and column are shifted back inside the raster
    (so every tile is whole unless the raster is smaller than a tile).
    """
    if tile_size is None or (width <= tile_size and height <= tile_size):
        return ((0, 0, width, height),)
    return TileGrid.build(width, height, tile_size, overlap).windows


def tile_grid(
    width: int,
    height: int,
    input_size: int | None,
    tile_size: int | None = None,
    overlap: int | None = None,
    model_overlap: int | None = None,
) -> TileGrid:
    """The grid a run uses: ``tile_size`` if given, else the model's ``input_size``, else
    :data:`DEFAULT_TILE`; ``overlap`` if given, else the model's ``model_overlap``, else
    :func:`default_overlap`. A raster that fits in one tile is one window.

    A model without a native size gets tiles of at most :data:`DEFAULT_TILE`, as many
    as that needs, shrunk to cover the raster evenly: the last ones then do not
    overlap their neighbours by most of a tile.
    """
    size = tile_size or input_size or DEFAULT_TILE
    if overlap is None:
        overlap = model_overlap if model_overlap is not None else default_overlap(size)
    overlap = min(overlap, size - 1)
    if tile_size is None and input_size is None:
        size = max(_even(width, size, overlap), _even(height, size, overlap))
    return TileGrid.build(width, height, size, min(overlap, size - 1))


def _even(length: int, tile: int, overlap: int) -> int:
    """The smallest tile edge covering ``length`` pixels with as many tiles of at most
    ``tile`` pixels, overlapping by ``overlap``, as ``tile`` itself needs."""
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, math.ceil((length + (count - 1) * overlap) / count))


def window_around(
    box: tuple[float, float, float, float], size: int, width: int, height: int
) -> WindowBox:
    """A window of at least ``size`` pixels a side around ``box`` (pixels), inside the raster.

    A box larger than ``size`` gets a margin of a quarter of ``size`` on each side, so
    the model sees the object's surroundings; the window is centred on the box and
    moved, not shrunk, where it would leave the raster.
    """
    x0, y0, x1, y1 = box
    margin = size // 4

    def axis(lo: float, hi: float, limit: int) -> tuple[int, int]:
        span = max(size, math.ceil(hi - lo) + 2 * margin)
        span = min(span, limit)
        start = math.floor((lo + hi) / 2 - span / 2)
        start = min(max(start, 0), limit - span)
        return start, span

    col, w = axis(x0, x1, width)
    row, h = axis(y0, y1, height)
    return col, row, w, h


def prompt_windows(
    prompt: PointBoxPrompt, grid: TileGrid, *, similar: bool = False
) -> list[tuple[WindowBox, PointBoxPrompt]]:
    """The windows a box/point prompt is answered in, each with its part of ``prompt``
    (raster pixels): the grid's tile that holds it where one does (see
    :meth:`TileGrid.window_holding`).

    Each box is one object (``box_mode=object``): one window per box, with the points
    inside it, and one for the points outside every box. With ``similar`` the boxes
    are exemplars that the model compares with what it sees, so the whole prompt is
    answered in one window around all its boxes and points.
    """
    if similar:
        return [(grid.window_holding(_around(prompt.boxes, prompt.points)), prompt)]
    out: list[tuple[WindowBox, PointBoxPrompt]] = []
    for box in prompt.boxes:
        out.append((grid.window_holding(box), _part(prompt, (box,), prompt.points_in(box))))
    outside = prompt.points_outside_boxes()
    if outside:
        around = _around((), [p for p, _ in outside])
        out.append((grid.window_holding(around), _part(prompt, (), outside)))
    return out


def _around(
    boxes: tuple[tuple[float, float, float, float], ...] | list,
    points: tuple[tuple[float, float], ...] | list,
) -> tuple[float, float, float, float]:
    """The box around ``boxes`` and the pixels of ``points``."""
    xs = [b[0] for b in boxes] + [p[0] for p in points]
    ys = [b[1] for b in boxes] + [p[1] for p in points]
    xe = [b[2] for b in boxes] + [p[0] + 1 for p in points]
    ye = [b[3] for b in boxes] + [p[1] + 1 for p in points]
    return min(xs), min(ys), max(xe), max(ye)


def _part(
    prompt: PointBoxPrompt,
    boxes: tuple[tuple[float, float, float, float], ...],
    points: list[tuple[tuple[float, float], int]],
) -> PointBoxPrompt:
    """``prompt`` reduced to ``boxes`` and the labelled ``points``."""
    return replace(
        prompt,
        boxes=boxes,
        points=tuple(p for p, _ in points),
        labels=tuple(label for _, label in points),
    )
