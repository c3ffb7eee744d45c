"""Display stretch: from any data type to the 8-bit RGB a model looks at.

8-bit data is taken as it is (it is already display-ready by convention). Other
types (16-bit, float reflectance, signed integers) are stretched linearly between
the 2nd and 98th percentiles of each band's *valid* pixels, measured once over
the whole raster (from a decimated read), so every window of a raster is shown
with the same stretch and nodata never skews it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rasterio.enums import Resampling
from rasterio.io import DatasetReader

#: Longest side, in pixels, of the decimated read used for statistics.
STATS_SIZE = 1024
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 98.0


@dataclass
class Stretch:
    """Per-band linear stretch: ``(value - low) / (high - low) * 255``, clipped.

    Attributes:
        limits: 1-based band number to ``(low, high)`` in the band's own values;
            bands absent from the mapping (8-bit ones) are passed through.
    """

    limits: dict[int, tuple[float, float]] = field(default_factory=dict)

    def to_uint8(self, band: int, plane: np.ndarray) -> np.ndarray:
        """Stretch one band's values to uint8 (NaN becomes 0)."""
        if band not in self.limits:
            if plane.dtype == np.uint8:
                return plane
            return np.clip(plane, 0, 255).astype(np.uint8)
        low, high = self.limits[band]
        scale = 255.0 / (high - low) if high > low else 0.0
        out = (plane.astype(np.float32) - np.float32(low)) * np.float32(scale)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(out, 0, 255).astype(np.uint8)


def compute_stretch(ds: DatasetReader, bands: tuple[int, ...]) -> Stretch:
    """Measure the stretch of ``bands`` over the valid pixels of the whole raster."""
    wide = [b for b in bands if ds.dtypes[b - 1] != "uint8"]
    if not wide:
        return Stretch()
    factor = max(1, int(np.ceil(max(ds.width, ds.height) / STATS_SIZE)))
    shape = (max(1, ds.height // factor), max(1, ds.width // factor))
    data = ds.read(wide, out_shape=(len(wide), *shape), resampling=Resampling.nearest)
    masks = ds.read_masks(wide, out_shape=(len(wide), *shape), resampling=Resampling.nearest)
    limits: dict[int, tuple[float, float]] = {}
    for i, band in enumerate(wide):
        values = data[i][masks[i] > 0].astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits[band] = (0.0, 1.0)
            continue
        low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
        if high <= low:
            low, high = float(values.min()), float(values.max())
        if high <= low:
            high = low + 1.0
        limits[band] = (float(low), float(high))
    return Stretch(limits)
