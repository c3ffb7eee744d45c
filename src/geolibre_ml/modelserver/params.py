"""Form parameters of the ``/segment/*`` endpoints, as small dependency classes.

Field names, types and defaults are those of segment-geospatial's ``samgeo-api``, plus
our additions (``output_crs``, ``bands``, ``tile_size``, ``tile_overlap``,
``simplify_tolerance``; on text ``prompts``, exemplar ``boxes``, ``box_labels`` and
``point_crs``; on predict ``box_mode``), each off by default. Types and ranges are
checked by FastAPI (422 with a readable detail); what needs parsing (JSON prompts, band
lists) raises a library error (400). Empty strings, which Swagger UI and some form
builders send for fields left blank, count as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import File, Form, UploadFile
from fastapi.exceptions import RequestValidationError

from geolibre_ml.protocol import form_field
from geolibre_ml.segment.errors import InvalidRequest
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    OutputOptions,
    PointBoxPrompt,
    Prompt,
    ReadOptions,
    TextPrompt,
    output_options,
    parse_box_labels,
    parse_box_mode,
    parse_boxes,
    parse_labels,
    parse_points,
    parse_prompts,
    point_box_prompt,
    read_options,
    text_prompt,
)


def _form(name: str, mode: str | None = None) -> Any:
    """The FastAPI form parameter of a protocol field: its default, bounds and description
    come from :mod:`geolibre_ml.protocol`, the one table the sidecar documents too."""
    field = form_field(name, mode)
    kwargs: dict[str, Any] = {"description": field.description}
    if field.minimum is not None:
        kwargs["ge"] = field.minimum
    if field.maximum is not None:
        kwargs["le"] = field.maximum
    if field.type == "number":
        kwargs["allow_inf_nan"] = False
    default = ... if field.required else field.default
    if field.type == "file":
        return File(default, **kwargs)
    return Form(default, **kwargs)


def optional_text(value: str | None) -> str | None:
    """``value`` stripped, or None when it is absent or blank."""
    return value.strip() if value and value.strip() else None


@dataclass
class CommonParams:
    """Fields every ``/segment/*`` endpoint takes."""

    file: UploadFile | None = _form("file")
    source: str | None = _form("source")
    image_id: str | None = _form("image_id")
    model_version: str | None = _form("model_version")
    model_id: str | None = _form("model_id")
    output_format: str = _form("output_format")
    min_size: int = _form("min_size")
    max_size: int | None = _form("max_size")
    output_crs: str | None = _form("output_crs")
    bands: str | None = _form("bands")
    tile_size: int | None = _form("tile_size")
    tile_overlap: int | None = _form("tile_overlap")
    simplify_tolerance: float | None = _form("simplify_tolerance")

    def check_input(self) -> None:
        """Exactly one of ``file``, ``source`` and ``image_id``.

        Raises:
            RequestValidationError: none (422 "file is required", as samgeo-api
                answers a request without its file).
            InvalidRequest: more than one (400).
        """
        given = [
            name
            for name, value in (
                ("file", self.file),
                ("source", optional_text(self.source)),
                ("image_id", optional_text(self.image_id)),
            )
            if value is not None
        ]
        if not given:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", "file"), "msg": "Field required"}]
            )
        if len(given) > 1:
            raise InvalidRequest(
                "Give one of file (an upload), source (a URL or a path on the server) or "
                f"image_id (an image kept by POST /images), not {' and '.join(given)}.",
                fields=tuple(given),
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

    prompt: str | None = _form("prompt", "text")
    confidence_threshold: float = _form("confidence_threshold", "text")
    backend: str | None = _form("backend", "text")
    prompts: str | None = _form("prompts", "text")
    boxes: str | None = _form("boxes", "text")
    box_labels: str | None = _form("box_labels", "text")
    point_crs: str | None = _form("point_crs", "text")

    def to_prompt(self) -> TextPrompt:
        """The text prompt: ``prompt`` then ``prompts``, with exemplar boxes (coordinates
        not yet in pixels).

        Raises:
            RequestValidationError: neither prompt nor prompts (422, as a missing field).
            InvalidRequest: a blank prompt and no prompts, malformed JSON, box labels that
                do not match the boxes, or point_crs without boxes.
        """
        others = parse_prompts(self.prompts)
        if self.prompt is None and not others:
            # As samgeo-api answers a request without its required prompt (422, "prompt is
            # required"): an old client sees no change now that prompts may stand in for it.
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", "prompt"), "msg": "Field required"}]
            )
        boxes = parse_boxes(self.boxes)
        if self.prompt_crs is not None and not boxes:
            raise InvalidRequest(
                "point_crs gives the CRS of exemplar boxes, but no boxes were given: add "
                "boxes or leave point_crs out.",
                fields=("point_crs", "boxes"),
            )
        return text_prompt(
            self.prompt,
            self.confidence_threshold,
            others=others,
            boxes=boxes,
            box_labels=parse_box_labels(self.box_labels),
        )

    @property
    def prompt_crs(self) -> str | None:
        """``point_crs``, or None for pixel coordinates."""
        return optional_text(self.point_crs)


@dataclass
class AutomaticParams(ModeParams):
    """Fields of ``/segment/automatic`` (SAM's generator knobs accepted for compatibility)."""

    foreground: bool = _form("foreground", "automatic")
    unique: bool = _form("unique", "automatic")
    points_per_side: int = _form("points_per_side", "automatic")
    pred_iou_thresh: float = _form("pred_iou_thresh", "automatic")
    stability_score_thresh: float = _form("stability_score_thresh", "automatic")

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

    point_coords: str | None = _form("point_coords", "predict")
    point_labels: str | None = _form("point_labels", "predict")
    boxes: str | None = _form("boxes", "predict")
    point_crs: str | None = _form("point_crs", "predict")
    multimask_output: bool = _form("multimask_output", "predict")
    box_mode: str | None = _form("box_mode", "predict")

    def to_prompt(self) -> PointBoxPrompt:
        """The box/point prompt (coordinates not yet in pixels).

        Raises:
            InvalidRequest: malformed JSON, mismatched labels, no prompt at all, an
                unknown box_mode.
        """
        return point_box_prompt(
            parse_points(self.point_coords),
            parse_labels(self.point_labels),
            parse_boxes(self.boxes),
            multimask_output=self.multimask_output,
            box_mode=parse_box_mode(self.box_mode),
        )

    @property
    def prompt_crs(self) -> str | None:
        """``point_crs``, or None for pixel coordinates."""
        return optional_text(self.point_crs)
