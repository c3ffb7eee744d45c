"""What a caller asks for: the three prompt kinds and the options that shape the answer.

All of these are small frozen dataclasses of plain values so that a run can be
described, logged, hashed and sent to another process (the per-tile work of a
distributed run is a pure function of a window, a prompt and model settings).
Coordinates in prompts are **pixel coordinates of the full raster**: x to the
right, y down, with (0, 0) the top-left corner of the top-left pixel. Map
coordinates are converted before a prompt is built (see :mod:`.crs`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from .crs import map_to_pixel, parse_crs
from .errors import InvalidRequest

if TYPE_CHECKING:
    from pyproj import CRS

    from .raster import RasterInfo

Mode = Literal["text", "automatic", "predict"]
MODES: tuple[Mode, ...] = ("text", "automatic", "predict")


@dataclass(frozen=True)
class TextPrompt:
    """Find every instance of a concept named in words (``"water"``, ``"trees"``).

    ``confidence_threshold`` (0-1) keeps objects whose score reaches it; lower finds
    more, higher is stricter. What a score means is the backend's to document.
    """

    text: str
    confidence_threshold: float = 0.5
    mode: Mode = field(default="text", init=False)


@dataclass(frozen=True)
class AutomaticPrompt:
    """Segment every distinct region of the image without a prompt.

    The SAM-style knobs (``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``) are accepted for protocol compatibility; a backend
    uses the ones that mean something to it.
    """

    foreground: bool = True
    unique: bool = True
    points_per_side: int = 32
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    mode: Mode = field(default="automatic", init=False)


@dataclass(frozen=True)
class PointBoxPrompt:
    """Segment the object(s) designated by boxes and/or foreground/background points.

    ``points`` are ``(x, y)`` pixel coordinates with ``labels`` 1 (foreground) or 0
    (background); ``boxes`` are ``(xmin, ymin, xmax, ymax)`` in pixel coordinates.
    Each box yields one object; points inside a box refine that box, points outside
    every box form one more object of their own.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    multimask_output: bool = False
    mode: Mode = field(default="predict", init=False)


Prompt = TextPrompt | AutomaticPrompt | PointBoxPrompt


@dataclass(frozen=True)
class OutputOptions:
    """Options that shape the answer rather than the model's work.

    Sizes are in pixels of the input raster; ``simplify_tolerance`` is in units of
    the output CRS (the raster's CRS, or ``output_crs`` when given, or pixels for a
    raster without georeferencing).
    """

    min_size: int = 0
    max_size: int | None = None
    output_crs: str | None = None
    simplify_tolerance: float | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How the raster is read.

    ``bands`` are 1-based band indexes to show the model as red, green and blue
    (e.g. ``(4, 3, 2)``); ``None`` picks them from the file's metadata.
    ``tile_size`` and ``tile_overlap`` (pixels) split a large raster into windows.
    """

    bands: tuple[int, ...] | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None


#: Most digits an integer in a JSON prompt field may have: pixel and map
#: coordinates need far fewer, and Python's int() of a huge literal is slow.
MAX_INT_DIGITS = 20
#: Deepest nesting of a JSON prompt field (``[[x, y]]`` is 2).
MAX_JSON_DEPTH = 8


class _TooLarge(ValueError):
    """An integer literal with more digits than any coordinate has."""


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLarge(literal)
    return int(literal)


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Parse ``bands``: 1-based band numbers, ``"4,3,2"``, ``"4 3 2"`` or ``"[4, 3, 2]"``.

    The one parser of this field, for the HTTP form and the command line alike.

    Raises:
        InvalidRequest: for anything but one or three positive integers.
    """
    text = text.strip() if text and text.strip() else None
    if text is None:
        return None
    shown = text if len(text) <= 40 else text[:39] + "…"
    items = text.strip("[]").replace(",", " ").split()
    try:
        values = tuple(_bounded_int(v) for v in items)
    except ValueError:
        raise InvalidRequest(
            f"bands {shown!r} must be 1-based band numbers separated by commas, e.g. 4,3,2.",
            fields="bands",
        ) from None
    if len(values) not in (1, 3):
        raise InvalidRequest(
            f"bands {shown!r} lists {len(values)} band(s): give 3 band numbers (shown as red, "
            "green, blue) or 1 (shown as grey).",
            fields="bands",
        )
    if any(v < 1 for v in values):
        raise InvalidRequest(f"bands {shown!r}: band numbers start at 1.", fields="bands")
    return values


def read_options(
    bands: str | None = None, tile_size: int | None = None, tile_overlap: int | None = None
) -> ReadOptions:
    """How to read the raster, from the request's fields (HTTP and CLI alike).

    Raises:
        InvalidRequest: a band list that cannot be parsed, or an overlap that is not
            smaller than the tile.
    """
    if tile_size is not None and tile_overlap is not None and tile_overlap >= tile_size:
        raise InvalidRequest(
            f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size}).",
            fields=("tile_overlap", "tile_size"),
        )
    return ReadOptions(bands=parse_bands(bands), tile_size=tile_size, tile_overlap=tile_overlap)


def output_options(
    min_size: int = 0,
    max_size: int | None = None,
    output_crs: str | None = None,
    simplify_tolerance: float | None = None,
) -> OutputOptions:
    """How to shape the answer, from the request's fields (HTTP and CLI alike).

    A ``max_size`` of 0 or less means no limit, as does a ``simplify_tolerance``
    of 0; blank strings count as absent. ``output_crs`` is checked here, before any
    pixel is read.

    Raises:
        InvalidRequest: ``max_size`` below ``min_size``, or an unknown ``output_crs``.
    """
    max_size = max_size if max_size and max_size > 0 else None
    if max_size is not None and max_size < min_size:
        raise InvalidRequest(
            f"max_size ({max_size}) is smaller than min_size ({min_size}): no object "
            "could be kept. Leave max_size empty or 0 for no upper limit.",
            fields=("max_size", "min_size"),
        )
    output_crs = output_crs.strip() if output_crs and output_crs.strip() else None
    if output_crs is not None:
        parse_crs(output_crs, field="output_crs")
    return OutputOptions(
        min_size=min_size,
        max_size=max_size,
        output_crs=output_crs,
        simplify_tolerance=simplify_tolerance or None,
    )


def _parse_json(text: str, field: str, example: str) -> object:
    # Nesting is measured before parsing: the parser recurses once per bracket.
    depth = deepest = 0
    for char in text:
        if char == "[" or char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]" or char == "}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"{field} is nested too deeply ({deepest} levels of brackets). "
            f"Expected something like {example}.",
            fields=field,
        )
    try:
        return json.loads(text, parse_int=_bounded_int)
    except _TooLarge:
        raise InvalidRequest(
            f"{field} holds an integer too large to be a coordinate or label (more than "
            f"{MAX_INT_DIGITS} digits). Expected something like {example}.",
            fields=field,
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{field} is not valid JSON ({exc.msg} at character {exc.pos}). "
            f"Expected something like {example}.",
            fields=field,
        ) from None


def _number_rows(value: object, width: int, field: str, example: str) -> list[tuple[float, ...]]:
    rows = value if isinstance(value, list) else None
    if rows and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rows):
        rows = [rows] if len(rows) == width else None
    if not rows or not all(
        isinstance(row, list)
        and len(row) == width
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        for row in rows
    ):
        raise InvalidRequest(
            f"{field} must be a JSON list of {width}-number lists, like {example}.", fields=field
        )
    out = [tuple(float(v) for v in row) for row in rows]
    if not all(math.isfinite(v) for row in out for v in row):
        raise InvalidRequest(f"{field} holds a number that is not finite.", fields=field)
    return out


def parse_points(text: str | None) -> tuple[tuple[float, float], ...]:
    """Parse ``point_coords``: JSON ``[[x, y], ...]`` (a single ``[x, y]`` is accepted)."""
    if text is None or not text.strip():
        return ()
    rows = _number_rows(
        _parse_json(text, "point_coords", "[[x, y]]"), 2, "point_coords", "[[x, y]]"
    )
    return tuple((r[0], r[1]) for r in rows)


def parse_labels(text: str | None) -> tuple[int, ...]:
    """Parse ``point_labels``: JSON ``[1, 0, ...]`` (1 foreground, 0 background)."""
    if text is None or not text.strip():
        return ()
    value = _parse_json(text, "point_labels", "[1, 0]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        v in (0, 1) and not isinstance(v, bool) for v in value
    ):
        raise InvalidRequest(
            "point_labels must be a JSON list of 1 (foreground) and 0 (background).",
            fields="point_labels",
        )
    return tuple(int(v) for v in value)


def parse_boxes(text: str | None) -> tuple[tuple[float, float, float, float], ...]:
    """Parse ``boxes``: JSON ``[[xmin, ymin, xmax, ymax], ...]`` (a single box is accepted)."""
    if text is None or not text.strip():
        return ()
    example = "[[xmin, ymin, xmax, ymax]]"
    rows = _number_rows(_parse_json(text, "boxes", example), 4, "boxes", example)
    return tuple((r[0], r[1], r[2], r[3]) for r in rows)


def point_box_prompt(
    points: tuple[tuple[float, float], ...],
    labels: tuple[int, ...],
    boxes: tuple[tuple[float, float, float, float], ...],
    *,
    multimask_output: bool = False,
) -> PointBoxPrompt:
    """Check and assemble a box/point prompt (coordinates in any CRS, not yet pixels).

    Missing labels mean foreground.

    Raises:
        InvalidRequest: no prompt at all, labels that do not match the points, or a
            box whose minimum is not below its maximum.
    """
    if not points and not boxes:
        raise InvalidRequest(
            "predict needs a prompt: give boxes ([[xmin, ymin, xmax, ymax]]) and/or "
            "point_coords ([[x, y]]) with point_labels ([1] foreground, [0] background).",
            fields=("boxes", "point_coords", "point_labels"),
        )
    if labels and len(labels) != len(points):
        raise InvalidRequest(
            f"point_labels has {len(labels)} value(s) but point_coords has {len(points)} point(s); "
            "give one label per point.",
            fields=("point_labels", "point_coords"),
        )
    if points and not labels:
        labels = (1,) * len(points)
    if points and boxes == () and 1 not in labels:
        raise InvalidRequest(
            "point_labels marks every point as background (0); mark at least one 1.",
            fields="point_labels",
        )
    for box in boxes:
        if not (box[0] < box[2] and box[1] < box[3]):
            raise InvalidRequest(
                f"box {list(box)} is empty or inverted: write it as [xmin, ymin, xmax, ymax] "
                "with xmin < xmax and ymin < ymax.",
                fields="boxes",
            )
    return PointBoxPrompt(points, labels, boxes, multimask_output)


def prompt_to_pixels(prompt: Prompt, crs: CRS | None, info: RasterInfo) -> Prompt:
    """Express a box/point prompt in pixel coordinates of the raster and check it.

    Boxes given in a CRS become the pixel-space bounding box of their four
    transformed corners (correct for rotated rasters). Boxes are clipped to the
    image; a box or point wholly outside it is an error.

    Raises:
        InvalidRequest: a CRS given for an image without one, or a prompt outside the image.
    """
    if not isinstance(prompt, PointBoxPrompt):
        return prompt
    if crs is not None and info.crs is None:
        raise InvalidRequest(
            "point_crs was given but this image has no CRS. Send pixel coordinates "
            "(x right, y down from the top-left corner) and leave point_crs empty.",
            fields="point_crs",
        )
    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    boxes = np.asarray(prompt.boxes, dtype=np.float64).reshape(-1, 4)
    if crs is not None and info.crs is not None:
        if len(points):
            points = map_to_pixel(
                points, from_crs=crs, raster_crs=info.crs, transform=info.transform
            )
        if len(boxes):
            corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
            px = map_to_pixel(corners, from_crs=crs, raster_crs=info.crs, transform=info.transform)
            px = px.reshape(-1, 4, 2)
            boxes = np.column_stack(
                [px[:, :, 0].min(1), px[:, :, 1].min(1), px[:, :, 0].max(1), px[:, :, 1].max(1)]
            )
    width, height = info.width, info.height
    unit = "pixels" if crs is None else f"{crs.name} coordinates, {width} x {height} pixels"
    for (x, y), original in zip(points, prompt.points, strict=True):
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidRequest(
                f"point {list(original)} lies outside the image ({unit}). " + _coordinate_hint(crs),
                fields=("point_coords", "point_crs"),
            )
    clipped = []
    for box, original in zip(boxes, prompt.boxes, strict=True):
        x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
        x1, y1 = min(box[2], float(width)), min(box[3], float(height))
        if x0 >= x1 or y0 >= y1:
            raise InvalidRequest(
                f"box {list(original)} lies outside the image ({unit}). " + _coordinate_hint(crs),
                fields=("boxes", "point_crs"),
            )
        clipped.append((x0, y0, x1, y1))
    return replace(
        prompt,
        points=tuple((float(x), float(y)) for x, y in points),
        boxes=tuple(clipped),
    )


def _coordinate_hint(crs: CRS | None) -> str:
    if crs is None:
        return (
            "Without point_crs, coordinates are pixels (x right, y down from the top-left "
            "corner); for map coordinates also send point_crs, e.g. EPSG:4326."
        )
    return "Check point_crs and the order of coordinates (x/longitude first)."
