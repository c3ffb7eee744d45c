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
from .errors import InvalidRequest, quoted

if TYPE_CHECKING:
    from pyproj import CRS

    from .raster import RasterInfo

Mode = Literal["text", "automatic", "predict"]
MODES: tuple[Mode, ...] = ("text", "automatic", "predict")

#: What a box of a predict prompt asks for: ``similar``, every object like the one in
#: the box (samgeo-api's SAM 3 behaviour); ``object``, just the object in the box.
BoxMode = Literal["similar", "object"]
BOX_MODES: tuple[BoxMode, ...] = ("similar", "object")

#: Most concepts one text request may name (``prompt`` plus ``prompts``): each costs a
#: decoder pass, and a longer list is more likely a mistake than a wish.
MAX_CONCEPTS = 32

#: ``(xmin, ymin, xmax, ymax)``: a box prompt, in pixels once converted.
BoxPrompt = tuple[float, float, float, float]


@dataclass(frozen=True)
class TextPrompt:
    """Find every instance of one or more concepts named in words (``"water"``, ``"trees"``).

    Attributes:
        text: the first concept (``prompt``).
        confidence_threshold: (0-1) keeps objects whose score reaches it; lower finds
            more, higher is stricter. What a score means is the backend's to document.
        others: further concepts (``prompts``), each answered on the same image, each
            object carrying the concept that found it; see :attr:`concepts`.
        boxes: exemplar boxes ``(xmin, ymin, xmax, ymax)``, in raster pixels once
            converted (:func:`prompt_to_pixels`): examples of what to find (positive)
            or of what not to (negative), for every concept.
        box_labels: one label per box, 1 = positive exemplar, 0 = negative; empty
            means every box is positive.

    Raises:
        InvalidRequest: when ``box_labels`` is given with a count other than the boxes'.
    """

    text: str
    confidence_threshold: float = 0.5
    others: tuple[str, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    box_labels: tuple[int, ...] = ()
    mode: Mode = field(default="text", init=False)

    def __post_init__(self) -> None:
        if self.box_labels and len(self.box_labels) != len(self.boxes):
            raise InvalidRequest(
                f"box_labels has {len(self.box_labels)} value(s) but boxes has "
                f"{len(self.boxes)} box(es); give one label per box (1 positive exemplar, "
                "0 negative), or leave box_labels out to make every box positive.",
                fields=("box_labels", "boxes"),
            )

    @property
    def concepts(self) -> tuple[str, ...]:
        """Every concept to find: :attr:`text`, then :attr:`others`, duplicates removed
        (first occurrence kept, order kept)."""
        return tuple(dict.fromkeys((self.text, *self.others)))


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
    With ``box_mode="object"`` each box yields one object; points inside a box refine
    that box, points outside every box form one more object of their own. With
    ``box_mode="similar"`` a box stands for every object like the one in it. ``None``
    is the backend's default (``sam3``: ``similar``, as samgeo-api does; ``classic``:
    ``object``, the only one it answers).
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    multimask_output: bool = False
    box_mode: BoxMode | None = None
    mode: Mode = field(default="predict", init=False)

    @property
    def labelled_points(self) -> list[tuple[tuple[float, float], int]]:
        """``[((x, y), label), ...]``; missing labels are foreground (1)."""
        labels = self.labels or (1,) * len(self.points)
        return list(zip(self.points, labels, strict=True))

    def points_in(self, box: BoxPrompt) -> list[tuple[tuple[float, float], int]]:
        """The labelled points inside ``box`` (left and top edges included)."""
        return [(p, label) for p, label in self.labelled_points if point_in_box(p, box)]

    def points_outside_boxes(self) -> list[tuple[tuple[float, float], int]]:
        """The labelled points inside no box: they make an object of their own."""
        return [
            (p, label)
            for p, label in self.labelled_points
            if not any(point_in_box(p, box) for box in self.boxes)
        ]


def point_in_box(point: tuple[float, float], box: BoxPrompt) -> bool:
    """True when pixel point ``(x, y)`` lies in ``(xmin, ymin, xmax, ymax)`` (end exclusive)."""
    x, y = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


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


def _parse_binary_labels(text: str | None, field: str, meaning: str) -> tuple[int, ...]:
    if text is None or not text.strip():
        return ()
    value = _parse_json(text, field, "[1, 0]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        v in (0, 1) and not isinstance(v, bool) for v in value
    ):
        raise InvalidRequest(f"{field} must be a JSON list of {meaning}.", fields=field)
    return tuple(int(v) for v in value)


def parse_labels(text: str | None) -> tuple[int, ...]:
    """Parse ``point_labels``: JSON ``[1, 0, ...]`` (1 foreground, 0 background)."""
    return _parse_binary_labels(text, "point_labels", "1 (foreground) and 0 (background)")


def parse_box_labels(text: str | None) -> tuple[int, ...]:
    """Parse ``box_labels`` of a text prompt's exemplar boxes: JSON ``[1, 0, ...]``
    (1 positive exemplar, 0 negative)."""
    return _parse_binary_labels(
        text, "box_labels", "1 (positive exemplar) and 0 (negative exemplar), one per box"
    )


def parse_prompts(text: str | None) -> tuple[str, ...]:
    """Parse ``prompts``: a JSON list of concepts, e.g. ``["trees", "water"]``.

    White space inside a concept is collapsed to single spaces; duplicates are kept
    here (:func:`text_prompt` removes them, with ``prompt``'s).

    Raises:
        InvalidRequest: bad JSON, something other than a list of non-blank strings, or
            more than :data:`MAX_CONCEPTS` of them.
    """
    if text is None or not text.strip():
        return ()
    example = '["trees", "water"]'
    value = _parse_json(text, "prompts", example)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(
            f"prompts must be a JSON list of strings, one concept each, like {example}; "
            f"got {quoted(text)}.",
            fields="prompts",
        )
    concepts = tuple(" ".join(v.split()) for v in value)
    if any(not c for c in concepts):
        raise InvalidRequest(
            f"prompts holds an empty or blank concept: name each thing to find, like {example}.",
            fields="prompts",
        )
    if len(concepts) > MAX_CONCEPTS:
        raise InvalidRequest(
            f"prompts names {len(concepts)} concepts; at most {MAX_CONCEPTS} are answered "
            "per request. Split them over several requests.",
            fields="prompts",
        )
    return concepts


def parse_box_mode(text: str | None) -> BoxMode | None:
    """Parse ``box_mode``: ``similar`` or ``object`` (any case); blank is None (the
    backend's default).

    Raises:
        InvalidRequest: for any other value.
    """
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    if value not in BOX_MODES:
        raise InvalidRequest(
            f"Unknown box_mode {quoted(text)}: use similar (every object like the one in "
            "each box) or object (just the object in each box), or leave it out for the "
            "model's default.",
            fields="box_mode",
        )
    return value  # type: ignore[return-value]


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
    boxes: tuple[BoxPrompt, ...],
    *,
    multimask_output: bool = False,
    box_mode: BoxMode | None = None,
) -> PointBoxPrompt:
    """Check and assemble a box/point prompt (coordinates in any CRS, not yet pixels).

    Missing labels mean foreground.

    Raises:
        InvalidRequest: no prompt at all, labels that do not match the points, a
            box whose minimum is not below its maximum, or ``box_mode="similar"``
            without a box (it says what a box stands for).
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
    _check_boxes(boxes)
    if box_mode == "similar" and not boxes:
        raise InvalidRequest(
            "box_mode=similar says what each box stands for, but this prompt has no boxes: "
            "add boxes ([[xmin, ymin, xmax, ymax]]) or leave box_mode out.",
            fields=("box_mode", "boxes"),
        )
    return PointBoxPrompt(points, labels, boxes, multimask_output, box_mode)


def _check_boxes(boxes: tuple[BoxPrompt, ...]) -> None:
    for box in boxes:
        if not (box[0] < box[2] and box[1] < box[3]):
            raise InvalidRequest(
                f"box {list(box)} is empty or inverted: write it as [xmin, ymin, xmax, ymax] "
                "with xmin < xmax and ymin < ymax.",
                fields="boxes",
            )


def text_prompt(
    text: str | None,
    confidence_threshold: float = 0.5,
    *,
    others: tuple[str, ...] = (),
    boxes: tuple[BoxPrompt, ...] = (),
    box_labels: tuple[int, ...] = (),
) -> TextPrompt:
    """Check and assemble a text prompt (exemplar boxes in any CRS, not yet pixels).

    The concepts are ``text`` (when not blank) then ``others``, white space collapsed
    and duplicates removed; missing ``box_labels`` mean every box is positive.

    Raises:
        InvalidRequest: no concept at all, more than :data:`MAX_CONCEPTS`, box labels
            without boxes or not one per box, or an empty or inverted box.
    """
    first = " ".join(text.split()) if text else ""
    concepts = tuple(dict.fromkeys(c for c in (first, *(" ".join(o.split()) for o in others)) if c))
    if not concepts:
        raise InvalidRequest(
            "prompt is empty: name what to find, e.g. water or trees (or several at once "
            'in prompts, e.g. ["trees", "water"]).',
            fields=("prompt", "prompts"),
        )
    if len(concepts) > MAX_CONCEPTS:
        raise InvalidRequest(
            f"prompt and prompts name {len(concepts)} different concepts; at most "
            f"{MAX_CONCEPTS} are answered per request. Split them over several requests.",
            fields=("prompts", "prompt"),
        )
    if box_labels and not boxes:
        raise InvalidRequest(
            "box_labels labels exemplar boxes, but no boxes were given: add boxes "
            "([[xmin, ymin, xmax, ymax]]) or leave box_labels out.",
            fields=("box_labels", "boxes"),
        )
    _check_boxes(boxes)
    return TextPrompt(
        concepts[0],
        confidence_threshold,
        others=concepts[1:],
        boxes=boxes,
        box_labels=box_labels or (1,) * len(boxes),
    )


def prompt_to_pixels(prompt: Prompt, crs: CRS | None, info: RasterInfo) -> Prompt:
    """Express a prompt's boxes and points in pixel coordinates of the raster and check them.

    Box/point prompts and a text prompt's exemplar boxes are converted; an automatic
    prompt has no coordinates. Boxes given in a CRS become the pixel-space bounding
    box of their four transformed corners (correct for rotated rasters). Boxes are
    clipped to the image; a box or point wholly outside it is an error.

    Raises:
        InvalidRequest: a CRS given for an image without one, or a prompt outside the image.
    """
    if isinstance(prompt, TextPrompt):
        if not prompt.boxes:
            return prompt
        return replace(prompt, boxes=_boxes_to_pixels(prompt.boxes, crs, info))
    if not isinstance(prompt, PointBoxPrompt):
        return prompt
    _check_crs(crs, info)
    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    if crs is not None and info.crs is not None and len(points):
        points = map_to_pixel(points, from_crs=crs, raster_crs=info.crs, transform=info.transform)
    width, height = info.width, info.height
    for (x, y), original in zip(points, prompt.points, strict=True):
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidRequest(
                f"point {list(original)} lies outside the image ({_unit(crs, info)}). "
                + _coordinate_hint(crs),
                fields=("point_coords", "point_crs"),
            )
    return replace(
        prompt,
        points=tuple((float(x), float(y)) for x, y in points),
        boxes=_boxes_to_pixels(prompt.boxes, crs, info),
    )


def _check_crs(crs: CRS | None, info: RasterInfo) -> None:
    if crs is not None and info.crs is None:
        raise InvalidRequest(
            "point_crs was given but this image has no CRS. Send pixel coordinates "
            "(x right, y down from the top-left corner) and leave point_crs empty.",
            fields="point_crs",
        )


def _unit(crs: CRS | None, info: RasterInfo) -> str:
    if crs is None:
        return "pixels"
    return f"{crs.name} coordinates, {info.width} x {info.height} pixels"


def _boxes_to_pixels(
    given: tuple[BoxPrompt, ...], crs: CRS | None, info: RasterInfo
) -> tuple[BoxPrompt, ...]:
    """``given`` boxes (in ``crs``, or pixels when None) as pixel boxes clipped to the image."""
    _check_crs(crs, info)
    boxes = np.asarray(given, dtype=np.float64).reshape(-1, 4)
    if crs is not None and info.crs is not None and len(boxes):
        corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
        px = map_to_pixel(corners, from_crs=crs, raster_crs=info.crs, transform=info.transform)
        px = px.reshape(-1, 4, 2)
        boxes = np.column_stack(
            [px[:, :, 0].min(1), px[:, :, 1].min(1), px[:, :, 0].max(1), px[:, :, 1].max(1)]
        )
    clipped = []
    for box, original in zip(boxes, given, strict=True):
        x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
        x1, y1 = min(box[2], float(info.width)), min(box[3], float(info.height))
        if x0 >= x1 or y0 >= y1:
            raise InvalidRequest(
                f"box {list(original)} lies outside the image ({_unit(crs, info)}). "
                + _coordinate_hint(crs),
                fields=("boxes", "point_crs"),
            )
        clipped.append((float(x0), float(y0), float(x1), float(y1)))
    return tuple(clipped)


def _coordinate_hint(crs: CRS | None) -> str:
    if crs is None:
        return (
            "Without point_crs, coordinates are pixels (x right, y down from the top-left "
            "corner); for map coordinates also send point_crs, e.g. EPSG:4326."
        )
    return "Check point_crs and the order of coordinates (x/longitude first)."
