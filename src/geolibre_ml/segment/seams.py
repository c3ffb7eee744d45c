"""Objects across tile seams: each tile's pieces, and the graph that joins them.

How tiles become one answer (the reasons are in docs/tiling.md):

1. **Per tile** (:func:`tile_pieces`): the tile's objects are traced as polygons on
   the raster's pixel grid, and each is cut to the tile's *core*, the part of the
   raster the tile owns (the overlaps are split down the middle, so cores
   partition the raster). What is kept of an object in a core is its *piece*. An
   object that reaches into a neighbouring tile also keeps its whole outline in the
   tile, to be compared with what the neighbour saw.
2. **Across seams** (:class:`Stitcher`): two pieces of neighbouring tiles are the
   same object when their whole outlines agree in the two tiles' overlap: an
   intersection over union of at least :data:`SEAM_IOU` there (and the same concept
   for text prompts). Pieces are joined with a union-find over these links, so an
   object crossing many tiles, a long road or a lake, becomes one group; an
   object seen twice in an overlap is one group too, kept once, from the core each
   part lies in.
3. **Per group** (:meth:`Stitcher.finish`): the pieces' polygons are unioned (they
   meet exactly along the core lines: same integer corners); its pixel count is
   the sum of its pieces' (cores do not overlap), its score the best of theirs.

Only outlines are kept between tiles, and a tile's whole outlines only until its
last neighbour has been merged: the merge holds the answer's polygons and one row
of tiles' seam outlines, whatever the raster's size. Everything here is plain data
(shapely geometries, numpy arrays) and pickles, so tiles can run anywhere.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import shapely

from .masks import Box, LabelLayer, MaskObject, ObjectSet, relabel
from .outlines import OutlineSet
from .tiling import TileGrid, WindowBox
from .vectorize import polygonize, polygonize_objects

#: Intersection over union, within two tiles' overlap, from which two pieces are
#: the same object: the two tiles saw the same pixels there, give or take a few.
SEAM_IOU = 0.5


def _box(box: Box | WindowBox, *, window: bool = False) -> shapely.Geometry:
    if window:
        col, row, width, height = box
        return shapely.box(col, row, col + width, row + height)
    return shapely.box(*box)


def _polygonal(geometries: np.ndarray) -> np.ndarray:
    """Only the polygonal parts of each geometry (an intersection along a core line
    may leave lines and points beside the polygons); empty where none is left."""
    out = np.array(geometries, dtype=object)
    mixed = np.flatnonzero(shapely.get_type_id(out) == 7)  # GeometryCollection
    for i in mixed:
        parts = shapely.get_parts(out[i])
        polygons = parts[shapely.get_type_id(parts) == 3]
        out[i] = (
            shapely.multipolygons(polygons)
            if len(polygons) > 1
            else (polygons[0] if len(polygons) else shapely.Polygon())
        )
    return out


def _clip(geometries: np.ndarray, box: Box) -> np.ndarray:
    """``geometries`` cut to the rectangle ``box``: GEOS's rectangle clipping, many
    times faster than a general intersection. Its answer may be invalid where an
    outline runs along the rectangle's edge; those few are repaired."""
    out = _polygonal(shapely.clip_by_rect(geometries, *box))
    broken = ~shapely.is_valid(out)
    if broken.any():
        out[broken] = _polygonal(shapely.make_valid(out[broken]))
    return out


@dataclass
class TilePieces:
    """What one tile found, cut to its core, ready to be stitched (raster pixels).

    Attributes:
        index: the tile's place in the grid (None: a window of its own, no seams).
        window: the tile's window.
        core: the part of the raster the tile owns.
        pieces: the objects cut to the core, by the values of
            :meth:`.masks.ObjectSet.numbered` (a backend's label values kept).
        outlines: per piece, its whole outline in the tile where it reaches into a
            neighbouring tile, else None; dropped once every neighbour is merged.
        valid: the core's data pixels as a polygon, when the answer needs them
            (``unique=false, foreground=false``), else None.
        reused: True when the tile's prepared state came from the cache.
        strips: for the pieces of one label layer, their labels (piece index + 1) over
            the overlap with each neighbour, keyed by the overlap's rectangle; dropped
            with :attr:`outlines`.
    """

    index: int | None
    window: WindowBox
    core: Box
    pieces: OutlineSet
    outlines: np.ndarray
    valid: shapely.Geometry | None = None
    reused: bool = False
    strips: dict[Box, np.ndarray] = field(default_factory=dict)


def tile_pieces(
    objects: ObjectSet,
    *,
    window: WindowBox,
    core: Box | None = None,
    neighbours: tuple[WindowBox, ...] = (),
    index: int | None = None,
    junctions: bool = False,
    valid: np.ndarray | None = None,
) -> TilePieces:
    """One tile's objects as pieces of its core (see the module's steps).

    Args:
        objects: the tile's objects in raster pixels, nodata removed.
        window: the tile's window.
        core: the part the tile owns (None: all of its window).
        neighbours: the windows of the tiles around it; objects reaching into one
            keep their whole outline.
        index: the tile's place in the grid.
        junctions: trace with vertices where three labels meet (see
            :func:`.vectorize.polygonize`), for reprojection and simplification.
        valid: ``(height, width)`` bool of the window; when given, the core's data
            pixels are traced too (:attr:`TilePieces.valid`).
    """
    col, row, width, height = window
    core = core or (col, row, col + width, row + height)
    numbered = objects.numbered()
    by_value = {o.value: o for o in numbered.objects}
    traced = polygonize_objects(numbered, junctions=junctions)
    whole = traced.geometries
    members = [by_value[int(v)] for v in traced.values.tolist()]

    bounds = shapely.bounds(whole) if len(whole) else np.empty((0, 4))
    x0, y0, x1, y1 = core
    left, top, right, bottom = bounds.T
    inside = (left >= x0) & (top >= y0) & (right <= x1) & (bottom <= y1)
    outside = (right <= x0) | (bottom <= y0) | (left >= x1) | (top >= y1)
    cut = ~inside & ~outside
    kept = np.array(whole, dtype=object)
    if cut.any():
        kept[cut] = _clip(whole[cut], core)
    pixels = np.rint(shapely.area(kept)).astype(np.int64) if len(kept) else np.empty(0, np.int64)
    present = ~outside & (pixels > 0)

    keep = np.flatnonzero(present)
    layered = np.asarray([members[i].layer is not None for i in keep], dtype=bool)
    pieces = OutlineSet(
        kept[keep],
        pixels[keep],
        np.asarray([members[i].score for i in keep], dtype=np.float64),
        [members[i].origin for i in keep],
        layered,
        cut[keep],
        traced.values[keep],
    )
    # One label layer (classic regions, one class) is compared with the neighbours'
    # as label images of the overlaps, cut from the layer; other objects (masks that
    # may overlap) by their outlines.
    strips: dict[Box, np.ndarray] = {}
    outlines = np.full(len(keep), None, dtype=object)
    if len(numbered.layers) == 1:
        strips = _strips(numbered.layers[0], [members[i] for i in keep], window, neighbours)
    else:
        layered[:] = False
    reaching = np.zeros(len(keep), dtype=bool)
    for other in neighbours:
        c, r, w, h = other
        reaching |= (
            (left[keep] < c + w) & (right[keep] > c) & (top[keep] < r + h) & (bottom[keep] > r)
        )
    by_outline = reaching & ~layered
    outlines[by_outline] = whole[keep[by_outline]]
    valid_outline = None
    if valid is not None:
        valid_outline = _core_data(valid, window, core)
    return TilePieces(index, window, core, pieces, outlines, valid_outline, strips=strips)


def overlap_box(a: WindowBox, b: WindowBox) -> Box | None:
    """The rectangle two windows share, or None."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _strips(
    layer: LabelLayer,
    members: list[MaskObject],
    window: WindowBox,
    neighbours: tuple[WindowBox, ...],
) -> dict[Box, np.ndarray]:
    """The pieces of ``layer`` over the tile's overlap with each neighbour, as label
    images (``k``: piece ``k - 1``; 0: none), keyed by the overlap's rectangle."""
    lut = np.zeros(int(layer.labels.max(initial=0)) + 1, dtype=np.int32)
    for k, member in enumerate(members, start=1):
        if member.layer is not None:
            lut[member.label] = k
    out = {}
    for other in neighbours:
        shared = overlap_box(window, other)
        if shared is None:
            continue
        x0, y0, x1, y1 = shared
        part = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
        h, w = layer.labels.shape
        # The layer may be smaller than the window (nodata trimmed): cut what it covers.
        c0, r0 = max(x0, layer.col_off), max(y0, layer.row_off)
        c1, r1 = min(x1, layer.col_off + w), min(y1, layer.row_off + h)
        if c1 > c0 and r1 > r0:
            labels = layer.labels[
                r0 - layer.row_off : r1 - layer.row_off, c0 - layer.col_off : c1 - layer.col_off
            ]
            part[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0] = relabel(labels, lut)
        out[shared] = part
    return out


def _core_data(valid: np.ndarray, window: WindowBox, core: Box) -> shapely.Geometry:
    """The data pixels of ``core`` as one (multi)polygon in raster pixels."""
    col, row = window[0], window[1]
    x0, y0, x1, y1 = core
    part = valid[y0 - row : y1 - row, x0 - col : x1 - col]
    if part.all():
        return _box(core)
    traced = polygonize(part.astype(np.int32), offset=(x0, y0))
    return traced.geometries[0] if len(traced) else shapely.Polygon()


class _Groups:
    """Union-find over piece numbers."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, count: int) -> int:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return start

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def overlap_links(a: TilePieces, b: TilePieces) -> list[tuple[int, int]]:
    """Pairs ``(piece of a, piece of b)`` that are one object: what the two tiles saw of
    them agrees within the windows' overlap (IoU >= :data:`SEAM_IOU`, same concept)."""
    shared = overlap_box(a.window, b.window)
    if shared is None:
        return []
    found = [_layer_overlaps(a.strips.get(shared), b.strips.get(shared))]
    found.append(_outline_overlaps(a.outlines, b.outlines, shared))
    links = []
    for left, right, iou in found:
        for i, j, value in zip(left.tolist(), right.tolist(), iou.tolist(), strict=True):
            if value >= SEAM_IOU and a.pieces.origins[i].prompt == b.pieces.origins[j].prompt:
                links.append((i, j))
    return links


_NO_PAIRS = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def _layer_overlaps(
    la: np.ndarray | None, lb: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, iou)`` for the pieces of two label images of one overlap that share
    pixels, all pairs counted in one pass."""
    if la is None or lb is None:
        return _NO_PAIRS
    size_a = np.bincount(la.ravel())
    size_b = np.bincount(lb.ravel())
    both = (la > 0) & (lb > 0)
    stride = len(size_b)
    codes, inter = np.unique(la[both].astype(np.int64) * stride + lb[both], return_counts=True)
    i, j = codes // stride, codes % stride
    union = size_a[i] + size_b[j] - inter
    return i - 1, j - 1, inter / union


def _outline_overlaps(
    outlines_a: np.ndarray, outlines_b: np.ndarray, shared: Box
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, iou)`` for pieces kept as outlines whose parts in ``shared`` intersect."""

    def in_strip(outlines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(outlines != None)  # noqa: E711 (element-wise)
        if not idx.size:
            return idx, np.empty(0, dtype=object)
        idx = idx[shapely.intersects(outlines[idx], shapely.box(*shared))]
        clipped = _clip(outlines[idx], shared)
        some = ~shapely.is_empty(clipped)
        return idx[some], clipped[some]

    ia, ga = in_strip(outlines_a)
    ib, gb = in_strip(outlines_b)
    if not ia.size or not ib.size:
        return _NO_PAIRS
    left, right = shapely.STRtree(gb).query(ga, predicate="intersects")
    inter = shapely.area(shapely.intersection(ga[left], gb[right]))
    union = shapely.area(ga[left]) + shapely.area(gb[right]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ia[left], ib[right], iou


class Stitcher:
    """Joins tiles' pieces into objects, tile by tile, in the grid's order.

    Args:
        grid: the tiles' grid (None: windows that share no seam, e.g. one window
            per box prompt; their objects are simply gathered).
        threads: threads that union the pieces of objects across seams.
    """

    def __init__(self, grid: TileGrid | None = None, *, threads: int = 1) -> None:
        self.grid = grid
        self.threads = threads
        self._tiles: dict[int, TilePieces] = {}
        self._starts: dict[int, int] = {}
        self._groups = _Groups()
        self._pieces: list[OutlineSet] = []
        self._valid: list[shapely.Geometry] = []

    def add(self, tile: TilePieces) -> None:
        """Take one tile's pieces; tiles of a grid come in index order."""
        start = self._groups.add(len(tile.pieces))
        self._pieces.append(tile.pieces)
        if tile.valid is not None:
            self._valid.append(tile.valid)
        if self.grid is None or tile.index is None:
            return
        index = tile.index
        self._tiles[index] = tile
        self._starts[index] = start
        for other in self.grid.earlier_neighbours(index):
            earlier = self._tiles.get(other)
            if earlier is None:
                continue
            for i, j in overlap_links(tile, earlier):
                self._groups.join(start + i, self._starts[other] + j)
        # Outlines are needed only until a tile's last neighbour is merged.
        for other in [*self.grid.earlier_neighbours(index), index]:
            if other in self._tiles and self.grid.last_neighbour(other) <= index:
                del self._tiles[other]

    def valid_area(self) -> shapely.Geometry | None:
        """The data pixels of the whole raster as one polygon, when tiles traced them."""
        if not self._valid:
            return None
        return shapely.union_all(np.asarray(self._valid, dtype=object))

    def finish(self) -> OutlineSet:
        """One object per group of pieces, numbered 1, 2, ... in order of first piece
        (one window keeps the values it gave its objects)."""
        # The stitcher lets go of its pieces: the objects made of them are the answer.
        parts, self._pieces, self._tiles = self._pieces, [], {}
        if len(parts) == 1:
            return parts[0]
        pieces = OutlineSet.concat(parts)
        del parts
        count = len(pieces)
        roots = np.fromiter((self._groups.find(i) for i in range(count)), np.int64, count)
        return merge_groups(pieces, roots, threads=self.threads)


def merge_groups(pieces: OutlineSet, roots: np.ndarray, *, threads: int = 1) -> OutlineSet:
    """One object per group of ``pieces``, in the order of the groups' first pieces.

    Args:
        pieces: the pieces, in the run's order (tile by tile); their polygons meet
            exactly along core lines.
        roots: per piece, the group it belongs to: the number (or key) of the
            group's first piece, so that groups sort as their first pieces do.
        threads: threads that union the pieces of groups of several.

    A group's polygon is the union of its pieces in their order; its pixel count the
    sum of theirs, its score the best, its origin the first piece's; it is layered
    when all of its pieces are, and seamed when it joins several or one is.
    """
    count = len(pieces)
    if not count:
        return pieces
    groups, firsts, group_of = np.unique(roots, return_index=True, return_inverse=True)
    if len(groups) == count:
        return pieces
    order = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    geometries = np.empty(len(groups), dtype=object)
    single = sizes == 1
    geometries[single] = pieces.geometries[order[bounds[:-1][single]]]
    joined = np.flatnonzero(~single)

    def union(g: int) -> shapely.Geometry:
        return shapely.union_all(pieces.geometries[order[bounds[g] : bounds[g + 1]]])

    # GEOS works without the GIL: the unions share the machine's cores.
    with ThreadPoolExecutor(threads) as pool:
        geometries[joined] = list(pool.map(union, joined.tolist(), chunksize=64))
    scores = np.full(len(groups), np.nan)
    np.fmax.at(scores, group_of, pieces.scores)
    layered = np.ones(len(groups), dtype=bool)
    np.logical_and.at(layered, group_of, pieces.layered)
    seamed = ~single
    np.logical_or.at(seamed, group_of, pieces.seamed)
    return OutlineSet(
        geometries,
        np.bincount(group_of, weights=pieces.pixels).astype(np.int64),
        scores,
        [pieces.origins[i] for i in firsts.tolist()],
        layered,
        seamed,
    )


def node_seams(geometries: np.ndarray, seamed: np.ndarray) -> np.ndarray:
    """Outlines cut along core lines with a vertex at every pixel corner of their
    edges, so that neighbours from different tiles share every vertex of their
    common edges, as reprojection and coverage simplification need (within a tile,
    ``junctions`` tracing does the same with fewer vertices)."""
    out = np.array(geometries, dtype=object)
    if seamed.any():
        out[seamed] = shapely.segmentize(out[seamed], 1.0)
    return out
