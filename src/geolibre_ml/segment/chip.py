"""An image chip: the pixels of one raster window, in the form a backend consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

# Spectral roles a backend may ask for. Values are physical (GDAL scale and offset
# applied) as float32; NaN where the pixel is not valid.
SPECTRAL_ROLES: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")


@dataclass
class ImageChip:
    """The pixels of one window of a raster.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 display image (the bands shown as red, green and
            blue, stretched to 0-255 with statistics of the whole raster, so two
            windows of one raster look alike).
        valid: ``(H, W)`` bool, True where the pixel holds data in the bands used
            (display and spectral): not masked by an alpha or mask band, not NaN
            or infinite in any of them, and not nodata in all of them (one dark
            channel equal to a nodata of 0 is data). False outside the raster.
        spectral: physical band values by role (see :data:`SPECTRAL_ROLES`), only
            for the roles the file's metadata identifies; float32 ``(H, W)``, NaN
            where the pixel is invalid or that band itself is nodata.
        window: position of the chip in the full raster, in pixels.
        transform: affine transform of the chip's pixel grid (pixel edges to CRS
            coordinates); the identity offset by the window for rasters without
            georeferencing.
        crs: the raster's CRS, or None.
        pixel_size_m: ground size of one pixel in metres (the square root of the
            pixel area), or None where it is unknown (no CRS).
    """

    rgb: np.ndarray
    valid: np.ndarray
    window: Window
    transform: Affine
    crs: CRS | None = None
    spectral: dict[str, np.ndarray] = field(default_factory=dict)
    pixel_size_m: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.rgb.shape[0], self.rgb.shape[1]
