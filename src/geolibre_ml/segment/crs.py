"""Coordinate reference systems: parsing, identification, GeoJSON ``crs`` members,
ground areas, reprojection, and the affine arithmetic between pixels and map
coordinates.

Coordinates are always in traditional GIS order (x/easting/longitude first,
y/northing/latitude second), whatever axis order a CRS's definition declares,
as GDAL's geotransforms and RFC 7946 GeoJSON use.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.enums import WktVersion
from pyproj.exceptions import CRSError, ProjError

from .checkpoints import checkpoint
from .errors import InvalidRequest, clipped, quoted

_VERSIONED_AUTHORITY = re.compile(r"^([A-Za-z]+)_(\d{4})$")  # e.g. IAU_2015

# PROJ's identification confidence at which a match is equivalent (same datum,
# parameters and coordinate system) and may differ only by name; see proj_identify.
_EQUIVALENT_CONFIDENCE = 70

# WGS 84 in longitude/latitude: what RFC 7946 GeoJSON is in by definition.

# Longest edge, in radians of arc (about 640 m on Earth), that ground areas treat
# as straight on the local equal-area plane; longer edges are divided first.
_AREA_SEGMENT_RADIANS = 1e-4
_AREA_BATCH = 250_000


def to_pyproj(crs: Any) -> CRS | None:
    """A :class:`pyproj.CRS` for a rasterio CRS, a pyproj CRS, a string or None.

    A rasterio CRS goes through WKT2, which keeps everything GDAL knows of it
    (identifiers, axis order, datum ensembles); an empty one gives None.
    """
    if crs is None:
        return None
    if isinstance(crs, CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        try:
            wkt = crs.to_wkt(version="WKT2_2019")
        except (TypeError, ValueError):
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
            f"{field} {quoted(text)} is not a coordinate reference system PROJ recognises "
            f"({clipped(str(exc))}). "
            "Give an authority code such as 'EPSG:4326' or 'EPSG:32633', an OGC URN, or WKT.",
            fields=field,
        ) from exc


def exact_authority(crs: CRS) -> tuple[str, str] | None:
    """The (authority, code) whose definition is exactly ``crs``, or None.

    A code counts only when PROJ finds its definition equivalent to ``crs``: the
    same datum, projection parameters, units and axis order (names and metadata
    may differ, so ``+proj=utm +zone=33 +datum=WGS84`` is EPSG:32633). A CRS that
    merely resembles a registered one (another false easting, an unknown datum on
    the same ellipsoid) keeps its own definition. EPSG is preferred when several
    authorities register the same CRS (ESRI:102100 is EPSG:3857).
    """
    try:
        wkt = crs.to_wkt(WktVersion.WKT2_2019)
    except CRSError:
        return None
    return _identify(wkt) if wkt else None


@functools.lru_cache(maxsize=128)
def _identify(wkt: str) -> tuple[str, str] | None:
    # Identification searches PROJ's database (up to half a second for an unusual
    # CRS); a server answers many requests on rasters in the same CRS.
    crs = CRS.from_wkt(wkt)
    try:
        matches = crs.list_authority(min_confidence=_EQUIVALENT_CONFIDENCE)
    except CRSError:
        return None
    found: list[tuple[str, str]] = []
    for match in matches:
        try:
            registered = CRS.from_authority(match.auth_name, match.code)
        except CRSError:
            continue
        if registered.equals(crs, ignore_axis_order=False):
            found.append((match.auth_name, match.code))
    for authority in found:
        if authority[0] == "EPSG":
            return authority
    return found[0] if found else None


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

    A plain EPSG CRS is named by its URN (``urn:ogc:def:crs:EPSG::32633``). Any
    other CRS is never lost: ``name`` holds its OGC URN when it has an exact
    authority code (``urn:ogc:def:crs:ESRI::54009``), otherwise its WKT2
    definition, which GDAL and QGIS read back exactly (a bare CRS name would be
    read as WGS 84); ``wkt`` holds the WKT2 definition in both cases.

    Args:
        crs: the CRS of the coordinates; None for pixel coordinates.
    """
    if crs is None:
        return None
    authority = exact_authority(crs)
    if authority is not None and authority[0] == "EPSG":
        return {"type": "name", "properties": {"name": ogc_urn(*authority)}}
    if authority is None:
        # An identifier the definition does not match would win over the definition
        # in GDAL; only the definition is kept.
        crs = _without_identifier(crs)
    wkt = crs.to_wkt(WktVersion.WKT2_2019)
    name = ogc_urn(*authority) if authority is not None else wkt
    return {"type": "name", "properties": {"name": name, "wkt": wkt}}


def _without_identifier(crs: CRS) -> CRS:
    """``crs`` without its top-level identifier(s) (``ID["EPSG",32633]``), if any."""
    definition = crs.to_json_dict()
    if "id" not in definition and "ids" not in definition:
        return crs
    definition.pop("id", None)
    definition.pop("ids", None)
    return CRS.from_json_dict(definition)


# -- affine arithmetic ------------------------------------------------------------------


def apply_transform(
    transform: Affine, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply an affine transform to coordinate arrays, element-wise.

    The arithmetic is that of ``transform @ (x, y)`` (``a*x + b*y + c``), so
    results are bit-identical to affine's own and exact wherever the products and
    sums are representable (a north-up grid with a binary-exact pixel size).
    """
    a, b, c, d, e, f = transform[:6]
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return x * a + y * b + c, x * d + y * e + f


def map_to_pixel(
    xy: np.ndarray, *, from_crs: CRS, raster_crs: CRS, transform: Affine
) -> np.ndarray:
    """Convert ``(N, 2)`` map coordinates in ``from_crs`` to raster pixel coordinates.

    Pixel coordinates have x to the right and y down, (0, 0) being the top-left
    corner of the top-left pixel; the raster's own transform (rotated or south-up
    included) is honoured.

    Raises:
        InvalidRequest: when some coordinates have no equivalent in the raster's CRS.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if from_crs != raster_crs:
        try:
            x, y = _transformer(from_crs, raster_crs).transform(xy[:, 0], xy[:, 1])
        except ProjError:
            x = y = np.full(len(xy), np.inf)
        xy = np.column_stack([x, y])
    if not np.isfinite(xy).all():
        raise InvalidRequest(
            f"Some prompt coordinates cannot be converted from {quoted(from_crs.name)} to the "
            "raster's CRS. Check point_crs and the coordinate order (x/longitude first)."
        )
    cols, rows = apply_transform(~transform, xy[:, 0], xy[:, 1])
    return np.column_stack([cols, rows])


# -- reprojection ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _cached_transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)


def _transformer(src: CRS, dst: CRS) -> Transformer:
    """A transformer in traditional axis order; creating one costs milliseconds."""
    return _cached_transformer(src.to_wkt(), dst.to_wkt())


def _transform_coords(geoms: np.ndarray, transformer: Transformer) -> np.ndarray:
    def apply(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, apply)


def reproject(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """Reproject shapely geometries from ``src`` to ``dst`` (traditional axis order).

    Vertices are transformed one by one (edges stay straight in ``dst``); equal
    input vertices give equal output vertices, so polygons that share edges keep
    sharing them. In a geographic ``dst``, features of a raster that straddles the
    antimeridian keep one continuous longitude range past 180° (179.5 to 180.5,
    not 179.5 then -179.5), as GDAL, QGIS and web maps draw them whole; features
    spread over more than half the globe keep PROJ's -180 to 180.

    Raises:
        InvalidRequest: when some coordinates fall outside what ``dst`` can represent.
    """
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms) or src == dst:
        return geoms
    try:
        transformer = _transformer(src, dst)
    except ProjError as exc:
        raise InvalidRequest(_no_transformation(src, dst)) from exc
    try:
        out = _transform_coords(geoms, transformer)
        coords = shapely.get_coordinates(out)
        finite = bool(np.isfinite(coords).all())
    except ProjError:
        finite = False
    if not finite:
        raise InvalidRequest(
            f"output_crs {quoted(dst.name)} cannot represent this raster's area (some coordinates "
            "have no equivalent there). Choose a CRS that covers the image, such as EPSG:4326."
        )
    if dst.is_geographic and len(coords):
        out = _unwrap_antimeridian(out, np.pi / _angular_unit_factor(dst))
    return out


def _no_transformation(src: CRS, dst: CRS) -> str:
    """Why PROJ has no way from ``src`` to ``dst``: the raster's CRS, or output_crs."""
    try:
        _transformer(src, CRS.from_epsg(4326))
    except ProjError:
        # Not even to WGS 84: a local engineering grid or a datum PROJ cannot tie to
        # the Earth, so no output_crs would do.
        return (
            f"The raster's own CRS ({quoted(src.name)}) cannot be transformed to any other "
            "CRS (PROJ cannot place it on the Earth). Leave output_crs empty to get the "
            "polygons in the raster's own CRS, or assign the raster a standard CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:32633) and send it again."
        )
    return (
        f"output_crs {quoted(dst.name)} cannot be reached from this raster's CRS (PROJ knows "
        "no transformation between them). Choose a CRS tied to the Earth, such as EPSG:4326."
    )


def footprint_may_unwrap(transform: Affine, width: int, height: int, src: CRS, dst: CRS) -> bool:
    """Whether :func:`reproject` from ``src`` to ``dst`` might move some longitudes of
    this raster's polygons one turn east (see :func:`_unwrap_antimeridian`): True when
    ``dst`` is geographic and the raster's footprint (its outline, ``transform`` from
    pixels to ``src``, densified) spans more than half a turn of longitude there, or
    cannot be transformed.

    When False, every subset of the raster's polygons reprojects as the whole set does,
    so parts of one answer may be reprojected apart (on a cluster's workers).
    """
    if not dst.is_geographic or src == dst:
        return False
    outline = shapely.segmentize(shapely.box(0, 0, width, height), max(width, height) / 64)
    x, y = apply_transform(transform, *shapely.get_coordinates(outline).T)
    try:
        lon, _ = _transformer(src, dst).transform(x, y)
    except ProjError:
        return True
    half_turn = np.pi / _angular_unit_factor(dst)
    # A margin of a hundredth of a turn: the densified outline stands for the edges.
    return not np.isfinite(lon).all() or float(np.ptp(lon)) > 0.98 * half_turn


def _unwrap_antimeridian(geoms: np.ndarray, half_turn: float) -> np.ndarray:
    """Move negative longitudes one turn east when some geometry straddles the
    antimeridian and the whole set is then compact.

    ``half_turn`` is 180 in degrees (200 in grads). The same shift applies to every
    geometry, so shared vertices stay shared.
    """
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    lon = coords[:, 0]
    if lon.max() - lon.min() <= half_turn:
        return geoms
    shifted = np.where(lon < 0, lon + 2 * half_turn, lon)
    if shifted.max() - shifted.min() >= half_turn:
        return geoms  # spread over the globe
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    span = np.maximum.reduceat(lon, starts) - np.minimum.reduceat(lon, starts)
    if not (span > half_turn).any():
        return geoms  # nothing straddles the line: each geometry is whole as it is

    def east(xy: np.ndarray) -> np.ndarray:
        xy = xy.copy()
        xy[:, 0] = np.where(xy[:, 0] < 0, xy[:, 0] + 2 * half_turn, xy[:, 0])
        return xy

    return shapely.transform(geoms, east)


# -- ground areas ---------------------------------------------------------------------


def ground_area_m2(geoms: np.ndarray, crs: CRS | None) -> np.ndarray | None:
    """Ground (ellipsoidal) area of each geometry, in square metres, or None.

    The area is that of the region each polygon covers on the CRS's ellipsoid,
    its edges being straight lines in ``crs`` (as pixel edges are), whatever the
    projection's distortion (Web Mercator included). Edges longer than about
    640 m of arc are first divided; then the polygons go to an equal-area plane
    of the authalic sphere: the cylindrical one for a geographic CRS (where
    north-up pixel edges stay straight, so a grid cell's area is exact), else a
    Lambert azimuthal one centred on each polygon. Areas are exact to about a part
    in a billion for objects up to hundreds of kilometres across, and everything
    is vectorised; a projected polygon wider than a hemisphere gets a geodesic
    area instead. For a CRS with no ellipsoid (an engineering CRS) the planar area
    is converted with the axis unit.

    Returns:
        float64 areas (NaN where coordinates cannot be located on the ellipsoid),
        or None where no ground area can be known: pixel space (``crs`` None) or
        an engineering CRS with unknown units.
    """
    if crs is None:
        return None
    geoms = np.asarray(geoms, dtype=object)
    ellipsoid = crs.ellipsoid
    geodetic = crs.geodetic_crs
    if geodetic is None or ellipsoid is None:
        factor = _linear_unit_factor(crs)
        return None if factor is None else shapely.area(geoms) * factor**2
    if not len(geoms):
        return np.zeros(0, dtype=np.float64)
    # Batches of about a quarter million vertices bound the per-vertex temporaries.
    vertices = np.cumsum(shapely.get_num_coordinates(geoms))
    cuts = np.searchsorted(vertices, np.arange(_AREA_BATCH, vertices[-1], _AREA_BATCH))
    bounds = [0, *sorted(set((cuts + 1).tolist()) - {0, len(geoms)}), len(geoms)]
    return np.concatenate(
        [_ground_areas(geoms[lo:hi], crs, geodetic) for lo, hi in itertools.pairwise(bounds)]
    )


def _ground_areas(geoms: np.ndarray, crs: CRS, geodetic: CRS) -> np.ndarray:
    """:func:`ground_area_m2` of one batch of geometries, for a CRS with an ellipsoid."""
    checkpoint()
    ellipsoid = crs.ellipsoid
    a = float(ellipsoid.semi_major_metre)
    b = float(ellipsoid.semi_minor_metre)
    if crs.is_geographic:
        unit = _angular_unit_factor(crs)
        max_segment = _AREA_SEGMENT_RADIANS / unit
    else:
        unit = _linear_unit_factor(crs) or 1.0
        max_segment = _AREA_SEGMENT_RADIANS * a / unit
    rings = _Rings(geoms, len(geoms))
    if rings.longest_edge() > max_segment:
        rings = _Rings(shapely.segmentize(geoms, max_segment), len(geoms))
    if not rings.count:
        return np.zeros(len(geoms), dtype=np.float64)

    if crs.is_geographic:
        # Cylindrical equal-area: x is the longitude itself (never wrapped, so a
        # raster across the antimeridian stays whole), y the authalic latitude's sine.
        sin_beta, radius = _authalic(rings.xy[:, 1] * unit, a, b)
        return rings.areas(rings.xy[:, 0] * unit, sin_beta) * radius**2

    try:
        lon, lat = _transformer(crs, geodetic).transform(rings.xy[:, 0], rings.xy[:, 1])
    except ProjError:
        lon = lat = np.full(len(rings.xy), np.nan)
    geodetic_unit = _angular_unit_factor(geodetic)
    lon, lat = np.asarray(lon) * geodetic_unit, np.asarray(lat) * geodetic_unit
    # Vertices PROJ cannot place (off the Earth's disk in a geostationary view) are
    # infinite: their polygons get no area rather than a warning.
    with np.errstate(invalid="ignore"):
        sin_beta, radius = _authalic(lat, a, b)
        x, y, cos_distance = _azimuthal_equal_area(lon, sin_beta, rings)
    areas = rings.areas(x, y) * radius**2
    # Beyond a hemisphere from its centre the azimuthal plane is too distorted (and
    # undefined at the antipode): geodesic areas for those rare, huge polygons.
    far = ~np.isfinite(areas)
    has = rings.vertex_starts >= 0
    far[has] |= ~(np.minimum.reduceat(cos_distance, rings.vertex_starts[has]) > 0.0)
    if far.any():
        lon_deg, lat_deg = np.degrees(lon), np.degrees(lat)
        areas[far] = [
            _geodesic_area(rings, int(i), lon_deg, lat_deg, a, b) for i in np.flatnonzero(far)
        ]
    return areas


class _Rings:
    """The rings of some polygons as flat arrays: vertices, and which ring and
    geometry each belongs to, exterior rings told from holes."""

    def __init__(self, geoms: np.ndarray, n: int) -> None:
        parts, part_geom = shapely.get_parts(geoms, return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        self.n = n
        self.count = len(rings)
        self.ring_geom = part_geom[ring_part]
        self.exterior = np.ones(len(rings), dtype=bool)
        self.exterior[1:] = ring_part[1:] != ring_part[:-1]
        sizes = shapely.get_num_coordinates(rings)
        self.xy = shapely.get_coordinates(rings)
        self.vertex_ring = np.repeat(np.arange(len(rings)), sizes)
        self.vertex_geom = self.ring_geom[self.vertex_ring]
        # Vertices come grouped by geometry: where each geometry's run starts (-1: none).
        self.vertex_starts = np.full(n, -1, dtype=np.int64)
        first = np.flatnonzero(np.r_[True, self.vertex_geom[1:] != self.vertex_geom[:-1]])
        if len(self.vertex_geom):
            self.vertex_starts[self.vertex_geom[first]] = first

    def longest_edge(self) -> float:
        """Length of the longest edge, in coordinate units (0 without edges)."""
        step = np.diff(self.xy, axis=0)[self.vertex_ring[:-1] == self.vertex_ring[1:]]
        return float(np.sqrt((step * step).sum(axis=1)).max()) if len(step) else 0.0

    def areas(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Planar area of each geometry, holes subtracted, from vertex coordinates."""
        # Shoelace about each ring's first vertex: well conditioned for small rings
        # far from the origin. Rings are closed (the last vertex repeats the first).
        ring_start = np.r_[0, np.cumsum(np.bincount(self.vertex_ring, minlength=self.count))[:-1]]
        origin = ring_start[self.vertex_ring]
        x = x - x[origin]
        y = y - y[origin]
        cross = x[:-1] * y[1:] - x[1:] * y[:-1]
        same = self.vertex_ring[:-1] == self.vertex_ring[1:]
        ring_area = 0.5 * np.abs(
            np.bincount(self.vertex_ring[:-1][same], cross[same], minlength=self.count)
        )
        signed = np.where(self.exterior, ring_area, -ring_area)
        return np.bincount(self.ring_geom, signed, minlength=self.n)


def _azimuthal_equal_area(
    lon: np.ndarray, sin_beta: np.ndarray, rings: _Rings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lambert azimuthal equal-area coordinates on the unit sphere, each vertex about
    its own geometry's centre; and the cosine of each vertex's distance to it."""
    cos_beta = np.sqrt(np.clip(1.0 - sin_beta * sin_beta, 0.0, None))
    # The centre is the normalised mean of the vertices as unit vectors, which is
    # robust across the antimeridian and at the poles.
    g = rings.vertex_geom
    cx = np.bincount(g, cos_beta * np.cos(lon), minlength=rings.n)
    cy = np.bincount(g, cos_beta * np.sin(lon), minlength=rings.n)
    cz = np.bincount(g, sin_beta, minlength=rings.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        sin_beta0 = np.clip(cz / np.sqrt(cx * cx + cy * cy + cz * cz), -1.0, 1.0)
    cos_beta0 = np.sqrt(1.0 - sin_beta0 * sin_beta0)
    dlon = lon - np.arctan2(cy, cx)[g]
    sb0, cb0 = sin_beta0[g], cos_beta0[g]
    cos_dlon = np.cos(dlon)
    cos_distance = sb0 * sin_beta + cb0 * cos_beta * cos_dlon
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.sqrt(2.0 / (1.0 + cos_distance))
    x = k * cos_beta * np.sin(dlon)
    y = k * (cb0 * sin_beta - sb0 * cos_beta * cos_dlon)
    return x, y, cos_distance


def _authalic(lat: np.ndarray, a: float, b: float) -> tuple[np.ndarray, float]:
    """Sine of the authalic latitude of each geodetic latitude (radians), and the
    radius of the authalic sphere, whose areas equal the ellipsoid's."""
    sin_phi = np.sin(lat)
    e2 = max(1.0 - (b * b) / (a * a), 0.0)
    if e2 < 1e-15:
        return sin_phi, a
    e = np.sqrt(e2)

    def q(s: np.ndarray | float) -> np.ndarray:
        return (1.0 - e2) * (s / (1.0 - e2 * s * s) + np.arctanh(e * s) / e)

    qp = float(q(1.0))
    return np.clip(q(sin_phi) / qp, -1.0, 1.0), a * float(np.sqrt(qp / 2.0))


def _geodesic_area(
    rings: _Rings, geom: int, lon_deg: np.ndarray, lat_deg: np.ndarray, a: float, b: float
) -> float:
    """Karney's geodesic area of one geometry from its (densified) vertices."""
    geod = Geod(a=a, b=b)
    total = 0.0
    for ring in np.flatnonzero(rings.ring_geom == geom):
        mask = rings.vertex_ring == ring
        lons, lats = lon_deg[mask], lat_deg[mask]
        if not (np.isfinite(lons).all() and np.isfinite(lats).all()):
            return float("nan")
        area = abs(geod.polygon_area_perimeter(lons, lats)[0])
        total += area if rings.exterior[ring] else -area
    return total


def _angular_unit_factor(crs: CRS) -> float:
    """Radians per unit of a geographic CRS's horizontal axes."""
    for axis in crs.axis_info:
        if axis.direction in ("east", "north") and axis.unit_conversion_factor:
            return float(axis.unit_conversion_factor)
    return float(np.pi / 180.0)


def _linear_unit_factor(crs: CRS) -> float | None:
    """Metres per unit of a projected or engineering CRS's axes, or None if unknown."""
    axes = crs.axis_info
    if not axes or not axes[0].unit_conversion_factor:
        return None
    if (axes[0].unit_name or "").lower() in {"degree", "radian", "grad", "unknown", ""}:
        return None
    return float(axes[0].unit_conversion_factor)
