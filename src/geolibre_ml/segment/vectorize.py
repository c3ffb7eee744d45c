"""Masks to polygons: GDAL's polygonizer on the raster's exact pixel grid.

Polygon vertices are pixel corners mapped through the chip's affine transform, so
a pixel edge lands exactly on its CRS coordinate (rotated and south-up grids
included). Straight runs of pixel edges become single segments, holes are kept,
and every polygon is valid and oriented as RFC 7946 asks (exterior rings
counter-clockwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine


@dataclass
class Polygons:
    """One (multi)polygon per object that survived the filters.

    Attributes:
        values: label of each object in the mask set (int64).
        geometries: shapely Polygon or MultiPolygon per object, in the coordinates
            of the transform used (CRS units, or pixels without georeferencing).
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

    Args:
        labels: ``(H, W)`` integer label image, 0 = background.
        valid: ``(H, W)`` bool; False pixels (nodata) never belong to an object.
        min_size: smallest object kept, in pixels.
        max_size: largest object kept, in pixels; None or <= 0 for no limit.

    Returns:
        The filtered label image (int32) and the pixel count of every label.
    """
    out = np.asarray(labels, dtype=np.int32)
    if valid is not None and not valid.all():
        out = np.where(valid, out, 0).astype(np.int32, copy=False)
    counts = np.bincount(out.ravel(), minlength=1)
    drop = counts < max(min_size, 1)
    if max_size is not None and max_size > 0:
        drop |= counts > max_size
    drop[0] = False
    if drop[1:].any():
        lut = np.arange(len(counts), dtype=np.int32)
        lut[drop] = 0
        out = lut[out]
        counts = np.where(drop, 0, counts)
    return out, counts


def polygonize(labels: np.ndarray, *, transform: Affine) -> Polygons:
    """Turn a label image into one (multi)polygon per label present.

    Args:
        labels: ``(H, W)`` int32 label image, 0 = background (see :func:`filter_labels`).
        transform: affine transform of that grid (pixel edges to CRS coordinates).

    Returns:
        The polygons, ordered by label value.
    """
    parts: dict[int, list[shapely.Polygon]] = {}
    for geojson, value in rasterio.features.shapes(
        labels, mask=labels > 0, transform=transform, connectivity=4
    ):
        rings = geojson["coordinates"]
        parts.setdefault(int(value), []).append(shapely.Polygon(rings[0], rings[1:]))
    values = np.array(sorted(parts), dtype=np.int64)
    geometries = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        polys = parts[int(value)]
        geometries[i] = polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
    if len(values):
        geometries = shapely.orient_polygons(geometries, exterior_cw=False)
    return Polygons(values=values, geometries=geometries)
