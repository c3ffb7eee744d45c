"""Form parameters of the ``/segment/*`` endpoints, as small dependency classes.

Field names, types and defaults are those of segment-geospatial's ``samgeo-api``, plus
our additions (``output_crs``, ``bands``, ``tile_size``, ``tile_overlap``,
``simplify_tolerance``), each off by default. Types and ranges are checked by FastAPI
(422 with a readable detail); what needs parsing (JSON prompts, band lists) raises a
library error (400). Empty strings, which Swagger UI and some form builders send for
fields left blank, count as absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import File, Form, UploadFile

from geolibre_ml.segment.errors import InvalidRequest
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    OutputOptions,
    PointBoxPrompt,
    Prompt,
    ReadOptions,
    TextPrompt,
    output_options,
    parse_boxes,
    parse_labels,
    parse_points,
    point_box_prompt,
    read_options,
)


def optional_text(value: str | None) -> str | None:
    """``value`` stripped, or None when it is absent or blank."""
    return value.strip() if value and value.strip() else None


@dataclass
class CommonParams:
    """Fields every ``/segment/*`` endpoint takes."""

    file: UploadFile = File(
        ..., description="The image: GeoTIFF (any band count and data type), PNG or JPEG."
    )
    model_version: str | None = Form(
        None,
        description="`sam3` or `classic`. Absent: the server's default "
        "(`sam3` when it is ready, else `classic`); see GET /models.",
    )
    model_id: str | None = Form(
        None, description="Model id within the version (GET /models lists them)."
    )
    output_format: str = Form(
        "geojson",
        description="`geojson` (polygons), `geotiff` (label raster, georeferenced like the "
        "input), `png` (label image), `json` (pixel boxes and scores) or `detections` "
        "(box polygons with scores, GeoJSON).",
    )
    min_size: int = Form(0, ge=0, description="Smallest object kept, in pixels.")
    max_size: int | None = Form(
        None, description="Largest object kept, in pixels (0 or less: no limit)."
    )
    output_crs: str | None = Form(
        None,
        description="Reproject vector output to this CRS, e.g. `EPSG:4326`. "
        "Absent: the raster's own CRS.",
    )
    bands: str | None = Form(
        None,
        description="1-based bands shown to the model as red, green, blue, e.g. `4,3,2` "
        "(one band: grey). Absent: chosen from the file's metadata.",
    )
    tile_size: int | None = Form(
        None,
        ge=1,
        description="Tile edge in pixels. Accepted for compatibility and not yet used: every "
        "raster is segmented in one piece (tiling is on the roadmap).",
    )
    tile_overlap: int | None = Form(
        None,
        ge=0,
        description="Overlap between tiles, in pixels. Accepted for compatibility and not yet "
        "used (see tile_size).",
    )
    simplify_tolerance: float | None = Form(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Simplify polygons by this distance, in output CRS units "
        "(pixels for an image without georeferencing). Absent or 0: exact pixel edges.",
    )

    def read_options(self) -> ReadOptions:
        """How to read the raster (see :func:`~geolibre_ml.segment.prompts.read_options`)."""
        return read_options(self.bands, self.tile_size, self.tile_overlap)

    def output_options(self) -> OutputOptions:
        """How to shape the answer (see :func:`~geolibre_ml.segment.prompts.output_options`)."""
        return output_options(
            self.min_size, self.max_size, self.output_crs, self.simplify_tolerance
        )


class ModeParams:
    """What the fields of each mode's endpoint give: a prompt, and the CRS of its
    coordinates (None: pixels, or no coordinates)."""

    prompt_crs: str | None = None

    def to_prompt(self) -> Prompt:
        """The prompt the fields describe."""
        raise NotImplementedError


@dataclass
class TextParams(ModeParams):
    """Fields of ``/segment/text``."""

    prompt: str = Form(..., description="What to find, in words, e.g. `water` or `trees`.")
    confidence_threshold: float = Form(
        0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Keep objects scoring at least this (0-1): lower finds more, "
        "higher is stricter.",
    )
    backend: str | None = Form(
        None,
        description="samgeo-api's SAM 3 implementation (`meta` or `transformers`); accepted "
        "for compatibility, the server picks its own.",
    )

    def to_prompt(self) -> TextPrompt:
        """The text prompt.

        Raises:
            InvalidRequest: for a prompt of only blanks.
        """
        text = " ".join(self.prompt.split())
        if not text:
            raise InvalidRequest("prompt is empty: name what to find, e.g. water or trees.")
        return TextPrompt(text, self.confidence_threshold)


@dataclass
class AutomaticParams(ModeParams):
    """Fields of ``/segment/automatic`` (SAM's generator knobs accepted for compatibility)."""

    foreground: bool = Form(True, description="Keep foreground objects only.")
    unique: bool = Form(True, description="Give each object its own label value.")
    points_per_side: int = Form(32, ge=1, description="SAM: prompt points sampled per image side.")
    pred_iou_thresh: float = Form(
        0.8, ge=0, le=1, allow_inf_nan=False, description="SAM: predicted-IoU cut-off (0-1)."
    )
    stability_score_thresh: float = Form(
        0.95, ge=0, le=1, allow_inf_nan=False, description="SAM: stability cut-off (0-1)."
    )

    def to_prompt(self) -> AutomaticPrompt:
        """The automatic prompt."""
        return AutomaticPrompt(
            self.foreground,
            self.unique,
            self.points_per_side,
            self.pred_iou_thresh,
            self.stability_score_thresh,
        )


@dataclass
class PredictParams(ModeParams):
    """Fields of ``/segment/predict``."""

    point_coords: str | None = Form(
        None, description="JSON `[[x, y], ...]`: pixels (x right, y down) unless point_crs."
    )
    point_labels: str | None = Form(
        None, description="JSON `[1, 0, ...]`: 1 foreground, 0 background (absent: all 1)."
    )
    boxes: str | None = Form(
        None,
        description="JSON `[[xmin, ymin, xmax, ymax], ...]`: pixels unless point_crs.",
    )
    point_crs: str | None = Form(
        None,
        description="CRS of point_coords and boxes, e.g. `EPSG:4326`. Absent: pixel coordinates.",
    )
    multimask_output: bool = Form(False, description="SAM: several masks per prompt.")

    def to_prompt(self) -> PointBoxPrompt:
        """The box/point prompt (coordinates not yet in pixels).

        Raises:
            InvalidRequest: malformed JSON, mismatched labels, no prompt at all.
        """
        return point_box_prompt(
            parse_points(self.point_coords),
            parse_labels(self.point_labels),
            parse_boxes(self.boxes),
            multimask_output=self.multimask_output,
        )

    @property
    def prompt_crs(self) -> str | None:
        """``point_crs``, or None for pixel coordinates."""
        return optional_text(self.point_crs)
