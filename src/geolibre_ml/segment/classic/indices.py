"""Class membership per pixel from spectral indices or colour (placeholder)."""

from __future__ import annotations

import numpy as np

from ..chip import ImageChip


def membership(chip: ImageChip, name: str) -> np.ndarray:
    """Per-pixel membership in [0, 1] of class ``name`` (placeholder rules)."""
    rgb = chip.rgb.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if name == "water":
        if "nir" in chip.spectral and "green" in chip.spectral:
            nir, green = chip.spectral["nir"], chip.spectral["green"]
            index = (green - nir) / np.maximum(green + nir, 1e-6)
        else:
            index = (b - r) + (0.3 - (r + g + b) / 3)
    else:
        if "nir" in chip.spectral and "red" in chip.spectral:
            nir, red = chip.spectral["nir"], chip.spectral["red"]
            index = (nir - red) / np.maximum(nir + red, 1e-6) - 0.3
        else:
            index = 2 * g - r - b - 0.05
    return 1.0 / (1.0 + np.exp(-index / 0.05))
