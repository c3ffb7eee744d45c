"""The answer formats of the samgeo-api protocol, built from a :class:`SegmentResult`.

- ``geojson``: polygons with properties and a ``crs`` member (see :mod:`.crs`).
- ``geotiff``: the label image with the input's georeferencing.
- ``png``: the label image as PNG (8-bit up to 255 objects, else 16-bit).
- ``json``: pixel bounding boxes and scores.
- ``detections``: bounding boxes as GeoJSON polygons with scores.

Pixel boxes use pixel-edge coordinates: ``[xmin, ymin, xmax, ymax]`` where
``xmax``/``ymax`` are the right/bottom edges of the last pixel (exclusive), the
same convention as box prompts.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import orjson
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from scipy import ndimage

from .crs import apply_transform, geojson_crs_member, reproject
from .errors import InvalidRequest, quoted
from .features import FeatureSet
from .pipeline import SegmentResult

OutputFormat = Literal["geojson", "geotiff", "png", "json", "detections"]
OUTPUT_FORMATS: tuple[str, ...] = ("geojson", "geotiff", "png", "json", "detections")

MEDIA_TYPES: dict[str, str] = {
    "geojson": "application/json",
    "geotiff": "image/tiff",
    "png": "image/png",
    "json": "application/json",
    "detections": "application/json",
}


def check_format(name: str) -> str:
    """Normalise and validate an ``output_format``.

    Raises:
        InvalidRequest: listing the formats, for an unknown one.
    """
    value = (name or "geojson").strip().lower()
    if value not in OUTPUT_FORMATS:
        raise InvalidRequest(
            f"Unknown output_format {quoted(name)}. Choose one of: {', '.join(OUTPUT_FORMATS)}."
        )
    return value


def geojson_bytes(features: FeatureSet, extra: dict[str, Any] | None = None) -> bytes:
    """Serialise a feature set as a GeoJSON FeatureCollection (UTF-8 bytes).

    Geometries are written by GEOS at full precision (coordinates round-trip
    exactly); a ``crs`` member is added when the features have a CRS (see
    :func:`.crs.geojson_crs_member`). Properties that are not finite numbers
    (NaN, infinity) are left out, as JSON has no way to write them.
    """
    geometries = shapely.to_geojson(np.asarray(features.geometries, dtype=object))
    items = [
        {
            "type": "Feature",
            "id": i + 1,
            "geometry": orjson.Fragment(geometry) if geometry is not None else None,
            "properties": _json_properties(props),
        }
        for i, (geometry, props) in enumerate(zip(geometries, features.properties, strict=True))
    ]
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": items}
    member = geojson_crs_member(features.crs)
    if member is not None:
        collection["crs"] = member
    if extra:
        collection.update(extra)
    return orjson.dumps(collection, option=orjson.OPT_SERIALIZE_NUMPY)


def _json_properties(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` without the values JSON cannot hold (NaN and infinite floats)."""
    if any(isinstance(v, (float, np.floating)) and not math.isfinite(v) for v in props.values()):
        return {
            k: v
            for k, v in props.items()
            if not (isinstance(v, (float, np.floating)) and not math.isfinite(v))
        }
    return props


def label_dtype(labels: np.ndarray) -> str:
    """The smallest unsigned type that holds every label."""
    top = int(labels.max()) if labels.size else 0
    if top <= np.iinfo(np.uint8).max:
        return "uint8"
    if top <= np.iinfo(np.uint16).max:
        return "uint16"
    return "uint32"


def geotiff_bytes(result: SegmentResult) -> bytes:
    """The label image as a tiled, compressed GeoTIFF with the input's georeferencing."""
    labels = result.labels
    dtype = label_dtype(labels)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": labels.shape[1],
        "height": labels.shape[0],
        "count": 1,
        "dtype": dtype,
        "nodata": 0,
        "compress": "deflate",
        "predictor": 2,
        "tiled": labels.shape[0] >= 256 and labels.shape[1] >= 256,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if result.info.crs is not None:
        profile["crs"] = rasterio.crs.CRS.from_wkt(result.info.crs.to_wkt())
    if result.info.georeferenced:
        profile["transform"] = result.info.transform
    with warnings.catch_warnings(), MemoryFile() as memfile:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memfile.open(**profile) as dst:
            dst.write(labels.astype(dtype, copy=False), 1)
            dst.set_band_description(1, "object label (0 = none)")
            dst.update_tags(**{k: str(v) for k, v in result.base_properties.items()})
        return memfile.read()


def png_bytes(result: SegmentResult) -> bytes:
    """The label image as PNG: 8-bit when it fits, else 16-bit.

    Raises:
        InvalidRequest: beyond 65,535 objects, which PNG cannot hold (use geotiff).
    """
    labels = result.labels
    dtype = label_dtype(labels)
    if dtype == "uint32":
        raise InvalidRequest(
            "The result has more than 65,535 objects, more than a PNG can label. "
            "Ask for output_format=geotiff instead."
        )
    with warnings.catch_warnings(), MemoryFile() as memfile:
        # A PNG label image has no georeferencing by design.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memfile.open(
            driver="PNG", width=labels.shape[1], height=labels.shape[0], count=1, dtype=dtype
        ) as dst:
            dst.write(labels.astype(dtype, copy=False), 1)
        return memfile.read()


def _boxes(result: SegmentResult) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(label value, (xmin, ymin, xmax, ymax)) in pixel-edge coordinates, by value."""
    found = []
    for index, slices in enumerate(ndimage.find_objects(result.labels), start=1):
        if slices is None:
            continue
        rows, cols = slices
        found.append((index, (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def _score(result: SegmentResult, value: int) -> float | None:
    if value < len(result.scores) and np.isfinite(result.scores[value]):
        return round(float(result.scores[value]), 4)
    return None


def boxes_json(result: SegmentResult) -> dict[str, Any]:
    """Pixel bounding boxes and scores (the ``json`` format)."""
    detections = []
    for i, (value, (x0, y0, x1, y1)) in enumerate(_boxes(result), start=1):
        item: dict[str, Any] = {
            "id": i,
            "value": value,
            "bbox": [x0, y0, x1, y1],
            "width": x1 - x0,
            "height": y1 - y0,
        }
        score = _score(result, value)
        if score is not None:
            item["score"] = score
        detections.append(item)
    return {
        "image_width": result.info.width,
        "image_height": result.info.height,
        "num_detections": len(detections),
        "detections": detections,
    }


def detections_geojson(result: SegmentResult) -> bytes:
    """Bounding boxes as polygons in the output CRS, with scores (``detections``).

    Each box is the pixel-edge rectangle of an object; its four corners go
    through the raster's transform (so a box on a rotated grid is a rotated
    rectangle) and then to ``output_crs`` when one was asked for.
    """
    boxes = _boxes(result)
    properties = []
    for i, (value, bbox) in enumerate(boxes, start=1):
        props: dict[str, Any] = {"id": i, "value": value}
        score = _score(result, value)
        if score is not None:
            props["score"] = score
        props["bbox_pixel"] = list(bbox)
        props.update(result.base_properties)
        properties.append(props)
    geometries = np.empty(len(boxes), dtype=object)
    if boxes:
        x0, y0, x1, y1 = np.asarray([bbox for _value, bbox in boxes], dtype=np.float64).T
        cols = np.column_stack([x0, x1, x1, x0, x0])
        rows = np.column_stack([y0, y0, y1, y1, y0])
        x, y = apply_transform(result.info.transform, cols.ravel(), rows.ravel())
        rings = shapely.linearrings(
            np.column_stack([x, y]), indices=np.repeat(np.arange(len(boxes)), 5)
        )
        geometries = shapely.orient_polygons(shapely.polygons(rings), exterior_cw=False)
    crs = result.info.crs
    if result.output_crs is not None and crs is not None and len(geometries):
        geometries = reproject(geometries, crs, result.output_crs)
    features = FeatureSet(geometries, properties, result.output_crs)
    return geojson_bytes(features, {"num_detections": len(properties)})


def render(result: SegmentResult, output_format: str) -> bytes:
    """The answer body for ``output_format`` (see :data:`MEDIA_TYPES` for its type)."""
    fmt = check_format(output_format)
    if fmt == "geojson":
        return geojson_bytes(result.features)
    if fmt == "geotiff":
        return geotiff_bytes(result)
    if fmt == "png":
        return png_bytes(result)
    if fmt == "json":
        return orjson.dumps(boxes_json(result))
    return detections_geojson(result)
