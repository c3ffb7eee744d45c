"""Display stretch: from any data type to the 8-bit RGB a model looks at.

8-bit data is taken as it is (it is already display-ready by convention); 8-bit
bands that hold fewer bits (GDAL's ``NBITS`` 1 to 7, e.g. 1-bit scans) are
scaled to fill 0-255. Other types (16-bit, signed and 32-bit integers, float
reflectance) are stretched linearly between the 2nd and 98th percentiles of each
band's *valid* pixels, measured once over the whole raster from a decimated read
(see :func:`stats_shape`), so every window of a raster is shown with the same
stretch and nodata, alpha-masked pixels, NaN and infinities never skew it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Longest side, in pixels, of the decimated read used for statistics.
STATS_SIZE = 1024
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 98.0


@dataclass
class Stretch:
    """Per-band linear stretch: ``(value - low) / (high - low) * 255``, rounded and clipped.

    Attributes:
        limits: 1-based band number to ``(low, high)`` in the band's own (raw,
            unscaled) values, ``high > low``; bands absent from the mapping are
            8-bit and passed through.
        bit_depths: 8-bit bands that use fewer bits (1 to 7), scaled up to 0-255.
    """

    limits: dict[int, tuple[float, float]] = field(default_factory=dict)
    bit_depths: dict[int, int] = field(default_factory=dict)

    def to_uint8(self, band: int, plane: np.ndarray) -> np.ndarray:
        """Stretch one band's values to uint8 (NaN and -inf become 0, +inf 255)."""
        if band in self.limits:
            low, high = self.limits[band]
            work = _work_dtype(plane.dtype)
            out = plane.astype(work)
            # Nodata such as -3.4e38 overflows to -inf here, which is clipped to 0.
            with np.errstate(over="ignore", invalid="ignore"):
                out -= work.type(low)
                out *= work.type(255.0 / (high - low))
            np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
            np.clip(out, 0, 255, out=out)
            return np.rint(out).astype(np.uint8)
        if band in self.bit_depths:
            top = (1 << self.bit_depths[band]) - 1
            scaled = np.rint(np.minimum(plane, top).astype(np.float32) * (255.0 / top))
            return scaled.astype(np.uint8)
        if plane.dtype == np.uint8:
            return plane
        clipped = np.nan_to_num(plane.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(clipped, 0, 255).astype(np.uint8)


def needs_stretch(dtype: str | np.dtype) -> bool:
    """True for data types that are stretched rather than passed through (all but uint8)."""
    return np.dtype(dtype) != np.uint8


def stats_shape(height: int, width: int, size: int = STATS_SIZE) -> tuple[int, int]:
    """``(rows, cols)`` of the decimated whole-raster read used for statistics.

    The raster is subsampled by one integer factor so that its longest side is at
    most ``size`` pixels; small rasters are read whole.
    """
    factor = max(1, math.ceil(max(height, width) / size))
    return max(1, height // factor), max(1, width // factor)


def measure_stretch(
    samples: Mapping[int, np.ndarray],
    valid: Mapping[int, np.ndarray],
    *,
    bit_depths: Mapping[int, int] | None = None,
) -> Stretch:
    """The stretch of each band from a sample of its pixels.

    Args:
        samples: 1-based band number to a (decimated) plane of raw values; only
            bands that need stretching (see :func:`needs_stretch`).
        valid: band number to a bool plane of the same shape, True where the
            pixel is valid; only these pixels, and only finite values, count.
        bit_depths: 8-bit bands holding fewer bits, passed on to the stretch.

    A band with no valid pixel gets ``(0, 1)``; a band with one value everywhere
    gets limits half a unit either side of it, so it shows as mid-grey rather
    than dividing by zero.
    """
    limits: dict[int, tuple[float, float]] = {}
    for band, plane in samples.items():
        values = plane[valid[band]].astype(np.float64, copy=False)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits[band] = (0.0, 1.0)
            continue
        low, high = (float(v) for v in np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE]))
        if not high > low:
            # Mostly one value (a flat background with sparse detail): the full range.
            low, high = float(values.min()), float(values.max())
        if not high > low:
            low, high = low - 0.5, low + 0.5
        limits[band] = (low, high)
    return Stretch(limits, dict(bit_depths or {}))


def _work_dtype(dtype: np.dtype) -> np.dtype:
    # float32 keeps 24 bits: enough for 8- and 16-bit data and float32 itself,
    # not for 32/64-bit integers or float64 (e.g. elevations in millimetres).
    if dtype.itemsize <= 2 or dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)
