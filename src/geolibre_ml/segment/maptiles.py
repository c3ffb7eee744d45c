"""Map tiles and previews of a raster as the model sees it (rio-tiler does the reading).

A web map shows the uploaded image under the results, so it must show what the model
was given: the same display bands, the same whole-raster stretch (:class:`.ReadPlan`),
and no pixel where the model sees none (nodata, masks and transparent palette entries
become transparent). rio-tiler reads and resamples the tile (web-mercator, through
GDAL's warper and overviews); this module only turns the raw values into 8-bit RGBA
with the plan, as :meth:`.RasterSource.read_chip` does for the model, and encodes PNG.
"""

from __future__ import annotations

import morecantile
import numpy as np
from morecantile.models import BoundingBox
from rasterio.warp import transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from . import bands as band_roles
from .raster import RasterSource
from .readplan import ReadPlan

#: Side of a map tile, in pixels (the web's usual 256).
TILE_SIZE = 256

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")

#: Deepest zoom served: ~0.15 m per pixel at the equator, far finer than any raster.
MAX_ZOOM = 30


def check_tile(z: int, x: int, y: int) -> str | None:
    """Why ``z/x/y`` is not a web-mercator tile, in words; None when it is one."""
    if not 0 <= z <= MAX_ZOOM:
        return f"Zoom {z} is out of range: use 0 to {MAX_ZOOM}."
    side = 1 << z
    if not (0 <= x < side and 0 <= y < side):
        return f"Tile {z}/{x}/{y} does not exist: at zoom {z}, x and y run from 0 to {side - 1}."
    return None


def render_tile(src: RasterSource, z: int, x: int, y: int) -> bytes:
    """One 256 x 256 web-mercator (EPSG:3857) tile as an RGBA PNG.

    Args:
        src: the opened raster (it must have a CRS); its plan gives bands and stretch.
        z, x, y: the tile's zoom and column/row in the XYZ scheme (row 0 at the north).

    Returns:
        PNG bytes; a tile outside the raster is wholly transparent.
    """
    plan = src.plan
    options = {"indexes": _display_bands(plan), **_resampling(plan)}
    with _reader(src) as reader:
        tile = WEB_MERCATOR.xy_bounds(x, y, z)
        part = _covered(tile, _mercator_bounds(reader))
        if part is None:
            return _transparent(TILE_SIZE, TILE_SIZE)
        if part == (0, 0, TILE_SIZE, TILE_SIZE):
            try:
                image = reader.tile(x, y, z, tilesize=TILE_SIZE, **options)
            except TileOutsideBounds:
                return _transparent(TILE_SIZE, TILE_SIZE)
            return _render(reader, plan, image)
        # A tile the raster covers in part: rio-tiler would warp the whole tile's extent
        # at the raster's own resolution (gigabytes at low zooms), so only the raster's
        # own extent is read, at the tile's resolution, and placed in the tile (to within
        # half a tile pixel).
        west, south, east, north = _mercator_bounds(reader)
        bbox = (
            max(west, tile.left),
            max(south, tile.bottom),
            min(east, tile.right),
            min(north, tile.top),
        )
        left, top, right, bottom = part
        image = reader.part(
            bbox,
            dst_crs=WEB_MERCATOR.crs,
            bounds_crs=WEB_MERCATOR.crs,
            width=right - left,
            height=bottom - top,
            **options,
        )
        return _render(reader, plan, image, place=(left, top))


def render_preview(src: RasterSource, max_size: int) -> bytes:
    """The whole raster, its longest side at most ``max_size`` pixels, as an RGBA PNG.

    Pixel space is kept (no reprojection): row 0 is the raster's first row (after a
    JPEG's EXIF turn, as the model reads it), so a picture without georeferencing can be
    laid under answers given in pixel coordinates.
    """
    plan = src.plan
    with _reader(src) as reader:
        image = reader.preview(indexes=_display_bands(plan), max_size=max_size, **_resampling(plan))
        return _render(reader, plan, image)


def _reader(src: RasterSource) -> Reader:
    # The dataset the model reads (same driver, same EXIF orientation), not a second open.
    return Reader(str(src.path), dataset=src.dataset)


def _mercator_bounds(reader: Reader) -> tuple[float, float, float, float]:
    """The raster's bounds in web-mercator metres (west, south, east, north)."""
    return transform_bounds(reader.crs, WEB_MERCATOR.crs, *reader.bounds, densify_pts=21)


def _covered(
    tile: BoundingBox, data: tuple[float, float, float, float]
) -> tuple[int, int, int, int] | None:
    """The tile pixels ``(left, top, right, bottom)`` that ``data``'s bounds cover (at least
    one, however small the raster), or None when they do not meet the tile."""
    step = (tile.right - tile.left) / TILE_SIZE
    west, south, east, north = data
    if east <= tile.left or west >= tile.right or north <= tile.bottom or south >= tile.top:
        return None
    left = max(0, round((west - tile.left) / step))
    right = min(TILE_SIZE, max(left + 1, round((east - tile.left) / step)))
    top = max(0, round((tile.top - north) / step))
    bottom = min(TILE_SIZE, max(top + 1, round((tile.top - south) / step)))
    return left, top, right, bottom


def _display_bands(plan: ReadPlan) -> tuple[int, ...]:
    # A palette raster shows one band through its colour table.
    return (plan.rgb_bands[0],) if plan.palette else tuple(plan.rgb_bands)


def _resampling(plan: ReadPlan) -> dict[str, str]:
    # Palette indexes are categories: averaging two of them gives a third colour.
    method = "nearest" if plan.palette else "bilinear"
    return {"resampling_method": method, "reproject_method": method}


def _render(
    reader: Reader, plan: ReadPlan, image: ImageData, place: tuple[int, int] | None = None
) -> bytes:
    """``image``'s raw values as RGBA PNG bytes, stretched with ``plan``; with ``place``,
    pasted at that ``(column, row)`` of an otherwise transparent tile."""
    data = np.ma.getdata(image.array)
    valid = image.mask > 0
    if plan.palette:
        band = plan.rgb_bands[0]
        table, opaque = band_roles.palette_tables(reader.dataset, band)
        index = np.clip(data[0], 0, len(table) - 1).astype(np.intp)
        rgb = np.moveaxis(table[index], -1, 0)
        valid &= opaque[index]
    else:
        rgb = np.stack([plan.stretch.to_uint8(b, data[i]) for i, b in enumerate(plan.rgb_bands)])
        for plane in data:
            if plane.dtype.kind == "f":
                valid &= np.isfinite(plane)
    rgb[:, ~valid] = 0
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    if place is not None:
        col, row = place
        height, width = alpha.shape
        tile_rgb = np.zeros((3, TILE_SIZE, TILE_SIZE), dtype=np.uint8)
        tile_alpha = np.zeros((TILE_SIZE, TILE_SIZE), dtype=np.uint8)
        tile_rgb[:, row : row + height, col : col + width] = rgb
        tile_alpha[row : row + height, col : col + width] = alpha
        rgb, alpha = tile_rgb, tile_alpha
    return ImageData(rgb, alpha_mask=alpha).render(img_format="PNG")


def _transparent(width: int, height: int) -> bytes:
    empty = np.zeros((3, height, width), dtype=np.uint8)
    return ImageData(empty, alpha_mask=np.zeros((height, width), dtype=np.uint8)).render(
        img_format="PNG"
    )
