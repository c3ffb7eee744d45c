"""Small synthetic scenes for the classic backend, written as real GeoTIFFs with rasterio.

The landscape is :func:`support.rasters.scene` (a lake and a forest on bare soil, as
surface reflectance): the same ground is written as a 16-bit multispectral raster
with band names, as an 8-bit true-colour image, and as an 8-bit NIR/red/green
false-colour composite, so that every reading path sees the same truth masks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rasterio.enums import ColorInterp

from geolibre_ml.segment.chip import ImageChip
from geolibre_ml.segment.raster import RasterSource
from support.rasters import scene, write_raster

ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Reflectance shown as 255 in the 8-bit renderings (a fixed linear stretch).
DISPLAY_WHITE = 0.3

SOIL = {"blue": 0.12, "green": 0.16, "red": 0.22, "nir": 0.30, "swir1": 0.36, "swir2": 0.30}
LAKE = {"blue": 0.08, "green": 0.07, "red": 0.04, "nir": 0.02, "swir1": 0.01, "swir2": 0.01}


def landscape(
    height: int = 240, width: int = 320, *, lake: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Reflectance planes and truth masks; ``lake=False`` turns the lake into soil."""
    planes = scene(height, width, seed=seed)
    if not lake:
        rng = np.random.default_rng(seed + 1)
        water = planes["water"]
        for role in ROLES:
            noise = rng.normal(0, 0.006, int(water.sum())).astype(np.float32)
            planes[role][water] = SOIL[role] + noise
        planes["water"] = np.zeros_like(water)
    return planes


def graded_lake(height: int = 200, width: int = 200) -> dict[str, np.ndarray]:
    """A lake whose water fraction falls from 1 at its centre to 0 at its rim.

    Each pixel mixes lake and soil reflectance linearly, so every index and every
    membership value between the two occurs.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((yy - height / 2) / (height * 0.4), (xx - width / 2) / (width * 0.4))
    fraction = np.clip(1.2 - radius, 0, 1)
    planes = {
        role: (fraction * LAKE[role] + (1 - fraction) * SOIL[role]).astype(np.float32)
        for role in ROLES
    }
    planes["water"] = fraction >= 0.5
    return planes


def _reflectance_uint16(planes: dict[str, np.ndarray], roles: tuple[str, ...]) -> np.ndarray:
    stack = np.stack([planes[r] for r in roles])
    return np.clip(np.round(stack * 10000), 1, 65535).astype(np.uint16)


def _display(plane: np.ndarray) -> np.ndarray:
    return np.clip(np.round(plane / DISPLAY_WHITE * 255), 0, 255).astype(np.uint8)


def write_multispectral(
    path: Path, planes: dict[str, np.ndarray], *, nodata_border: int = 0
) -> Path:
    """Six bands of reflectance x 10000 (uint16), described as blue ... swir2; nodata 0."""
    data = _reflectance_uint16(planes, ROLES)
    if nodata_border:
        data[:, :nodata_border] = 0
        data[:, :, :nodata_border] = 0
    return write_raster(path, data, nodata=0, descriptions=list(ROLES))


def write_true_colour(path: Path, planes: dict[str, np.ndarray]) -> Path:
    """An 8-bit RGB GeoTIFF, as an export from a GIS would be."""
    data = np.stack([_display(planes[r]) for r in ("red", "green", "blue")])
    return write_raster(
        path, data, colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    )


def write_false_colour(path: Path, planes: dict[str, np.ndarray], *, described: bool) -> Path:
    """An 8-bit NIR/red/green composite, with band descriptions or without any."""
    data = np.stack([_display(planes[r]) for r in ("nir", "red", "green")])
    descriptions = ["nir", "red", "green"] if described else None
    return write_raster(path, data, descriptions=descriptions)


def read_chip(path: Path) -> ImageChip:
    """The whole raster as the pipeline would hand it to a backend."""
    with RasterSource(path) as source:
        return source.read_chip()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def is_single_piece(mask: np.ndarray) -> bool:
    """True when the pixels of ``mask`` form one 4-connected piece."""
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    return count == 2
