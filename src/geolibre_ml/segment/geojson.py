"""The one GeoJSON serializer, for the model server's answers and for GeoJSON files alike.

A FeatureCollection is written as a stream, a batch of features at a time, so an
answer of any size never exists whole in memory. Geometries are written by GEOS at
full precision (coordinates round-trip exactly). The collection carries a ``crs``
member whenever the features have a CRS (see :func:`.crs.geojson_crs_member`; for
WGS 84 too, which GDAL and QGIS read as longitude/latitude), an optional ``name``
(the layer name), and any extra members. Property values that JSON cannot hold (NaN
and infinite floats) are left out; None is written as null.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
import orjson
import shapely

from .crs import geojson_crs_member
from .features import FeatureSet

#: Features serialised per write.
BATCH = 2000


def write_geojson(
    features: FeatureSet,
    out: BinaryIO,
    *,
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``features`` to the binary stream ``out`` as one FeatureCollection (UTF-8).

    Args:
        features: geometries (written as they are: orient them before), properties, CRS.
        out: where the bytes go.
        name: the collection's ``name`` member (a layer name), or None for none.
        extra: more top-level members (e.g. ``num_detections``).
    """
    head: dict[str, Any] = {"type": "FeatureCollection"}
    if name:
        head["name"] = name
    member = geojson_crs_member(features.crs)
    if member is not None:
        head["crs"] = member
    if extra:
        head.update(extra)
    # The header's closing brace is replaced by the features array.
    out.write(orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)[:-1] + b',"features":[')
    geometries = np.asarray(features.geometries, dtype=object)
    for start in range(0, len(geometries), BATCH):
        texts = shapely.to_geojson(geometries[start : start + BATCH])
        items = [
            {
                "type": "Feature",
                "id": start + i + 1,
                "geometry": orjson.Fragment(text) if text is not None else None,
                "properties": _json_properties(props),
            }
            for i, (text, props) in enumerate(
                zip(texts, features.properties[start : start + BATCH], strict=True)
            )
        ]
        body = orjson.dumps(items, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        if start and body:
            out.write(b",")
        out.write(body)
    out.write(b"]}")


def geojson_bytes(
    features: FeatureSet, extra: Mapping[str, Any] | None = None, *, name: str | None = None
) -> bytes:
    """:func:`write_geojson` into memory (for small collections and tests)."""
    buffer = io.BytesIO()
    write_geojson(features, buffer, name=name, extra=extra)
    return buffer.getvalue()


def _json_properties(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """``props`` without the values JSON cannot hold (NaN and infinite floats)."""
    if any(isinstance(v, (float, np.floating)) and not math.isfinite(v) for v in props.values()):
        return {
            k: v
            for k, v in props.items()
            if not (isinstance(v, (float, np.floating)) and not math.isfinite(v))
        }
    return props
