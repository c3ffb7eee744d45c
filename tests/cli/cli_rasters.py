"""Small rasters for the ``geolibre-ml segment`` tests (a lake and forest scene)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from support.rasters import UTM_TRANSFORM, scene, write_raster

HEIGHT, WIDTH = 120, 160


def write_scene(path: Path, seed: int = 0) -> Path:
    """A 4-band uint16 reflectance GeoTIFF (UTM 33N, 10 m pixels) with a lake and a forest."""
    planes = scene(HEIGHT, WIDTH, seed=seed)
    data = np.stack([planes[b] for b in ("red", "green", "blue", "nir")])
    return write_raster(
        path,
        (data * 10000).astype(np.uint16),
        descriptions=["red", "green", "blue", "nir"],
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined],
    )


def write_png(path: Path) -> Path:
    """The same landscape as an 8-bit RGB PNG without georeferencing."""
    planes = scene(HEIGHT, WIDTH)
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # no georeferencing on purpose
        return write_raster(
            path,
            np.clip(rgb * 800, 0, 255).astype(np.uint8),
            crs=None,
            transform=None,
            driver="PNG",
        )


def lake_centre_map() -> tuple[float, float]:
    """Map coordinates (EPSG:32633) of the lake's centre in :func:`write_scene`."""
    return UTM_TRANSFORM @ (WIDTH * 0.3, HEIGHT * 0.35)
