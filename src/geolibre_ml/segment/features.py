"""A set of vector features: geometries, their properties and their CRS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import CRS


@dataclass
class FeatureSet:
    """Polygons found in one raster, ready to be written or served.

    Attributes:
        geometries: shapely (Multi)Polygons, object array.
        properties: one dict per geometry (``value``, ``score``, ``area_m2``...).
        crs: CRS of the coordinates, or None when they are pixel coordinates
            (x right, y down) of a raster without georeferencing.
        transform_only: True when coordinates went through a geotransform but the
            raster declares no CRS (coordinates are map-like, the CRS unknown).
    """

    geometries: np.ndarray
    properties: list[dict[str, Any]]
    crs: CRS | None = None
    transform_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.geometries)

    @classmethod
    def empty(cls, crs: CRS | None = None) -> FeatureSet:
        """A feature set with no features."""
        return cls(np.empty(0, dtype=object), [], crs)
