"""Vector files from a :class:`FeatureSet`, the format chosen by the file's extension.

| format | extensions | written by |
| --- | --- | --- |
| GeoJSON | ``.geojson``, ``.json`` | :mod:`.geojson`, the model server's serializer (see below) |
| GeoPackage | ``.gpkg`` | GDAL through pyogrio |
| FlatGeobuf | ``.fgb`` | GDAL through pyogrio (spatial index: features in Hilbert order) |
| GeoParquet 1.1 | ``.parquet``, ``.geoparquet`` | pyarrow (WKB geometry, ``geo`` metadata) |
| Shapefile | ``.shp`` | GDAL through pyogrio |

Every format gets the same columns: ``value``, ``score`` and (with a CRS)
``area_m2`` first, then the properties the features share (``mode``, ``prompt``,
``model``, ``model_id``, ``source``), then any other property. An empty feature
set is a valid empty layer with that schema and the CRS.

Coordinates are written in the feature set's CRS, x/easting/longitude first.
Pixel-space features (no CRS) are written without one. GeoJSON files are written
by the one serializer the model server's answers use (:mod:`.geojson`): RFC 7946's
counter-clockwise exteriors and x/longitude first, the layer's ``name``, and the CRS
in a ``crs`` member that GDAL and QGIS read (an OGC URN for an authority code, the
WKT2 definition otherwise; WGS 84 included, as GDAL itself writes it). GDAL's own
GeoJSON writer would drop a CRS that has no EPSG code.

A file is written to a private temporary folder beside the target and moved into
place only once complete, so a failure or Ctrl-C never leaves a partial file and
never damages an existing one.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from pyproj import CRS

from .errors import InvalidRequest
from .features import FeatureSet
from .geojson import write_geojson

FieldType = Literal["int", "float", "str", "bool"]


@dataclass(frozen=True)
class VectorFormat:
    """A vector file format the writers produce.

    Attributes:
        name: short name, as given to ``--format`` (``gpkg``).
        extensions: file extensions that select it, lower case, the first preferred.
        driver: the GDAL/OGR driver, or None when written without GDAL.
        title: human name.
        media_type: the IANA media type (``Content-Type`` of an HTTP answer).
        single_file: False for a format written as several files (the Shapefile),
            which an HTTP answer cannot carry.
    """

    name: str
    extensions: tuple[str, ...]
    driver: str | None
    title: str
    media_type: str
    single_file: bool = True

    @property
    def extension(self) -> str:
        """The preferred extension (``.gpkg``)."""
        return self.extensions[0]


FORMATS: tuple[VectorFormat, ...] = (
    VectorFormat("geojson", (".geojson", ".json"), "GeoJSON", "GeoJSON", "application/geo+json"),
    VectorFormat("gpkg", (".gpkg",), "GPKG", "GeoPackage", "application/geopackage+sqlite3"),
    VectorFormat("fgb", (".fgb",), "FlatGeobuf", "FlatGeobuf", "application/flatgeobuf"),
    VectorFormat(
        "parquet", (".parquet", ".geoparquet"), None, "GeoParquet", "application/vnd.apache.parquet"
    ),
    VectorFormat(
        "shp",
        (".shp",),
        "ESRI Shapefile",
        "Shapefile",
        "application/x-esri-shape",
        single_file=False,
    ),
)

#: Format short names, for ``--format`` choices.
FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)

# Columns every file gets, in this order, whether or not a feature carries them.
_LEADING_FIELDS: tuple[tuple[str, FieldType], ...] = (("value", "int"), ("score", "float"))
_AREA_FIELD: tuple[str, FieldType] = ("area_m2", "float")

_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
_SHAPEFILE_FIELD_CHARS = 10

#: GeoParquet specification version written in the ``geo`` metadata.
GEOPARQUET_VERSION = "1.1.0"


def supported_extensions() -> str:
    """The supported extensions, for messages (``.geojson, .json, .gpkg, ...``)."""
    return ", ".join(ext for f in FORMATS for ext in f.extensions)


def format_by_name(name: str) -> VectorFormat:
    """The format called ``name`` (``gpkg``), or the one an extension selects (``.gpkg``).

    Raises:
        InvalidRequest: listing the formats, for an unknown name.
    """
    key = name.strip().lower()
    for fmt in FORMATS:
        if key == fmt.name or key in fmt.extensions or f".{key}" in fmt.extensions:
            return fmt
    raise InvalidRequest(
        f"Unknown vector format {name!r}. Choose one of: {', '.join(FORMAT_NAMES)}."
    )


def format_for_path(path: str | Path, name: str | None = None) -> VectorFormat:
    """The format to write ``path`` in: ``name`` when given, else from its extension.

    Raises:
        InvalidRequest: for an unknown format name or extension, listing the supported ones.
    """
    if name:
        return format_by_name(name)
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.extensions:
            return fmt
    shown = f"extension {suffix!r}" if suffix else "no extension"
    raise InvalidRequest(
        f"Cannot tell which vector format to write for {str(path)!r} ({shown}). "
        f"Use one of these extensions: {supported_extensions()}."
    )


def write_features(
    features: FeatureSet,
    path: str | Path,
    *,
    format: str | None = None,
    layer: str | None = None,
    shared: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``features`` to ``path``, replacing any existing file there.

    Args:
        features: polygons, properties and CRS (None: pixel coordinates, written
            without a CRS).
        path: the file to write; its extension picks the format unless ``format``.
        format: a format name or extension that overrides the extension of ``path``.
        layer: the layer name (GeoPackage, FlatGeobuf, GeoJSON ``name``); defaults
            to the file's stem.
        shared: properties every feature shares (``mode``, ``prompt``, ``model``...);
            their names and types become columns even when there are no features, so
            an empty result has the same schema as a full one.

    Returns:
        The path written (for a Shapefile, its ``.shp``).

    Raises:
        InvalidRequest: an unknown format, or features a Shapefile cannot hold.
        OSError: the file cannot be written (permissions, disk full...).
    """
    path = Path(path)
    fmt = format_for_path(path, format)
    layer = layer or path.stem
    geometries = shapely.orient_polygons(
        np.asarray(features.geometries, dtype=object), exterior_cw=False
    )
    schema = field_schema(features, shared)
    columns = _columns(features.properties, schema)
    with _staged(path, shapefile=fmt.name == "shp") as staged:
        if fmt.name == "geojson":
            _geojson(geometries, features, columns, layer, staged)
        elif fmt.name == "parquet":
            _write_geoparquet(staged, geometries, features.crs, columns, schema)
        else:
            _write_ogr(staged, fmt, geometries, features.crs, columns, schema, layer)
    return path


# -- schema ------------------------------------------------------------------------


def field_schema(
    features: FeatureSet, shared: Mapping[str, Any] | None = None
) -> dict[str, FieldType]:
    """Column names and types for ``features``, in writing order.

    ``value`` and ``score`` always come first, then ``area_m2`` when the features
    have a CRS, then the ``shared`` properties, then any other property in the
    order first seen. A column's type comes from its values: integers, floats
    (integers mixed with floats are floats), booleans, strings; anything else
    (lists, dicts) is written as JSON text.
    """
    schema: dict[str, FieldType] = dict(_LEADING_FIELDS)
    if features.crs is not None:
        schema[_AREA_FIELD[0]] = _AREA_FIELD[1]
    seen: dict[str, set[FieldType]] = {}
    for props in [dict(shared or {}), *features.properties]:
        for key, value in props.items():
            kinds = seen.setdefault(key, set())
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                kinds.add(_value_type(value))
    for key, kinds in seen.items():
        if key in schema and not kinds:
            continue
        schema[key] = _merge_types(kinds, default=schema.get(key, "str"))
    return schema


def _value_type(value: Any) -> FieldType:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return "str"


def _merge_types(kinds: set[FieldType], default: FieldType) -> FieldType:
    if not kinds:
        return default
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"int", "float"}:
        return "float"
    return "str"


def _columns(properties: list[dict[str, Any]], schema: Mapping[str, FieldType]) -> dict[str, list]:
    """One list of Python values per column, None where a feature lacks the value."""
    columns: dict[str, list] = {}
    for key, kind in schema.items():
        values = []
        for props in properties:
            value = props.get(key)
            if isinstance(value, (float, np.floating)) and math.isnan(value):
                value = None
            if value is not None and kind == "str" and not isinstance(value, str):
                value = json.dumps(value, default=str)
            elif value is not None and kind == "float":
                value = float(value)
            elif value is not None and kind == "int":
                value = int(value)
            values.append(value)
        columns[key] = values
    return columns


# GEOS type ids to the geometry type names of GeoJSON and GeoParquet.
_TYPE_NAMES: dict[int, str] = {
    0: "Point",
    1: "LineString",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def _geometry_types(geometries: np.ndarray) -> list[str]:
    """The geometry types present (``["MultiPolygon", "Polygon"]``), sorted; nulls ignored."""
    ids = np.unique(shapely.get_type_id(geometries)) if len(geometries) else []
    return sorted({_TYPE_NAMES[int(i)] for i in ids if i >= 0})


# -- staging -----------------------------------------------------------------------


@contextlib.contextmanager
def _staged(path: Path, *, shapefile: bool = False) -> Iterator[Path]:
    """A path in a private folder beside ``path``; its files replace the target on success."""
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "No such folder", str(path.parent))
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield folder / path.name
        written = sorted(folder.iterdir())
        if shapefile:
            # A stale .prj or index of an older file of the same name would describe
            # the new one wrongly.
            names = {p.name for p in written}
            for suffix in _SHAPEFILE_PARTS:
                old = path.with_suffix(suffix)
                if old.name not in names:
                    old.unlink(missing_ok=True)
        for item in written:
            item.replace(path.parent / item.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- GeoJSON -----------------------------------------------------------------------


def _geojson(
    geometries: np.ndarray, features: FeatureSet, columns: dict[str, list], layer: str, path: Path
) -> None:
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    if not columns:
        rows = [{} for _ in range(len(geometries))]
    with path.open("wb") as out:
        write_geojson(FeatureSet(geometries, rows, features.crs), out, name=layer)
        out.write(b"\n")


# -- GDAL formats --------------------------------------------------------------------

_NUMPY_TYPES: dict[FieldType, Any] = {"int": np.int64, "float": np.float64, "bool": np.bool_}


def _field_arrays(
    columns: dict[str, list], schema: Mapping[str, FieldType]
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    arrays: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    for key, values in columns.items():
        kind = schema[key]
        missing = np.array([v is None for v in values], dtype=bool)
        if kind == "str":
            arrays.append(np.array(values, dtype=object))
            masks.append(None)
            continue
        filler = np.nan if kind == "float" else 0
        dense = [filler if v is None else v for v in values]
        arrays.append(np.array(dense, dtype=_NUMPY_TYPES[kind]))
        masks.append(missing if missing.any() else None)
    return arrays, masks


def _shapefile_names(names: list[str]) -> list[str]:
    """Field names cut to the Shapefile's 10 characters, kept unique."""
    out: list[str] = []
    for name in names:
        short = name[:_SHAPEFILE_FIELD_CHARS]
        n = 1
        while short.lower() in {o.lower() for o in out}:
            tag = f"_{n}"
            short = name[: _SHAPEFILE_FIELD_CHARS - len(tag)] + tag
            n += 1
        out.append(short)
    return out


def _write_ogr(
    path: Path,
    fmt: VectorFormat,
    geometries: np.ndarray,
    crs: CRS | None,
    columns: dict[str, list],
    schema: Mapping[str, FieldType],
    layer: str,
) -> None:
    from pyogrio import raw

    types = _geometry_types(geometries)
    multi = "MultiPolygon" in types and set(types) <= {"Polygon", "MultiPolygon"}
    if not types or set(types) <= {"Polygon", "MultiPolygon"}:
        geometry_type = "MultiPolygon" if multi else "Polygon"
    elif fmt.name == "shp":
        raise InvalidRequest(
            f"A Shapefile holds one kind of geometry, but these features mix {', '.join(types)}. "
            "Write a GeoPackage (.gpkg) instead."
        )
    else:
        geometry_type = "Unknown"
    arrays, masks = _field_arrays(columns, schema)
    names = list(columns)
    options: dict[str, Any] = {}
    if fmt.name == "shp":
        names = _shapefile_names(names)
        options["encoding"] = "UTF-8"
    else:
        options["layer"] = layer
    wkb = shapely.to_wkb(geometries, flavor="iso") if len(geometries) else np.empty(0, object)
    with warnings.catch_warnings():
        # Pixel-space results have no CRS on purpose.
        warnings.filterwarnings("ignore", message=".*'crs' was not provided", category=UserWarning)
        raw.write(
            str(path),
            np.asarray(wkb, dtype=object),
            arrays,
            names,
            field_mask=masks if any(m is not None for m in masks) else None,
            driver=fmt.driver,
            geometry_type=geometry_type,
            crs=crs.to_wkt() if crs is not None else None,
            promote_to_multi=multi,
            **options,
        )


# -- GeoParquet ----------------------------------------------------------------------


def geoparquet_metadata(geometries: np.ndarray, crs: CRS | None) -> dict[str, Any]:
    """The ``geo`` file metadata of GeoParquet 1.1 for one WKB ``geometry`` column.

    ``crs`` is PROJJSON, or JSON null for pixel coordinates (an unknown CRS, as
    the specification says; absent would mean WGS 84).
    """
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": _geometry_types(geometries),
        "crs": crs.to_json_dict() if crs is not None else None,
        "orientation": "counterclockwise",
        "edges": "planar",
    }
    if len(geometries) and not shapely.is_empty(geometries).all():
        column["bbox"] = [float(v) for v in shapely.total_bounds(geometries)]
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


def _write_geoparquet(
    path: Path,
    geometries: np.ndarray,
    crs: CRS | None,
    columns: dict[str, list],
    schema: Mapping[str, FieldType],
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow_types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    fields = [pa.field(key, arrow_types[schema[key]]) for key in columns]
    arrays = [
        pa.array(values, type=f.type) for f, values in zip(fields, columns.values(), strict=True)
    ]
    wkb = shapely.to_wkb(geometries, flavor="iso") if len(geometries) else []
    fields.append(pa.field("geometry", pa.binary()))
    arrays.append(pa.array(list(wkb), type=pa.binary()))
    metadata = {b"geo": json.dumps(geoparquet_metadata(geometries, crs)).encode()}
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
    pq.write_table(table, path)
