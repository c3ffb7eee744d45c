"""Writing small real rasters for tests, with rasterio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

#: A UTM zone 33N grid with 10 m pixels whose corner coordinates are exact in binary.
UTM_CRS = "EPSG:32633"
UTM_TRANSFORM = from_origin(500000.0, 4000000.0, 10.0, 10.0)


def write_raster(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: Any = UTM_CRS,
    transform: Affine | None = UTM_TRANSFORM,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    colorinterp: list[ColorInterp] | None = None,
    driver: str = "GTiff",
    tags: dict[str, str] | None = None,
    band_tags: dict[int, dict[str, Any]] | None = None,
    **profile: Any,
) -> Path:
    """Write ``data`` (``(bands, H, W)`` or ``(H, W)``) to ``path`` and return the path.

    ``crs=None`` and ``transform=None`` write a raster without georeferencing.
    ``band_tags`` maps a 1-based band to ``{"ns": namespace, **tags}``.
    """
    path = Path(path)
    array = data[np.newaxis] if data.ndim == 2 else data
    kwargs: dict[str, Any] = {
        "driver": driver,
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        **profile,
    }
    if crs is not None:
        kwargs["crs"] = crs
    if transform is not None:
        kwargs["transform"] = transform
    if nodata is not None:
        kwargs["nodata"] = nodata
    with rasterio.open(path, "w", **kwargs) as dst:
        dst.write(array)
        if descriptions:
            for band, text in enumerate(descriptions, start=1):
                dst.set_band_description(band, text)
        if colorinterp:
            dst.colorinterp = colorinterp
        if tags:
            dst.update_tags(**tags)
        for band, items in (band_tags or {}).items():
            items = dict(items)
            ns = items.pop("ns", None)
            dst.update_tags(band, ns=ns, **items) if ns else dst.update_tags(band, **items)
    return path


def scene(height: int = 240, width: int = 320, seed: int = 0) -> dict[str, np.ndarray]:
    """A small synthetic landscape as float reflectance planes (0-1) and truth masks.

    Returns a dict with ``blue``, ``green``, ``red``, ``nir``, ``swir1``,
    ``swir2`` planes (float32) and boolean ``water`` and ``vegetation`` masks: a
    lake (dark, blue-green, absorbing infrared) and a forest (green, bright in
    near-infrared) on bare soil, with mild noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    water = ((yy - height * 0.35) / (height * 0.2)) ** 2 + (
        (xx - width * 0.3) / (width * 0.18)
    ) ** 2 < 1
    vegetation = (yy > height * 0.55) & (xx > width * 0.5) & (xx < width * 0.9) & ~water
    soil = {"blue": 0.12, "green": 0.16, "red": 0.22, "nir": 0.30, "swir1": 0.36, "swir2": 0.30}
    lake = {"blue": 0.08, "green": 0.07, "red": 0.04, "nir": 0.02, "swir1": 0.01, "swir2": 0.01}
    forest = {"blue": 0.03, "green": 0.08, "red": 0.04, "nir": 0.40, "swir1": 0.18, "swir2": 0.08}
    planes = {}
    for role in soil:
        plane = np.full((height, width), soil[role], dtype=np.float32)
        plane[water] = lake[role]
        plane[vegetation] = forest[role]
        plane += rng.normal(0, 0.006, plane.shape).astype(np.float32)
        planes[role] = np.clip(plane, 0.0, 1.0)
    return {**planes, "water": water, "vegetation": vegetation}


def write_rgb_scene(path: str | Path, size: int, seed: int = 3) -> Path:
    """An RGB uint8 GeoTIFF of :func:`scene`, ``size`` x ``size`` pixels (deflate): large
    sizes give runs long enough to watch (classic automatic: about 2 s at 2048 px on a
    2-core machine) and, once tiled, many tiles."""
    planes = scene(size, size, seed=seed)
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    rgb8 = np.clip(rgb / 0.45 * 255, 0, 255).astype("uint8")
    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return write_raster(path, rgb8, colorinterp=interp, compress="deflate")


def write_blobs(path: Path, size: int = 1000, seed: int = 5, count: int = 40) -> Path:
    """An RGB uint8 GeoTIFF of ``count`` overlapping lakes and woods (ellipses 50 to
    220 px across) on bare soil, ``size`` x ``size`` pixels: many objects cross seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    soil, lake, wood = (0.22, 0.16, 0.12), (0.04, 0.07, 0.08), (0.04, 0.08, 0.03)
    rgb = np.empty((3, size, size), np.float32)
    rgb[:] = np.asarray(soil)[:, None, None]
    for k in range(count):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(25, 110, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        rgb[:, inside] = np.asarray(lake if k % 2 else wood)[:, None]
    rgb += rng.normal(0, 0.006, rgb.shape).astype(np.float32)
    rgb8 = np.clip(rgb / 0.45 * 255, 0, 255).astype("uint8")
    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return write_raster(path, rgb8, colorinterp=interp)
