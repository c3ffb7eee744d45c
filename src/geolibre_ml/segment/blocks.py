"""A run's merge and finishing cut into blocks of tiles, done where the tiles ran.

The :class:`~.seams.Stitcher` joins a run's tiles one after the other in one process.
On a cluster of many workers that process would be the run's serial part
(docs/benchmarks.md), so here the same merge is cut into four steps, three of them
on the workers and one small one in the client:

1. **block** (:func:`stitch_block`, next to the tiles): the tiles of one rectangle of
   the grid (:class:`BlockGrid`) are joined across the seams inside it, with the
   stitcher's own links; each piece gets its *local root*, the key of the first
   piece of its group in the block. Only tiles with a neighbour outside the block
   keep what the seams need (their strips and whole outlines).
2. **links** (:func:`block_links`): the seams between a block and the blocks after
   it, the same :func:`~.seams.overlap_links` of the same tile pairs. What comes
   back is small: pairs of local roots, and how many local groups start in each tile.
3. **groups** (:func:`plan_groups`, in the client): a connected-components pass over
   the local roots alone decides which groups join across blocks, which block owns
   each joined group (that of its first piece), and the first value of each tile:
   a few integers per object that crosses a block's edge.
4. **finish** (:func:`finish_block`, next to the block): each block unions the pieces
   of the groups it owns, those taken from other blocks included, numbers them as
   the whole run would, and finishes them (:meth:`.finish.Finishing.apply`, except
   the one step that needs the whole answer).

The client then puts the blocks' features in order (:func:`join_blocks`). The answer
is the stitcher's, feature for feature: the same links, every group's pieces unioned
in the same order (:func:`~.seams.merge_groups`), the same values.

A piece is named by its *key*, ``tile * KEY_STRIDE + piece``: keys sort as the
stitcher takes pieces (tile by tile, in each tile's order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from .features import FeatureSet
from .finish import Finishing, simplify_coverage
from .outlines import OutlineSet
from .seams import TilePieces, _Groups, merge_groups, overlap_links
from .tiling import TileGrid

__all__ = [
    "KEY_STRIDE",
    "BlockGrid",
    "BlockLinks",
    "BlockPieces",
    "BlockPlan",
    "block_links",
    "finish_block",
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
        edges: the tiles with a neighbour outside the block, by index, with their
            strips and whole outlines for the seams with other blocks.
        reused: tiles whose prepared state came from a cache.
    """

    index: int
    tiles: tuple[int, ...]
    pieces: OutlineSet
    keys: np.ndarray
    roots: np.ndarray
    edges: dict[int, TilePieces] = field(default_factory=dict)
    reused: int = 0

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
    local = np.fromiter((groups.find(i) for i in range(count)), np.int64, count)
    edges = {i: t for i, t in members.items() if any(n not in members for n in grid.neighbours(i))}
    return BlockPieces(
        index,
        tuple(members),
        OutlineSet.concat([t.pieces for t in tiles]),
        key_array,
        key_array[local] if count else key_array,
        edges,
        sum(t.reused for t in tiles),
    )


@dataclass
class BlockLinks:
    """What the client needs of one block to join groups across blocks.

    Attributes:
        index: the block.
        pairs: ``(n, 2)`` int64 local roots of two blocks that are one object.
        tiles: the block's tiles.
        groups: how many of the block's local groups start in each of them.
        reused: as :attr:`BlockPieces.reused`.
    """

    index: int
    pairs: np.ndarray
    tiles: np.ndarray
    groups: np.ndarray
    reused: int = 0


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
    tiles = np.asarray(block.tiles, dtype=np.int64)
    firsts = np.unique(block.roots) // KEY_STRIDE
    counts = np.bincount(np.searchsorted(tiles, firsts), minlength=len(tiles))
    return BlockLinks(
        block.index,
        np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        tiles,
        counts.astype(np.int64),
        block.reused,
    )


@dataclass
class BlockPlan:
    """What one block does to finish: the client's decision from every block's links.

    Attributes:
        index: the block.
        dropped: its local roots whose groups another block owns (int64, sorted).
        taken: ``(n, 2)`` int64: local roots of other blocks' groups that join a
            group this block owns, and that group's key (its first piece).
        sources: the blocks whose pieces it takes.
        first_values: per tile of the block, the value of the first object that
            starts there (the objects before it, plus one).
    """

    index: int
    dropped: np.ndarray
    taken: np.ndarray
    sources: tuple[int, ...]
    first_values: np.ndarray


def plan_groups(links: list[BlockLinks], blocks: BlockGrid) -> list[BlockPlan]:
    """Every block's :class:`BlockPlan`, from every block's links (in any order).

    The groups that cross a block's edge are the connected components of the local
    roots' links; each is owned by the block of its smallest key, its first piece.
    """
    block_of = blocks.block_of_tiles()
    pairs = np.concatenate([b.pairs for b in links]) if links else np.empty((0, 2), np.int64)
    counts = np.zeros(len(blocks.grid), dtype=np.int64)
    for b in links:
        counts[b.tiles] += b.groups
    nodes, edges = np.unique(pairs, return_inverse=True)
    edges = edges.reshape(-1, 2)
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
    np.subtract.at(counts, lost // KEY_STRIDE, 1)
    starts = np.concatenate([[1], 1 + np.cumsum(counts)[:-1]])
    from_block, to_block = block_of[lost // KEY_STRIDE], block_of[owners // KEY_STRIDE]
    plans = []
    for index in range(len(blocks)):
        mine = to_block == index
        sources = tuple(sorted(set(from_block[mine].tolist())))
        plans.append(
            BlockPlan(
                index,
                np.sort(lost[from_block == index]),
                np.column_stack([lost[mine], owners[mine]]),
                sources,
                starts[list(blocks.tiles(index))],
            )
        )
    return plans


def finish_block(
    block: BlockPieces,
    plan: BlockPlan,
    sources: list[BlockPieces],
    finishing: Finishing,
    *,
    threads: int = 1,
) -> tuple[FeatureSet, OutlineSet]:
    """The features of the groups ``block`` owns, numbered as the whole run numbers
    them: its own groups but those :attr:`BlockPlan.dropped`, joined by the pieces
    :attr:`BlockPlan.taken` from ``sources`` (the blocks of :attr:`BlockPlan.sources`),
    finished but for the label layers' coverage simplification
    (:func:`join_blocks` does it over the whole answer)."""
    keep = ~np.isin(block.roots, plan.dropped)
    parts = [block.pieces.subset(keep)]
    keys, roots = [block.keys[keep]], [block.roots[keep]]
    if len(plan.taken):
        order = np.argsort(plan.taken[:, 0])
        lost, owners = plan.taken[order, 0], plan.taken[order, 1]
        for source in sources:
            take = np.isin(source.roots, lost)
            parts.append(source.pieces.subset(take))
            keys.append(source.keys[take])
            roots.append(owners[np.searchsorted(lost, source.roots[take])])
    key_array, root_array = np.concatenate(keys), np.concatenate(roots)
    # Pieces in key order, as the stitcher holds them: the unions come out the same.
    order = np.argsort(key_array, kind="stable")
    pieces = OutlineSet.concat(parts).take(order)
    objects = merge_groups(pieces, root_array[order], threads=threads)
    group_keys = np.unique(root_array)
    tile_of = group_keys // KEY_STRIDE
    tiles = np.asarray(block.tiles, dtype=np.int64)
    place = np.searchsorted(tiles, tile_of)
    rank = np.arange(len(group_keys)) - np.searchsorted(tile_of, tile_of)
    objects.values = plan.first_values[place] + rank if len(group_keys) else objects.values
    return finishing.apply(objects, coverage=False)


def join_blocks(
    parts: list[tuple[FeatureSet, OutlineSet]], finishing: Finishing
) -> tuple[FeatureSet, OutlineSet]:
    """The run's features and kept objects from every block's :func:`finish_block`, in
    value order, the label layers simplified as one coverage."""
    features = [f for f, _ in parts]
    kept = [k for _, k in parts]
    objects = OutlineSet.join(kept)
    order = np.argsort(objects.values, kind="stable")
    objects = objects.take(order)
    if all(f.geometries is k.geometries for f, k in parts):
        geometries = objects.geometries  # one copy of the answer, as a local run keeps
    else:
        geometries = np.concatenate([f.geometries for f in features])[order]
    properties = [p for f in features for p in f.properties]
    tolerance = finishing.output.simplify_tolerance or 0.0
    geometries = simplify_coverage(geometries, objects.layered, tolerance)
    first = features[0]
    return (
        FeatureSet(
            geometries,
            [properties[i] for i in order.tolist()],
            first.crs,
            first.transform_only,
        ),
        objects,
    )
