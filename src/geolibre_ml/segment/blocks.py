"""A run's merge and finishing cut into blocks of tiles, done where the tiles ran.

The :class:`~.seams.Stitcher` joins a run's tiles one after the other in one process.
On a cluster of many workers that process would be the run's serial part
(docs/benchmarks.md), so here the same merge is cut into steps that run next to the
tiles, and one small step in the client:

1. **block** (:func:`stitch_block`, next to the tiles): the tiles of one rectangle of
   the grid (:class:`BlockGrid`) are joined across the seams inside it, with the
   stitcher's own links; each piece gets its *local root*, the key of the first
   piece of its group in the block. A group is *open* when one of its pieces reaches
   into a tile of another block, where it may continue; the others are *closed*:
   whole already. Only tiles with a neighbour outside the block keep what the seams
   need (their strips and whole outlines).
2. **links** (:func:`block_links`): the seams between a block and the blocks after
   it, the same :func:`~.seams.overlap_links` of the same tile pairs, as pairs of
   local roots (a few integers per object that crosses a block's edge). Beside
   them, the block's closed groups are finished (:func:`finish_closed`), while
   other blocks' tiles still run.
3. **groups** (:func:`plan_groups`, in the client): a connected-components pass over
   the local roots alone decides which open groups join across blocks, and which
   block owns each joined group (that of its first piece).
4. **finish** (:func:`finish_open`, next to the block): each block unions the pieces
   of the open groups it owns, those taken from other blocks included, and finishes
   them.

Finishing is :meth:`.finish.Finishing.apply` but for the one step that needs the
whole answer, the label layers' coverage simplification; each finished object
carries its group's key in place of its value. The client puts the parts together
(:func:`join_blocks`): objects in key order, numbered as the stitcher numbers them
(by their first piece, the groups the size filters dropped counted too), then the
coverage simplified. The answer is the stitcher's, feature for feature: the same
links, every group's pieces unioned in the same order (:func:`~.seams.merge_groups`),
the same values.

A piece is named by its *key*, ``tile * KEY_STRIDE + piece``: keys sort as the
stitcher takes pieces (tile by tile, in each tile's order).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from .features import FeatureSet
from .finish import Finishing, simplify_coverage
from .outlines import OutlineSet
from .seams import TilePieces, _Groups, merge_groups, overlap_box, overlap_links
from .tiling import TileGrid, WindowBox

__all__ = [
    "KEY_STRIDE",
    "BlockGrid",
    "BlockLinks",
    "BlockPieces",
    "BlockPlan",
    "FinishedPart",
    "block_links",
    "finish_closed",
    "finish_open",
    "join_blocks",
    "plan_groups",
    "stitch_block",
]

#: A piece's key is ``tile * KEY_STRIDE + its index in the tile``.
KEY_STRIDE = 1 << 32


def _splits(count: int, parts: int) -> list[int]:
    """``parts + 1`` even cut points of ``range(count)``."""
    return [round(count * k / parts) for k in range(parts + 1)]


@dataclass(frozen=True)
class BlockGrid:
    """Rectangles of tiles over a :class:`~.tiling.TileGrid`, row by row.

    Attributes:
        grid: the tiles' grid.
        columns, rows: the first tile column (row) of each block column (row), and the
            end: blocks are ``columns[j]:columns[j+1]`` by ``rows[i]:rows[i+1]`` tiles.
    """

    grid: TileGrid
    columns: tuple[int, ...]
    rows: tuple[int, ...]

    @classmethod
    def build(cls, grid: TileGrid, tiles: int) -> BlockGrid:
        """Blocks of about ``tiles`` tiles each (at least one), as square as the grid
        allows, their sizes spread evenly over it."""
        nrows, ncols = grid.shape
        wide = max(1, min(ncols, round(math.sqrt(max(1, tiles)))))
        tall = max(1, min(nrows, round(max(1, tiles) / wide)))
        bcols, brows = math.ceil(ncols / wide), math.ceil(nrows / tall)
        return cls(grid, tuple(_splits(ncols, bcols)), tuple(_splits(nrows, brows)))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of blocks."""
        return len(self.rows) - 1, len(self.columns) - 1

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def tiles(self, block: int) -> tuple[int, ...]:
        """The tiles of ``block``, in the grid's order."""
        i, j = divmod(block, self.shape[1])
        ncols = len(self.grid.columns)
        return tuple(
            r * ncols + c
            for r in range(self.rows[i], self.rows[i + 1])
            for c in range(self.columns[j], self.columns[j + 1])
        )

    def later_neighbours(self, block: int) -> tuple[int, ...]:
        """Blocks after ``block`` (row by row) that touch it: right, lower left, below,
        lower right. Every touching pair is listed once, by the earlier of the two."""
        nrows, ncols = self.shape
        i, j = divmod(block, ncols)
        out = [block + 1] if j + 1 < ncols else []
        if i + 1 < nrows:
            out.extend((i + 1) * ncols + jj for jj in (j - 1, j, j + 1) if 0 <= jj < ncols)
        return tuple(out)

    def block_of_tiles(self) -> np.ndarray:
        """The block of every tile (int64, by tile index)."""
        nrows, ncols = self.grid.shape
        brow = np.searchsorted(np.asarray(self.rows[1:]), np.arange(nrows), side="right")
        bcol = np.searchsorted(np.asarray(self.columns[1:]), np.arange(ncols), side="right")
        return (brow[:, None] * self.shape[1] + bcol[None, :]).ravel().astype(np.int64)


@dataclass
class BlockPieces:
    """One block's tiles, stitched inside the block (raster pixels).

    Attributes:
        index: the block's place in its :class:`BlockGrid`.
        tiles: its tiles' indices, in the grid's order.
        pieces: every piece of its tiles, tile after tile.
        keys: each piece's key (int64, rising).
        roots: each piece's local root: the key of the first piece of its group in
            the block.
        open: True for the pieces of open groups (see the module's steps).
        edges: the tiles with a neighbour outside the block, by index, with their
            strips and whole outlines for the seams with other blocks.
    """

    index: int
    tiles: tuple[int, ...]
    pieces: OutlineSet
    keys: np.ndarray
    roots: np.ndarray
    open: np.ndarray
    edges: dict[int, TilePieces] = field(default_factory=dict)

    def starts(self) -> dict[int, int]:
        """Where each tile's pieces begin in :attr:`pieces`."""
        tile_of = self.keys // KEY_STRIDE
        firsts = np.searchsorted(tile_of, np.asarray(self.tiles))
        return dict(zip(self.tiles, firsts.tolist(), strict=True))


def stitch_block(index: int, tiles: list[TilePieces], grid: TileGrid) -> BlockPieces:
    """The block ``index`` made of ``tiles`` (its tiles' pieces, in the grid's order),
    joined across the seams between them as the stitcher joins them."""
    members = {t.index: t for t in tiles}
    starts: dict[int, int] = {}
    groups = _Groups()
    keys = []
    for tile in tiles:
        assert tile.index is not None
        starts[tile.index] = groups.add(len(tile.pieces))
        keys.append(tile.index * KEY_STRIDE + np.arange(len(tile.pieces), dtype=np.int64))
        for other in grid.earlier_neighbours(tile.index):
            if other in members:
                for i, j in overlap_links(tile, members[other]):
                    groups.join(starts[tile.index] + i, starts[other] + j)
    key_array = np.concatenate(keys) if keys else np.empty(0, np.int64)
    count = len(key_array)
    roots = key_array[np.fromiter((groups.find(i) for i in range(count)), np.int64, count)]
    windows = grid.windows
    edges = {}
    reaching = np.zeros(count, dtype=bool)
    for i, tile in members.items():
        outside = [windows[n] for n in grid.neighbours(i) if n not in members]
        if outside:
            edges[i] = tile
            reaching[starts[i] + _reaching(tile, outside)] = True
    return BlockPieces(
        index,
        tuple(members),
        OutlineSet.concat([t.pieces for t in tiles]),
        key_array,
        roots,
        np.isin(roots, roots[reaching]),
        edges,
    )


def _reaching(tile: TilePieces, others: list[WindowBox]) -> np.ndarray:
    """The pieces of ``tile`` that reach into the overlap with one of the windows
    ``others``: every piece :func:`~.seams.overlap_links` may link with them."""
    found = []
    kept = np.flatnonzero(tile.outlines != None)  # noqa: E711 (element-wise)
    for other in others:
        shared = overlap_box(tile.window, other)
        if shared is None:
            continue
        strip = tile.strips.get(shared)
        if strip is not None:
            labels = np.unique(strip)
            found.append(labels[labels > 0] - 1)
        if kept.size:
            found.append(kept[shapely.intersects(tile.outlines[kept], shapely.box(*shared))])
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


@dataclass
class BlockLinks:
    """The seams between a block and the blocks after it.

    Attributes:
        index: the block.
        pairs: ``(n, 2)`` int64 local roots of two blocks that are one object.
    """

    index: int
    pairs: np.ndarray


def block_links(block: BlockPieces, later: list[BlockPieces], grid: TileGrid) -> BlockLinks:
    """The links across the seams between ``block`` and the blocks after it that
    touch it (:meth:`BlockGrid.later_neighbours`), as pairs of local roots."""
    others = {i: (b, t) for b in later for i, t in b.edges.items()}
    starts = {b.index: b.starts() for b in (block, *later)}
    pairs = []
    for index, tile in block.edges.items():
        for neighbour in grid.neighbours(index):
            if neighbour not in others:
                continue
            other, theirs = others[neighbour]
            # The stitcher links each tile with those before it: the same call here.
            (a, ta, ra), (b, tb, rb) = sorted(
                [(index, tile, block), (neighbour, theirs, other)], key=lambda x: -x[0]
            )
            for i, j in overlap_links(ta, tb):
                pairs.append(
                    (
                        ra.roots[starts[ra.index][a] + i],
                        rb.roots[starts[rb.index][b] + j],
                    )
                )
    return BlockLinks(block.index, np.asarray(pairs, dtype=np.int64).reshape(-1, 2))


@dataclass
class BlockPlan:
    """What one block does with its open groups: the client's decision from every
    block's links.

    Attributes:
        index: the block.
        dropped: its local roots whose groups another block owns (int64, sorted).
        taken: ``(n, 2)`` int64: local roots of other blocks' groups that join a
            group this block owns, and that group's key (its first piece).
        sources: the blocks whose pieces it takes.
    """

    index: int
    dropped: np.ndarray
    taken: np.ndarray
    sources: tuple[int, ...]


def plan_groups(links: list[BlockLinks], blocks: BlockGrid) -> list[BlockPlan]:
    """Every block's :class:`BlockPlan`, from every block's links (in any order).

    The groups that cross a block's edge are the connected components of the local
    roots' links; each is owned by the block of its smallest key, its first piece.
    """
    block_of = blocks.block_of_tiles()
    pairs = np.concatenate([b.pairs for b in links]) if links else np.empty((0, 2), np.int64)
    nodes, edges = np.unique(pairs, return_inverse=True)
    edges = edges.reshape(-1, 2)
    lost = owners = np.empty(0, np.int64)
    if len(nodes):
        graph = coo_array(
            (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
            shape=(len(nodes), len(nodes)),
        )
        _, component = connected_components(graph, directed=False)
        # Nodes are sorted: a component's first node is its smallest key, the owner.
        _, first = np.unique(component, return_index=True)
        owner = nodes[first][component]
        absorbed = nodes != owner
        lost, owners = nodes[absorbed], owner[absorbed]
    from_block, to_block = block_of[lost // KEY_STRIDE], block_of[owners // KEY_STRIDE]
    plans = []
    for index in range(len(blocks)):
        mine = to_block == index
        plans.append(
            BlockPlan(
                index,
                np.sort(lost[from_block == index]),
                np.column_stack([lost[mine], owners[mine]]),
                tuple(sorted(set(from_block[mine].tolist()))),
            )
        )
    return plans


@dataclass
class FinishedPart:
    """Some of a run's objects, finished (:func:`finish_closed`, :func:`finish_open`).

    Attributes:
        features: their features (``value`` to be set by :func:`join_blocks`).
        objects: the kept objects, each :attr:`~.outlines.OutlineSet.values` its
            group's key until :func:`join_blocks` numbers them.
        groups: the key of every group finished here, those the size filters
            dropped included (they count in the numbering).
    """

    features: FeatureSet
    objects: OutlineSet
    groups: np.ndarray

    def __getstate__(self) -> dict[str, Any]:
        # Polygons travel as WKB: the cheapest form to send and to take in, since the
        # client's process receives the whole answer; join_blocks turns them back into
        # geometries on all of the client's cores.
        features, objects = self.features, self.objects
        shared = features.geometries is objects.geometries
        wkb = _wkb(features.geometries)
        return {
            "features": replace(features, geometries=wkb),
            "objects": replace(objects, geometries=wkb if shared else _wkb(objects.geometries)),
            "groups": self.groups,
        }

    def decode(self) -> None:
        """Turn polygons that came as WKB back into geometries, in place (a client
        does it as the parts arrive, on threads: GEOS works without the GIL)."""
        shared = self.features.geometries is self.objects.geometries
        self.objects.geometries = _geometries(self.objects.geometries)
        if shared:
            self.features.geometries = self.objects.geometries
        else:
            self.features.geometries = _geometries(self.features.geometries)


def _wkb(geometries: np.ndarray) -> np.ndarray:
    """``geometries`` (an object array of geometries, or of WKB already) as WKB."""
    if not len(geometries) or isinstance(geometries[0], bytes):
        return geometries
    return shapely.to_wkb(geometries)


def _geometries(wkb: np.ndarray) -> np.ndarray:
    """``wkb`` (an object array of WKB, or of geometries already) as geometries."""
    if not len(wkb) or not isinstance(wkb[0], bytes):
        return wkb
    return shapely.from_wkb(wkb)


def _finish_groups(
    parts: list[tuple[OutlineSet, np.ndarray, np.ndarray]], finishing: Finishing
) -> FinishedPart:
    """Finish the groups of ``parts`` (pieces, their keys, their groups' keys)."""
    keys = np.concatenate([k for _, k, _ in parts])
    roots = np.concatenate([r for _, _, r in parts])
    # Pieces in key order, as the stitcher holds them: the unions come out the same.
    order = np.argsort(keys, kind="stable")
    pieces = OutlineSet.concat([p for p, _, _ in parts]).take(order)
    objects = merge_groups(pieces, roots[order])
    groups = np.unique(roots)
    objects.values = groups
    features, kept = finishing.apply(objects, coverage=False)
    return FinishedPart(features, kept, groups)


def finish_closed(block: BlockPieces, finishing: Finishing) -> FinishedPart:
    """The block's closed groups, finished (see the module's steps)."""
    closed = ~block.open
    return _finish_groups(
        [(block.pieces.subset(closed), block.keys[closed], block.roots[closed])], finishing
    )


def finish_open(
    block: BlockPieces, plan: BlockPlan, sources: list[BlockPieces], finishing: Finishing
) -> FinishedPart:
    """The open groups ``block`` owns, finished: its own but those
    :attr:`BlockPlan.dropped`, joined by the pieces :attr:`BlockPlan.taken` from
    ``sources`` (the blocks of :attr:`BlockPlan.sources`)."""
    mine = block.open & ~np.isin(block.roots, plan.dropped)
    parts = [(block.pieces.subset(mine), block.keys[mine], block.roots[mine])]
    if len(plan.taken):
        order = np.argsort(plan.taken[:, 0])
        lost, owners = plan.taken[order, 0], plan.taken[order, 1]
        for source in sources:
            take = np.isin(source.roots, lost)
            owner = owners[np.searchsorted(lost, source.roots[take])]
            parts.append((source.pieces.subset(take), source.keys[take], owner))
    return _finish_groups(parts, finishing)


def join_blocks(
    parts: list[FinishedPart], finishing: Finishing, *, threads: int | None = None
) -> tuple[FeatureSet, OutlineSet]:
    """The run's features and kept objects from every :class:`FinishedPart`: in the
    order of their groups' keys, numbered by them among all groups, the label layers
    simplified as one coverage. Polygons that came as WKB are read on ``threads``
    threads (None: one per CPU)."""
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        list(pool.map(FinishedPart.decode, parts))
    groups = np.sort(np.concatenate([p.groups for p in parts]))
    objects = OutlineSet.join([p.objects for p in parts])
    order = np.argsort(objects.values, kind="stable")
    objects = objects.take(order)
    objects.values = np.searchsorted(groups, objects.values) + 1
    if all(p.features.geometries is p.objects.geometries for p in parts):
        geometries = objects.geometries  # one copy of the answer, as a local run keeps
    else:
        geometries = np.concatenate([p.features.geometries for p in parts])[order]
    listed = [props for p in parts for props in p.features.properties]
    properties = [listed[i] for i in order.tolist()]
    for props, value in zip(properties, objects.values.tolist(), strict=True):
        props["value"] = value
    tolerance = finishing.output.simplify_tolerance or 0.0
    geometries = simplify_coverage(geometries, objects.layered, tolerance)
    first = parts[0].features
    return FeatureSet(geometries, properties, first.crs, first.transform_only), objects
