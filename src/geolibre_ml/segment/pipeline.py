"""One segmentation run: raster in, features (and a label image) out.

The steps are the same for every backend and every entry point (HTTP, CLI,
jobs): open and check the raster, turn the prompt into pixel coordinates, read
the window, let the backend answer, drop nodata and out-of-size objects,
polygonize on the exact pixel grid, attach properties and areas, reproject and
simplify. An empty result is a normal outcome; callers decide how to say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

from .backends import Backend
from .crs import ground_area_m2, map_to_pixel, parse_crs, reproject
from .errors import Cancelled, InvalidRequest
from .features import FeatureSet
from .masks import MaskSet
from .prompts import OutputOptions, PointBoxPrompt, Prompt, ReadOptions, TextPrompt
from .raster import RasterInfo, RasterSource
from .vectorize import filter_labels, polygonize

#: ``progress(done, total)``: called as windows complete.
ProgressFn = Callable[[int, int], None]
#: ``cancelled()``: returns True when the caller wants the run to stop.
CancelFn = Callable[[], bool]


@dataclass
class SegmentResult:
    """What a run produced.

    Attributes:
        features: one feature per object, in the output CRS.
        labels: ``(height, width)`` int32 label image of the whole raster, after
            the nodata and size filters (0 = no object).
        scores: score per label value (NaN where the model gives none).
        info: the raster that was segmented.
        output_crs: CRS of ``features`` (None for pixel coordinates).
        base_properties: the properties every feature shares (mode, model...).
    """

    features: FeatureSet
    labels: np.ndarray
    scores: np.ndarray
    info: RasterInfo
    output_crs: CRS | None
    base_properties: dict[str, Any]


def segment_raster(
    path: str | Path,
    prompt: Prompt,
    backend: Backend,
    *,
    name: str | None = None,
    read: ReadOptions | None = None,
    output: OutputOptions | None = None,
    prompt_crs: str | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
) -> SegmentResult:
    """Segment one raster file with one prompt.

    Args:
        path: GeoTIFF, PNG or JPEG on local disk.
        prompt: what to find; box/point coordinates are pixels unless ``prompt_crs``.
        backend: a loaded backend.
        name: the file name to report (defaults to ``path``'s name).
        read: bands and tiling.
        output: size filters, output CRS, simplification.
        prompt_crs: CRS of box/point coordinates (e.g. ``EPSG:4326``); None for pixels.
        progress: called with ``(done, total)`` windows.
        cancelled: polled between steps; a True answer raises :class:`Cancelled`.

    Raises:
        SegmentError: subclasses for bad input, unreadable images, unsupported prompts.
    """
    read = read or ReadOptions()
    output = output or OutputOptions()
    backend.check_prompt(prompt)
    target_crs = parse_crs(output.output_crs, field="output_crs") if output.output_crs else None
    source_crs = parse_crs(prompt_crs, field="point_crs") if prompt_crs else None

    def check_cancel() -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("The run was cancelled.")

    with RasterSource(path, name=name, bands=read.bands) as src:
        info = src.info
        if target_crs is not None and info.crs is None:
            raise InvalidRequest(
                "output_crs needs a georeferenced raster, but this image has no CRS. "
                "Leave output_crs empty to get pixel coordinates."
            )
        pixel_prompt = prompt_to_pixels(prompt, source_crs, info)
        check_cancel()
        chip = src.read_chip()
        check_cancel()
        masks = backend.segment(chip, pixel_prompt)
        check_cancel()
    base = _base_properties(prompt, backend, info)
    features, labels = build_features(
        masks,
        valid=chip.valid,
        transform=chip.transform,
        crs=info.crs,
        georeferenced=info.georeferenced,
        output=output,
        target_crs=target_crs,
        base=base,
    )
    if progress is not None:
        progress(1, 1)
    return SegmentResult(features, labels, masks.scores, info, features.crs, base)


def build_features(
    masks: MaskSet,
    *,
    valid: np.ndarray | None,
    transform: Affine,
    crs: CRS | None,
    georeferenced: bool,
    output: OutputOptions,
    target_crs: CRS | None = None,
    base: dict[str, Any] | None = None,
) -> tuple[FeatureSet, np.ndarray]:
    """Turn a backend's label image into features: filters, polygons, properties.

    Nodata pixels (``valid`` False) are removed, objects outside
    ``output.min_size``/``output.max_size`` pixels dropped, the rest polygonized
    on the exact grid of ``transform``; each feature gets ``value``, ``score``
    (when finite), ``area_m2`` (ground area of its pixels, when ``crs`` is
    known) and the ``base`` properties. Then polygons are reprojected to
    ``target_crs`` and simplified by ``output.simplify_tolerance`` (units of the
    output CRS) as one coverage, so neighbours stay adjacent.

    Args:
        masks: the backend's answer on the grid of ``transform``.
        valid: ``(H, W)`` bool, False on nodata; None when every pixel is valid.
        transform: pixel corners to ``crs`` coordinates (identity: pixel space).
        crs: the raster's CRS, or None.
        georeferenced: True when ``transform`` is a real geotransform (with or
            without a CRS); False marks pixel coordinates.
        output: size filters and simplification (``output_crs`` is given parsed,
            as ``target_crs``).
        target_crs: CRS to reproject to, or None to stay in ``crs``.
        base: properties every feature shares (``mode``, ``model``...).

    Returns:
        The features (in ``target_crs`` or ``crs``) and the filtered label image.

    Raises:
        InvalidRequest: when ``target_crs`` cannot represent the raster's area.
    """
    labels, _counts = filter_labels(
        masks.labels, valid=valid, min_size=output.min_size, max_size=output.max_size
    )
    tolerance = output.simplify_tolerance or 0.0
    # Neighbours must share every vertex of their common edges for both reprojection
    # (otherwise a shared edge bends on one side only, opening slivers) and coverage
    # simplification.
    reprojecting = target_crs is not None and crs is not None
    polygons = polygonize(labels, transform=transform, junctions=reprojecting or tolerance > 0)
    geometries = polygons.geometries
    areas = ground_area_m2(geometries, crs) if len(geometries) else None
    if reprojecting:
        geometries = reproject(geometries, crs, target_crs)
        crs = target_crs
    if tolerance > 0 and len(geometries):
        geometries = simplify(geometries, tolerance)

    values = polygons.values
    scores = np.full(len(values), np.nan)
    known = values < len(masks.scores)
    scores[known] = np.asarray(masks.scores, dtype=np.float64)[values[known]]
    properties = []
    for i, value in enumerate(values.tolist()):
        props: dict[str, Any] = {"value": value}
        if np.isfinite(scores[i]):
            props["score"] = round(float(scores[i]), 4)
        if areas is not None and np.isfinite(areas[i]):
            # Nine significant digits: the precision of the computation, and tidy
            # whether objects are tenths of a square metre (drone imagery) or lakes.
            props["area_m2"] = float(f"{areas[i]:.9g}")
        if base:
            props.update(base)
        properties.append(props)
    features = FeatureSet(
        geometries=geometries,
        properties=properties,
        crs=crs,
        transform_only=crs is None and georeferenced,
    )
    return features, labels


def simplify(geometries: np.ndarray, tolerance: float) -> np.ndarray:
    """Simplify polygons that tile the plane without opening gaps between neighbours.

    ``tolerance`` is in the units of the geometries' CRS. Shared edges are
    simplified once (GEOS coverage simplification), so adjacent objects stay
    adjacent and never overlap. The input must be a clean coverage: neighbours
    share every vertex of their common edges (see ``polygonize(junctions=True)``).
    """
    if tolerance <= 0 or not len(geometries):
        return geometries
    out = shapely.coverage_simplify(np.asarray(geometries, dtype=object), tolerance)
    invalid = ~shapely.is_valid(out)
    if invalid.any():
        out[invalid] = shapely.make_valid(out[invalid], method="structure", keep_collapsed=False)
    return out


def _base_properties(prompt: Prompt, backend: Backend, info: RasterInfo) -> dict[str, Any]:
    props: dict[str, Any] = {"mode": prompt.mode}
    if isinstance(prompt, TextPrompt):
        props["prompt"] = prompt.text
    props["model"] = backend.version
    props["model_id"] = backend.model_id
    props["source"] = info.name
    return props


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
            "(x right, y down from the top-left corner) and leave point_crs empty."
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
                f"point {list(original)} lies outside the image ({unit}). " + _coordinate_hint(crs)
            )
    clipped = []
    for box, original in zip(boxes, prompt.boxes, strict=True):
        x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
        x1, y1 = min(box[2], float(width)), min(box[3], float(height))
        if x0 >= x1 or y0 >= y1:
            raise InvalidRequest(
                f"box {list(original)} lies outside the image ({unit}). " + _coordinate_hint(crs)
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
