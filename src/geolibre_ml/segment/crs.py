"""Coordinate reference systems: parsing, GeoJSON ``crs`` members, ground areas, reprojection.

Coordinates are always in traditional GIS order (x/easting/longitude first,
y/northing/latitude second), whatever axis order a CRS's definition declares,
as GDAL's geotransforms and RFC 7946 GeoJSON use.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.enums import WktVersion
from pyproj.exceptions import CRSError

from .errors import InvalidRequest

_VERSIONED_AUTHORITY = re.compile(r"^([A-Za-z]+)_(\d{4})$")  # e.g. IAU_2015


def to_pyproj(crs: Any) -> CRS | None:
    """A :class:`pyproj.CRS` for a rasterio CRS, a pyproj CRS, a string or None."""
    if crs is None:
        return None
    if isinstance(crs, CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        wkt = crs.to_wkt()
        return CRS.from_wkt(wkt) if wkt else None
    return CRS.from_user_input(crs)


def parse_crs(text: str, *, field: str) -> CRS:
    """Parse a user-supplied CRS (``EPSG:4326``, a URN, WKT or PROJ JSON).

    Raises:
        InvalidRequest: naming ``field`` and how to write a CRS, when PROJ cannot
            make sense of ``text``.
    """
    try:
        return CRS.from_user_input(text.strip())
    except (CRSError, TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"{field} {text!r} is not a coordinate reference system PROJ recognises ({exc}). "
            "Give an authority code such as 'EPSG:4326' or 'EPSG:32633', an OGC URN, or WKT."
        ) from exc


def exact_authority(crs: CRS) -> tuple[str, str] | None:
    """The (authority, code) that names ``crs`` exactly, or None.

    Only an exact match counts (confidence 100): a custom CRS that merely
    resembles an EPSG one must keep its own definition.
    """
    try:
        found = crs.to_authority(min_confidence=100)
    except CRSError:
        return None
    return (found[0], found[1]) if found else None


def ogc_urn(authority: str, code: str) -> str:
    """The OGC URN for an authority code (``urn:ogc:def:crs:EPSG::32633``)."""
    versioned = _VERSIONED_AUTHORITY.match(authority)
    if versioned:
        return f"urn:ogc:def:crs:{versioned.group(1)}:{versioned.group(2)}:{code}"
    if authority == "OGC":
        return f"urn:ogc:def:crs:OGC:1.3:{code}"
    return f"urn:ogc:def:crs:{authority}::{code}"


def geojson_crs_member(crs: CRS | None) -> dict[str, Any] | None:
    """The GeoJSON ``crs`` member for ``crs``, or None for pixel space.

    A plain EPSG CRS is named by its URN. Any other CRS is never lost: ``name``
    holds its OGC URN when it has an authority code (its own name otherwise) and
    ``wkt`` holds its full WKT2 definition.
    """
    if crs is None:
        return None
    authority = exact_authority(crs)
    if authority and authority[0] == "EPSG":
        return {"type": "name", "properties": {"name": ogc_urn(*authority)}}
    name = ogc_urn(*authority) if authority else (crs.name or "unnamed")
    wkt = crs.to_wkt(WktVersion.WKT2_2019)
    return {"type": "name", "properties": {"name": name, "wkt": wkt}}


def _transform_coords(geoms: np.ndarray, transformer: Transformer) -> np.ndarray:
    def apply(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, apply)


def reproject(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """Reproject shapely geometries from ``src`` to ``dst`` (traditional axis order).

    Raises:
        InvalidRequest: when some coordinates fall outside what ``dst`` can represent.
    """
    if src == dst:
        return geoms
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    out = _transform_coords(np.asarray(geoms, dtype=object), transformer)
    coords = shapely.get_coordinates(out)
    if coords.size and not np.isfinite(coords).all():
        raise InvalidRequest(
            f"output_crs {dst.name!r} cannot represent this raster's area (some coordinates "
            "have no equivalent there). Choose a CRS that covers the image, such as EPSG:4326."
        )
    return out


def ground_area_m2(geoms: np.ndarray, crs: CRS | None) -> np.ndarray | None:
    """Ground (ellipsoidal) area of each geometry in square metres, or None.

    Areas are geodesic on the CRS's ellipsoid, so they are true ground areas
    whatever the projection's distortion (Web Mercator included). For a CRS with
    no ellipsoid (an engineering CRS) the planar area is converted with the axis
    unit; None where no ground area can be known (pixel space).
    """
    if crs is None:
        return None
    geoms = np.asarray(geoms, dtype=object)
    geodetic = crs.geodetic_crs
    if geodetic is None:
        factor = _linear_unit_factor(crs)
        return None if factor is None else shapely.area(geoms) * factor**2
    lonlat = geoms
    if not crs.is_geographic:
        lonlat = _transform_coords(geoms, Transformer.from_crs(crs, geodetic, always_xy=True))
    geod = geodetic.get_geod()
    if geod is None:
        return None
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in lonlat], dtype=np.float64)


def _linear_unit_factor(crs: CRS) -> float | None:
    axes = crs.axis_info
    if not axes or axes[0].unit_conversion_factor in (None, 0):
        return None
    if (axes[0].unit_name or "").lower() in {"degree", "radian", "unknown", ""}:
        return None
    return float(axes[0].unit_conversion_factor)


def map_to_pixel(
    xy: np.ndarray, *, from_crs: CRS, raster_crs: CRS, transform: Affine
) -> np.ndarray:
    """Convert ``(N, 2)`` map coordinates in ``from_crs`` to raster pixel coordinates.

    Pixel coordinates have x to the right and y down, (0, 0) being the top-left
    corner of the top-left pixel; the raster's own transform (rotated or south-up
    included) is honoured.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if from_crs != raster_crs:
        transformer = Transformer.from_crs(from_crs, raster_crs, always_xy=True)
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        xy = np.column_stack([x, y])
    if not np.isfinite(xy).all():
        raise InvalidRequest(
            f"Some prompt coordinates cannot be converted from {from_crs.name!r} to the "
            "raster's CRS. Check point_crs and the coordinate order (x/longitude first)."
        )
    inverse = ~transform
    cols, rows = inverse * (xy[:, 0], xy[:, 1])
    return np.column_stack([cols, rows])
