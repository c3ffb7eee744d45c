"""Masks to polygons: GDAL's polygonizer on the raster's exact pixel grid.

GDAL traces the label image in pixel space, where every vertex is an integer
pixel corner; the raster's affine transform is then applied to all vertices at
once, in the same arithmetic as ``transform @ (col, row)``. So a pixel edge lands
exactly on its CRS coordinate (rotated and south-up grids included), and two
objects that share an edge share its vertices bit for bit, which keeps the
polygons a clean coverage for reprojection and simplification.

Straight runs of pixel edges become single segments, holes are kept, objects are
4-connected (pixels touching only at a corner are separate parts), and every
polygon is valid and oriented as RFC 7946 asks (exterior rings counter-clockwise
in the output coordinates).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import chain

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from .checkpoints import checkpoint
from .crs import apply_transform
from .masks import ObjectSet, label_counts, relabel


@dataclass
class Polygons:
    """One (multi)polygon per object that survived the filters.

    Attributes:
        values: label of each object in the mask set (int64), ascending.
        geometries: shapely Polygon (one part) or MultiPolygon (several parts)
            per object, in the coordinates of the transform used (CRS units, or
            pixels without georeferencing).
    """

    values: np.ndarray
    geometries: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def filter_labels(
    labels: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    min_size: int = 0,
    max_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blank invalid pixels and drop objects outside ``[min_size, max_size]`` pixels.

    Sizes count every pixel of a label (all its parts together), after nodata
    pixels are removed.

    Args:
        labels: ``(H, W)`` integer label image; 0 (and any negative value) is
            background.
        valid: ``(H, W)`` bool; False pixels (nodata) never belong to an object.
        min_size: smallest object kept, in pixels.
        max_size: largest object kept, in pixels; None or <= 0 for no limit.

    Returns:
        The filtered label image (int32; the input itself when nothing changes)
        and the pixel count of every label value after filtering (int64, index =
        value; 0 for dropped labels).

    Raises:
        ValueError: for labels beyond the int32 range, or a ``valid`` mask of
            another shape.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, not {labels.ndim}-D")
    if valid is not None and valid.shape != labels.shape:
        raise ValueError(f"valid mask {valid.shape} does not match labels {labels.shape}")
    top = int(labels.max()) if labels.size else 0
    if top > np.iinfo(np.int32).max:
        raise ValueError(f"label {top} exceeds the int32 range GDAL polygonizes")
    out = labels.astype(np.int32, copy=False)
    owned = out is not labels  # whether ``out`` may be changed in place
    if labels.size and int(labels.min()) < 0:
        out = np.maximum(out, 0)
        owned = True
    if valid is not None and not valid.all():
        if owned:
            out[~valid] = 0
        else:
            out = np.where(valid, out, 0).astype(np.int32, copy=False)
            owned = True
    counts = label_counts(out, max(top, 0))
    drop = counts < max(min_size, 1)
    if max_size is not None and max_size > 0:
        drop |= counts > max_size
    drop[0] = False
    if drop[1:].any():
        lut = np.arange(len(counts), dtype=np.int32)
        lut[drop] = 0
        if not owned:
            out = out.copy()
        relabel(out, lut, out=out)
        counts = np.where(drop, 0, counts)
    return out, counts


def polygonize(
    labels: np.ndarray,
    *,
    transform: Affine | None = None,
    every_corner: bool = False,
    junctions: bool = False,
    offset: tuple[int, int] = (0, 0),
) -> Polygons:
    """Turn a label image into one (multi)polygon per label present.

    Args:
        labels: ``(H, W)`` label image, 0 = background (see :func:`filter_labels`),
            values within int32.
        transform: affine transform of that grid (pixel corners to CRS
            coordinates); None or the identity gives pixel coordinates (x right,
            y down, (0, 0) the top-left corner of the top-left pixel).
        every_corner: put a vertex at every pixel corner along the boundaries
            instead of one per straight run. Objects that share an edge then share
            every vertex on it, as coverage operations (coverage simplification)
            require; a straight run of one object's boundary may otherwise border
            several neighbours whose corners it lacks.
        junctions: also put a vertex where three or more labels (background
            included) meet, so that neighbours share every vertex of their common
            edges with far fewer vertices than ``every_corner``: enough for
            reprojection (each shared edge then bends the same way on both sides)
            and for coverage simplification.
        offset: ``(col, row)`` of ``labels[0, 0]`` on the grid of ``transform``, in
            whole pixels: added to the integer pixel corners before the transform,
            so a crop's vertices are those of the same corners on the full grid.

    Returns:
        The polygons, ordered by label value.
    """
    grid = np.ascontiguousarray(labels, dtype=np.int32)
    chunks: list[np.ndarray] = []
    ring_sizes: list[int] = []
    rings_per_part: list[int] = []
    part_values: list[int] = []
    # GDAL traces in pixel space (exact integer corners). Each part's coordinates go
    # straight into a flat array, so that no Python coordinate lists pile up and
    # shapely builds every geometry in a few bulk calls.
    with warnings.catch_warnings():
        # Pixel space is what is asked for here: the identity transform is no accident.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for geojson, value in rasterio.features.shapes(grid, mask=grid > 0, connectivity=4):
            part = geojson["coordinates"]
            sizes = [len(ring) for ring in part]
            chunks.append(np.fromiter(chain.from_iterable(chain.from_iterable(part)), np.float64))
            ring_sizes.extend(sizes)
            rings_per_part.append(len(part))
            part_values.append(int(value))
    if not part_values:
        return Polygons(np.empty(0, dtype=np.int64), np.empty(0, dtype=object))

    xy = np.concatenate(chunks).reshape(-1, 2)
    del chunks
    if every_corner:
        xy, ring_sizes, _ = _every_corner(xy, np.asarray(ring_sizes, dtype=np.int64))
    elif junctions:
        xy, ring_sizes = _add_junctions(xy, np.asarray(ring_sizes, dtype=np.int64), grid)
    if offset != (0, 0):
        xy += np.asarray(offset, dtype=np.float64)
    if transform is not None and not transform.is_identity:
        x, y = apply_transform(transform, xy[:, 0], xy[:, 1])
        xy = np.column_stack([x, y])
    ring_ids = np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    linear_rings = shapely.linearrings(xy, indices=ring_ids)
    part_ids = np.repeat(np.arange(len(rings_per_part)), rings_per_part)
    parts = shapely.polygons(linear_rings, indices=part_ids)
    # Exterior rings counter-clockwise, holes clockwise, whatever the sign of the
    # transform's determinant (a north-up grid flips the orientation of pixel space).
    parts = shapely.orient_polygons(parts, exterior_cw=False)

    part_values_arr = np.asarray(part_values, dtype=np.int64)
    order = np.argsort(part_values_arr, kind="stable")
    sorted_values = part_values_arr[order]
    values, starts, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    geometries = np.empty(len(values), dtype=object)
    single = counts == 1
    geometries[single] = parts[order[starts[single]]]
    if not single.all():
        multi_part = np.repeat(~single, counts)
        multi_counts = counts[~single]
        object_ids = np.repeat(np.arange(len(multi_counts)), multi_counts)
        geometries[~single] = shapely.multipolygons(parts[order[multi_part]], indices=object_ids)
    return Polygons(values=values, geometries=geometries)


def junction_corners(labels: np.ndarray) -> np.ndarray:
    """Pixel corners where three or more labels meet, as a bool ``(H + 1, W + 1)`` grid.

    Corner ``[r, c]`` is the top-left corner of pixel ``(row r, col c)``; the area
    outside the image counts as one more label. Where only two labels meet at a
    corner, both boundaries turn there (or neither does), so both rings already
    have the vertex; at a junction one boundary may run straight past it.
    """
    padded = np.pad(labels, 1)
    a, b = padded[:-1, :-1], padded[:-1, 1:]
    c, d = padded[1:, :-1], padded[1:, 1:]
    distinct = (b != a).astype(np.uint8)
    distinct += (c != a) & (c != b)
    distinct += (d != a) & (d != b) & (d != c)
    return distinct >= 2  # two values besides the first: three labels


def _add_junctions(
    xy: np.ndarray, ring_sizes: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Insert a vertex wherever a pixel-space ring passes a junction corner (see
    :func:`junction_corners`) without one."""
    dense, dense_sizes, original = _every_corner(xy, ring_sizes)
    corners = junction_corners(labels)
    cols = dense[:, 0].astype(np.int64)
    rows = dense[:, 1].astype(np.int64)
    keep = original | corners[rows, cols]
    ring_ids = np.repeat(np.arange(len(dense_sizes)), dense_sizes)
    return dense[keep], np.bincount(ring_ids[keep], minlength=len(dense_sizes)).astype(np.int64)


def _every_corner(
    xy: np.ndarray, ring_sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the axis-aligned, integer-length edges of closed pixel-space rings
    into unit steps, exactly (integer arithmetic, unlike a generic segmentize).

    Returns the new vertices, the new ring sizes, and which new vertices were
    vertices of the input rings."""
    ends = np.cumsum(ring_sizes)
    last = np.zeros(len(xy), dtype=bool)
    last[ends - 1] = True
    step = np.diff(xy, axis=0)
    step = step[~last[:-1]]  # no step from one ring's closing vertex to the next ring
    starts = xy[~last]
    lengths = np.abs(step).sum(axis=1).astype(np.int64)
    unit = step / np.maximum(lengths, 1)[:, None]
    # Each edge contributes its start and every corner before its end; the closing
    # vertex of each ring is appended again.
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    points = np.repeat(starts, lengths, axis=0) + np.repeat(unit, lengths, axis=0) * offset[:, None]
    edges_per_ring = ring_sizes - 1
    edge_ring = np.repeat(np.arange(len(ring_sizes)), edges_per_ring)
    new_sizes = np.bincount(edge_ring, lengths, minlength=len(ring_sizes)).astype(np.int64) + 1
    closing = np.cumsum(new_sizes) - 1  # index of each ring's closing vertex in the output
    out = np.empty((int(new_sizes.sum()), 2), dtype=np.float64)
    keep = np.ones(len(out), dtype=bool)
    keep[closing] = False
    out[keep] = points
    out[closing] = xy[ends - 1]
    original = np.ones(len(out), dtype=bool)
    original[keep] = offset == 0
    return out, new_sizes, original


def polygonize_objects(
    objects: ObjectSet, *, transform: Affine | None = None, junctions: bool = False
) -> Polygons:
    """One (multi)polygon per numbered object (its ``value``), on the raster's grid.

    Objects that share a label layer are traced together, in one pass over the
    layer, so neighbours share their edges exactly (a coverage); each cropped object
    is traced on its own box. Both go through the same integer pixel corners and
    the same transform as :func:`polygonize` on the whole raster.

    Args:
        objects: numbered objects (see :meth:`ObjectSet.numbered`), raster pixels.
        transform: the raster's transform (None: pixel coordinates).
        junctions: see :func:`polygonize`; applies within each layer.

    Returns:
        The polygons, ordered by value.
    """
    values: list[np.ndarray] = []
    geometries: list[np.ndarray] = []
    for layer in objects.layers:
        members = [o for o in objects.objects if o.layer is layer]
        if not members:
            continue
        lut = np.zeros(int(layer.labels.max()) + 1, dtype=np.int32)
        for o in members:
            lut[o.label] = o.value
        identity = bool((lut == np.arange(len(lut))).all())
        labels = layer.labels if identity else relabel(layer.labels, lut)
        checkpoint()
        found = polygonize(
            labels, transform=transform, junctions=junctions, offset=(layer.col_off, layer.row_off)
        )
        values.append(found.values)
        geometries.append(found.geometries)
    for o in objects.objects:
        if o.mask is None:
            continue
        checkpoint()
        found = polygonize(
            o.mask.astype(np.int32) * np.int32(o.value),
            transform=transform,
            junctions=junctions,
            offset=(o.box[0], o.box[1]),
        )
        values.append(found.values)
        geometries.append(found.geometries)
    if not values:
        return Polygons(np.empty(0, dtype=np.int64), np.empty(0, dtype=object))
    all_values = np.concatenate(values)
    all_geometries = np.concatenate(geometries)
    order = np.argsort(all_values, kind="stable")
    return Polygons(all_values[order], all_geometries[order])


def to_grid(geometries: np.ndarray, transform: Affine | None) -> np.ndarray:
    """Polygons traced in raster pixels, moved onto the raster's grid by ``transform``
    (the arithmetic of :func:`polygonize`'s own), oriented as RFC 7946 asks."""
    out = np.asarray(geometries, dtype=object)
    if transform is None or transform.is_identity or not len(out):
        return out

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = apply_transform(transform, xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.orient_polygons(shapely.transform(out, move), exterior_cw=False)


def simplify(geometries: np.ndarray, tolerance: float) -> np.ndarray:
    """Simplify polygons that tile the plane without opening gaps between neighbours.

    ``tolerance`` is in the units of the geometries' CRS. Shared edges are
    simplified once (GEOS coverage simplification), so adjacent objects stay
    adjacent and never overlap. The input must be a clean coverage: neighbours
    share every vertex of their common edges (see ``polygonize(junctions=True)``).
    """
    if tolerance <= 0 or not len(geometries):
        return geometries
    out = shapely.coverage_simplify(np.asarray(geometries, dtype=object), tolerance)
    invalid = ~shapely.is_valid(out)
    if invalid.any():
        out[invalid] = shapely.make_valid(out[invalid], method="structure", keep_collapsed=False)
    return out
