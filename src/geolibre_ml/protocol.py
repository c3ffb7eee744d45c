"""The segmentation protocol as data: one table of modes, each with its path and form fields.

segment-geospatial's ``samgeo-api`` protocol has three synchronous endpoints, one per mode
(``/segment/text``, ``/segment/automatic``, ``/segment/predict``), which share a set of
common form fields and add their own. This module holds that table once, so that every
place that lists the endpoints (the sidecar's ``/ml/segment/*`` routes and their OpenAPI,
later ``/ml/jobs/segment/*`` and the model server's routes) is built from it instead of
keeping its own copy.

Standard library only: it is imported by the sidecar, which must not import the engine,
FastAPI's form machinery or the model server, and by the model server.

Names, defaults and descriptions follow ``geolibre_ml.modelserver.params``; a test checks
that the model server's OpenAPI lists exactly these fields for each path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: JSON-schema types a form field may have (``file`` is a multipart upload).
FIELD_TYPES = frozenset({"string", "integer", "number", "boolean", "file"})


@dataclass(frozen=True)
class FormField:
    """One field of a multipart ``/segment/*`` form.

    Attributes:
        name: the form field's name, e.g. ``min_size``.
        type: its JSON-schema type (``string``, ``integer``, ``number``, ``boolean``), or
            ``file`` for the uploaded image.
        description: what it means, one or two sentences, units included.
        default: the value the server uses when the field is absent (``None``: off, or
            chosen by the server as the description says).
        required: whether a request without it is refused.
        minimum: smallest value accepted (numbers only; ``None``: no bound).
        maximum: largest value accepted (numbers only; ``None``: no bound).
    """

    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"{self.name}: type {self.type!r} is not one of {FIELD_TYPES}")

    def json_schema(self) -> dict[str, Any]:
        """The field as a JSON-schema property of a ``multipart/form-data`` body."""
        schema: dict[str, Any]
        if self.type == "file":
            # OpenAPI 3.0's spelling (format) and 3.1's (contentMediaType), for any viewer.
            schema = {
                "type": "string",
                "format": "binary",
                "contentMediaType": "application/octet-stream",
            }
        else:
            schema = {"type": self.type}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Mode:
    """One segmentation mode of the protocol.

    Attributes:
        name: ``text``, ``automatic`` or ``predict``.
        path: the model server's path for it, e.g. ``/segment/text``.
        summary: one line saying what the mode does.
        own_fields: the fields only this mode takes (the common ones come first in
            :attr:`fields`).
    """

    name: str
    path: str
    summary: str
    own_fields: tuple[FormField, ...]

    @property
    def fields(self) -> tuple[FormField, ...]:
        """Every field of the mode's form: the common ones, then the mode's own."""
        return COMMON_FIELDS + self.own_fields

    def field_names(self) -> list[str]:
        """The names of :attr:`fields`, in order."""
        return [f.name for f in self.fields]

    def form_schema(self) -> dict[str, Any]:
        """The form as a JSON schema (an object with one property per field)."""
        return {
            "type": "object",
            "title": f"Segment {self.name}",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
        }

    def request_body(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` of the mode's endpoint (a multipart form)."""
        return {
            "required": True,
            "content": {"multipart/form-data": {"schema": self.form_schema()}},
        }


#: Fields every ``/segment/*`` endpoint takes, in the model server's order.
COMMON_FIELDS: tuple[FormField, ...] = (
    FormField(
        "file",
        "file",
        "The image: GeoTIFF (any band count and data type), PNG or JPEG. Required unless "
        "`source` is given.",
    ),
    FormField(
        "source",
        "string",
        "Instead of `file`: an http(s) URL of a (cloud-optimised) GeoTIFF, read by range "
        "requests, or an absolute local path under the server's GEOLIBRE_ML_DATA_ROOTS "
        "folders (anything else is refused with 403).",
    ),
    FormField(
        "image_id",
        "string",
        "Instead of `file` or `source`: an image kept by POST /images (our addition), so "
        "no pixels are sent again and its prepared tiles are reused.",
    ),
    FormField(
        "model_version",
        "string",
        "`sam3` or `classic`. Absent: the server's default (`sam3` when it is ready, else "
        "`classic`); see GET /models.",
    ),
    FormField("model_id", "string", "Model id within the version (GET /models lists them)."),
    FormField(
        "output_format",
        "string",
        "`geojson` (polygons), `geotiff` (label raster, georeferenced like the input), `png` "
        "(label image), `json` (pixel boxes and scores) or `detections` (box polygons with "
        "scores, GeoJSON).",
        default="geojson",
    ),
    FormField("min_size", "integer", "Smallest object kept, in pixels.", default=0, minimum=0),
    FormField("max_size", "integer", "Largest object kept, in pixels (0 or less: no limit)."),
    FormField(
        "output_crs",
        "string",
        "Reproject vector output to this CRS, e.g. `EPSG:4326`. Absent: the raster's own CRS.",
    ),
    FormField(
        "bands",
        "string",
        "1-based bands shown to the model as red, green, blue, e.g. `4,3,2` (one band: grey). "
        "Absent: chosen from the file's metadata.",
    ),
    FormField(
        "tile_size",
        "integer",
        "Edge, in pixels, of the square tiles a raster larger than one tile is segmented "
        "in, each at full resolution (objects across tile borders come back whole). "
        "Absent: the model's native input size (sam3: 1008; classic: 1024).",
        minimum=1,
    ),
    FormField(
        "tile_overlap",
        "integer",
        "Pixels each tile shares with its neighbour, where the two must agree on an object "
        "to join it; smaller than tile_size. Absent: the model's (sam3: an eighth of the "
        "tile; classic: 64).",
        minimum=0,
    ),
    FormField(
        "simplify_tolerance",
        "number",
        "Simplify polygons by this distance, in output CRS units (pixels for an image without "
        "georeferencing). Absent or 0: exact pixel edges.",
        minimum=0,
    ),
)

#: Most concepts one ``/segment/text`` request may name (``prompt`` plus ``prompts``);
#: ``geolibre_ml.segment.prompts.MAX_CONCEPTS`` is the same number (a test checks).
MAX_CONCEPTS = 32

TEXT = Mode(
    "text",
    "/segment/text",
    "Find every instance of what `prompt` (or each of `prompts`) names (e.g. `water`, `trees`).",
    (
        FormField(
            "prompt",
            "string",
            "What to find, in words, e.g. `water` or `trees`. May be left out when `prompts` "
            "names the concepts.",
        ),
        FormField(
            "confidence_threshold",
            "number",
            "Keep objects scoring at least this (0-1): lower finds more, higher is stricter.",
            default=0.5,
            minimum=0,
            maximum=1,
        ),
        FormField(
            "backend",
            "string",
            "samgeo-api's SAM 3 implementation (`meta` or `transformers`); accepted for "
            "compatibility, the server picks its own.",
        ),
        FormField(
            "prompts",
            "string",
            'JSON list of concepts, e.g. `["trees", "water"]`, answered on one encoded image '
            "after `prompt` (if any); duplicates removed, at most "
            f"{MAX_CONCEPTS} in all. Each feature's `prompt` is the concept that found it.",
        ),
        FormField(
            "boxes",
            "string",
            "JSON `[[xmin, ymin, xmax, ymax], ...]`: exemplar boxes, examples of what to find "
            "(or, with box_labels 0, of what not to); pixels unless point_crs. `sam3` only.",
        ),
        FormField(
            "box_labels",
            "string",
            "JSON `[1, 0, ...]`, one per box: 1 positive exemplar, 0 negative (absent: all 1).",
        ),
        FormField(
            "point_crs",
            "string",
            "CRS of boxes, e.g. `EPSG:4326`. Absent: pixel coordinates.",
        ),
    ),
)

AUTOMATIC = Mode(
    "automatic",
    "/segment/automatic",
    "Segment every distinct region of the image, without a prompt.",
    (
        FormField(
            "foreground",
            "boolean",
            "With unique=false: true answers the area the objects cover, false the rest.",
            default=True,
        ),
        FormField(
            "unique",
            "boolean",
            "Give each object its own label value; false: one binary mask (see foreground).",
            default=True,
        ),
        FormField(
            "points_per_side",
            "integer",
            "SAM: prompt points sampled per image side.",
            default=32,
            minimum=1,
        ),
        FormField(
            "pred_iou_thresh",
            "number",
            "SAM: predicted-IoU cut-off (0-1).",
            default=0.8,
            minimum=0,
            maximum=1,
        ),
        FormField(
            "stability_score_thresh",
            "number",
            "SAM: stability cut-off (0-1).",
            default=0.95,
            minimum=0,
            maximum=1,
        ),
    ),
)

PREDICT = Mode(
    "predict",
    "/segment/predict",
    "Segment the objects designated by `boxes` and/or `point_coords`, in pixels or in `point_crs`.",
    (
        FormField(
            "point_coords",
            "string",
            "JSON `[[x, y], ...]`: pixels (x right, y down) unless point_crs.",
        ),
        FormField(
            "point_labels",
            "string",
            "JSON `[1, 0, ...]`: 1 foreground, 0 background (absent: all 1).",
        ),
        FormField(
            "boxes", "string", "JSON `[[xmin, ymin, xmax, ymax], ...]`: pixels unless point_crs."
        ),
        FormField(
            "point_crs",
            "string",
            "CRS of point_coords and boxes, e.g. `EPSG:4326`. Absent: pixel coordinates.",
        ),
        FormField("multimask_output", "boolean", "SAM: several masks per prompt.", default=False),
        FormField(
            "box_mode",
            "string",
            "What a box asks for: `similar` (every object like the one in the box, as "
            "samgeo-api does with SAM 3) or `object` (just the object in the box). Absent: the "
            "model's default (`sam3`: similar; `classic`: object, the only one it answers).",
        ),
    ),
)

#: The protocol's modes by name, in the order the endpoints are listed.
MODES: dict[str, Mode] = {mode.name: mode for mode in (TEXT, AUTOMATIC, PREDICT)}


def form_field(name: str, mode: str | None = None) -> FormField:
    """The field ``name`` of ``mode``'s form (a common field when ``mode`` is None).

    Raises:
        KeyError: for a field the form does not have.
    """
    fields = MODES[mode].fields if mode else COMMON_FIELDS
    for item in fields:
        if item.name == name:
            return item
    raise KeyError(f"{mode or 'common'} form has no field {name!r}")
