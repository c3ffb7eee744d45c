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

import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from .crs import apply_transform, reproject
from .errors import InvalidRequest, quoted
from .features import FeatureSet
from .geojson import write_geojson
from .results import SegmentResult

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


def label_dtype(labels: np.ndarray | int) -> str:
    """The smallest unsigned type that holds every label (an array, or its largest value)."""
    if isinstance(labels, np.ndarray):
        top = int(labels.max()) if labels.size else 0
    else:
        top = int(labels)
    if top <= np.iinfo(np.uint8).max:
        return "uint8"
    if top <= np.iinfo(np.uint16).max:
        return "uint16"
    return "uint32"


#: Rows of the label image rasterized and written at a time: the GeoTIFF answer's
#: memory is this many rows of the raster, whatever its size.
GEOTIFF_ROWS = 1024


def write_geotiff(result: SegmentResult, path: Path) -> None:
    """The label image as a tiled, compressed GeoTIFF with the input's georeferencing,
    written :data:`GEOTIFF_ROWS` rows at a time (the whole label image is never held)."""
    width, height = result.info.width, result.info.height
    dtype = label_dtype(result.objects.top_value)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": dtype,
        "nodata": 0,
        "compress": "deflate",
        "predictor": 2,
        "tiled": height >= 256 and width >= 256,
        "blockxsize": 256,
        "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    if result.info.crs is not None:
        profile["crs"] = rasterio.crs.CRS.from_wkt(result.info.crs.to_wkt())
    if result.info.georeferenced:
        profile["transform"] = result.info.transform
    with warnings.catch_warnings(), rasterio.open(path, "w", **profile) as dst:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for row in range(0, height, GEOTIFF_ROWS):
            rows = min(GEOTIFF_ROWS, height - row)
            labels = result.label_window(0, row, width, rows)
            dst.write(labels.astype(dtype, copy=False), 1, window=Window(0, row, width, rows))
        dst.set_band_description(1, "object label (0 = none)")
        tags = {k: str(v) for k, v in result.base_properties.items()}
        if result.several_concepts:
            # One label raster for several concepts: the tags list them all, and which
            # value is which concept is in the vector answers.
            tags["prompt"] = ", ".join(result.concepts)
        dst.update_tags(**tags)


def write_png(result: SegmentResult, path: Path) -> None:
    """The label image as PNG: 8-bit when it fits, else 16-bit.

    Raises:
        InvalidRequest: beyond 65,535 objects, which PNG cannot hold (use geotiff).
    """
    dtype = label_dtype(result.objects.top_value)
    if dtype == "uint32":
        raise InvalidRequest(
            "The result has more than 65,535 objects, more than a PNG can label. "
            "Ask for output_format=geotiff instead."
        )
    labels = result.labels
    with warnings.catch_warnings():
        # A PNG label image has no georeferencing by design.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="PNG",
            width=labels.shape[1],
            height=labels.shape[0],
            count=1,
            dtype=dtype,
        ) as dst:
            dst.write(labels.astype(dtype, copy=False), 1)


def _boxes(result: SegmentResult) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(label value, (xmin, ymin, xmax, ymax)) in pixel-edge coordinates, by value.

    Each object's own box: where objects overlap, a box covers its whole object,
    including pixels that a higher-scoring object wins in the label image.
    """
    return [(value, box) for value, box, _score in result.boxes()]


def _score(result: SegmentResult, value: int) -> float | None:
    if value < len(result.scores) and np.isfinite(result.scores[value]):
        return round(float(result.scores[value]), 4)
    return None


def _concepts(result: SegmentResult) -> dict[int, str]:
    """The concept that found each object, by value (objects without one left out)."""
    return {o.value: o.origin.prompt for o in result.objects if o.origin.prompt is not None}


def boxes_json(result: SegmentResult) -> dict[str, Any]:
    """Pixel bounding boxes and scores (the ``json`` format); with several text concepts,
    each detection's ``prompt`` too (a field samgeo-api's single prompt never needs)."""
    detections = []
    concepts = _concepts(result) if result.several_concepts else {}
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
        if value in concepts:
            item["prompt"] = concepts[value]
        detections.append(item)
    return {
        "image_width": result.info.width,
        "image_height": result.info.height,
        "num_detections": len(detections),
        "detections": detections,
    }


def detections_features(result: SegmentResult) -> FeatureSet:
    """Bounding boxes as polygons in the output CRS, with scores (``detections``).

    Each box is the pixel-edge rectangle of an object; its four corners go
    through the raster's transform (so a box on a rotated grid is a rotated
    rectangle) and then to ``output_crs`` when one was asked for.
    """
    boxes = _boxes(result)
    concepts = _concepts(result)
    properties = []
    for i, (value, bbox) in enumerate(boxes, start=1):
        props: dict[str, Any] = {"id": i, "value": value}
        score = _score(result, value)
        if score is not None:
            props["score"] = score
        props["bbox_pixel"] = list(bbox)
        props.update(result.base_properties)
        if value in concepts:
            props["prompt"] = concepts[value]
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
    return FeatureSet(geometries, properties, result.output_crs)


def answer_name(result: SegmentResult) -> str:
    """The layer name of a GeoJSON answer: the source's name without its extension."""
    return Path(result.info.name).stem or "segmentation"


def write(result: SegmentResult, output_format: str, path: str | Path) -> Path:
    """Write the answer for ``output_format`` to ``path`` (see :data:`MEDIA_TYPES`).

    Answers are written to a file, never built whole in memory: the model server
    streams the file back, and jobs keep it.
    """
    fmt = check_format(output_format)
    path = Path(path)
    if fmt == "geotiff":
        write_geotiff(result, path)
    elif fmt == "png":
        write_png(result, path)
    elif fmt == "json":
        path.write_bytes(orjson.dumps(boxes_json(result)))
    else:
        with path.open("wb") as out:
            if fmt == "geojson":
                write_geojson(result.features, out, name=answer_name(result))
            else:
                detections = detections_features(result)
                write_geojson(
                    detections,
                    out,
                    name=answer_name(result),
                    extra={"num_detections": len(detections)},
                )
    return path


def render(result: SegmentResult, output_format: str) -> bytes:
    """The answer body for ``output_format``, in memory (small answers, tests)."""
    with tempfile.TemporaryDirectory(prefix="geolibre-ml-answer-") as folder:
        return write(result, output_format, Path(folder) / "answer").read_bytes()
