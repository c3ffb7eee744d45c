"""One segmentation run, in four stages: plan, per window, merge, finish.

1. **plan** (:func:`plan_run`): open the raster, check the request against it, turn
   the prompt into raster pixels, decide the windows to read (:func:`plan_windows`)
   and the read plan every window shares (band roles, stretch, validity rules;
   :class:`~.readplan.ReadPlan`), measured once or passed in ready-made.
2. **per window** (:func:`segment_window`): a pure function of a
   :class:`WindowTask` (source, window, read plan, prompt, model settings) and the
   model: it reads only its window (or takes the prepared state from the cache),
   lets the backend answer, removes nodata pixels and returns the window's objects
   in raster pixels. This is the unit that tiles, batches and a cluster run.
3. **merge** (:func:`merge_windows`): the windows' objects joined into one set and
   numbered once for the whole run. With one window it is a pass-through; the
   tiling work joins objects across seams here.
4. **finish** (:func:`finish_features`): size filters, polygons on the exact pixel
   grid, properties, ground areas, reprojection and simplification. A label image
   is made only when an answer asks for one (:attr:`.results.SegmentResult.labels`).

Progress is reported after each window and each finishing step; cancellation is
checked between windows and steps, and inside the long steps at their own
checkpoints (:mod:`.checkpoints`: the backend's phases, polygonizing, ground
areas). An empty result is a normal outcome; callers decide how to say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

from .cache import PreparedCache
from .checkpoints import watching
from .chip import ImageChip
from .crs import ground_area_m2, parse_crs, reproject
from .errors import Cancelled, InvalidRequest
from .features import FeatureSet
from .masks import MaskSet, ObjectSet, Origin
from .models import ModelSettings
from .prompts import (
    AutomaticPrompt,
    OutputOptions,
    PointBoxPrompt,
    Prompt,
    ReadOptions,
    TextPrompt,
    prompt_to_pixels,
)
from .raster import RasterInfo, RasterSource
from .readplan import ReadPlan
from .results import SegmentResult
from .vectorize import polygonize_objects, simplify

#: ``progress(done, total)``: called as windows and finishing steps complete.
ProgressFn = Callable[[int, int], None]
#: ``cancelled()``: returns True when the caller wants the run to stop.
CancelFn = Callable[[], bool]

#: ``(col_off, row_off, width, height)`` of a window, in raster pixels.
WindowBox = tuple[int, int, int, int]

#: Finishing steps counted by progress: filters, polygons, areas and reprojection.
FINISH_STEPS = 3


class SegmentModel(Protocol):
    """What a run needs of a model: a :class:`~.backends.Backend` or a lease of one."""

    version: str
    model_id: str

    @property
    def input_size(self) -> int | None: ...

    def check_prompt(self, prompt: Prompt) -> None: ...

    def prepare(self, chip: ImageChip) -> Any: ...

    def prepared_nbytes(self, prepared: Any) -> int: ...

    def run(self, prepared: Any, prompt: Prompt) -> ObjectSet | MaskSet: ...


@dataclass(frozen=True)
class WindowTask:
    """Everything one window's work depends on: plain, serializable values.

    Attributes:
        source: the raster (a local path).
        window: ``(col_off, row_off, width, height)`` in raster pixels.
        plan: the raster's read plan.
        prompt: the prompt, coordinates in raster pixels.
        model: which model answers.
        name: the raster's name in messages.
        content_key: digest of the source's bytes; with it the prepared window is
            cached and reused by later prompts on the same image (None: not cached).
    """

    source: str
    window: WindowBox
    plan: ReadPlan
    prompt: Prompt
    model: ModelSettings
    name: str | None = None
    content_key: str | None = None

    @property
    def cache_key(self) -> tuple[Any, ...] | None:
        """The key of this window's prepared state, or None when it is not cached."""
        if self.content_key is None:
            return None
        return (
            self.content_key,
            self.window,
            self.plan.fingerprint,
            self.model.version,
            self.model.model_id,
        )


@dataclass
class WindowResult:
    """What one window's work gives: its objects in raster pixels, nodata removed.

    Attributes:
        window: the task's window.
        objects: the objects found.
        reused: True when the prepared window came from the cache (not read or
            encoded again).
        valid: ``(height, width)`` bool of the window, True where it holds data.
    """

    window: WindowBox
    objects: ObjectSet
    reused: bool = False
    valid: np.ndarray | None = None


@dataclass(frozen=True)
class RunPlan:
    """The plan of a run: the raster, its read plan, the windows, the pixel prompt."""

    info: RasterInfo
    read_plan: ReadPlan
    windows: tuple[WindowBox, ...]
    prompt: Prompt


def plan_windows(
    width: int, height: int, tile_size: int | None = None, overlap: int = 0
) -> tuple[WindowBox, ...]:
    """Windows covering a ``width`` x ``height`` raster (pixels).

    Without ``tile_size``, or when the raster fits in one tile, the whole raster is
    one window. Otherwise square tiles of ``tile_size`` overlap their neighbours by
    ``overlap`` pixels; the last row and column are shifted back inside the raster
    (so every tile is whole unless the raster is smaller than a tile).
    """
    if tile_size is None or (width <= tile_size and height <= tile_size):
        return ((0, 0, width, height),)
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap {overlap} must be in [0, {tile_size})")
    step = tile_size - overlap

    def starts(size: int) -> list[int]:
        if size <= tile_size:
            return [0]
        out = list(range(0, size - tile_size, step))
        return [*out, size - tile_size]

    tile_w, tile_h = min(tile_size, width), min(tile_size, height)
    return tuple((c, r, tile_w, tile_h) for r in starts(height) for c in starts(width))


def plan_run(
    src: RasterSource,
    prompt: Prompt,
    model: SegmentModel,
    *,
    prompt_crs: CRS | None = None,
) -> RunPlan:
    """The windows and the read plan of a run on the opened ``src``.

    A raster that fits the model's input (:attr:`~.backends.Backend.input_size`;
    any raster for a model without one) is one window. So is, until the merge joins
    objects across tile seams, a larger one: the model then sees it whole, as before.
    ``tile_size``/``tile_overlap`` are accepted for compatibility and not used yet.

    Raises:
        InvalidRequest: a prompt outside the image, or a CRS for an image without one.
    """
    info = src.info
    pixel_prompt = prompt_to_pixels(prompt, prompt_crs, info)
    windows = plan_windows(info.width, info.height)
    return RunPlan(info, src.plan, windows, pixel_prompt)


def segment_window(
    task: WindowTask,
    model: SegmentModel,
    *,
    source: RasterSource | None = None,
    cache: PreparedCache | None = None,
    cancelled: CancelFn | None = None,
) -> WindowResult:
    """The objects of one window, in raster pixels, nodata removed.

    Reads only ``task.window`` (from ``source`` when it is already open, else by
    opening ``task.source`` with the task's read plan, which measures nothing), or
    takes the prepared window from ``cache`` when an earlier prompt on the same
    image prepared it.
    """
    col, row, width, height = task.window

    def prepare() -> tuple[tuple[Any, np.ndarray], int]:
        if source is not None:
            chip = source.read_chip(Window(col, row, width, height))
        else:
            with RasterSource(task.source, name=task.name, plan=task.plan) as opened:
                chip = opened.read_chip(Window(col, row, width, height))
        _check(cancelled)
        with watching(cancelled):
            prepared = model.prepare(chip)
        return (prepared, chip.valid), model.prepared_nbytes(prepared) + chip.valid.nbytes

    if cache is not None:
        (prepared, valid), reused = cache.fetch(task.cache_key, prepare)
    else:
        (prepared, valid), reused = prepare()[0], False
    _check(cancelled)
    with watching(cancelled):
        answer = model.run(prepared, _window_prompt(task.prompt, col, row))
    objects = answer.objects(_origin(task.prompt)) if isinstance(answer, MaskSet) else answer
    objects = objects.without_invalid(valid).shifted(row, col)
    return WindowResult(task.window, objects, reused, valid)


def merge_windows(windows: list[WindowResult]) -> ObjectSet:
    """All windows' objects as one set, numbered once for the whole run.

    Each window's values follow the last of the window before it; within a
    window, a backend's label values are kept (see :meth:`ObjectSet.numbered`).
    """
    numbered = []
    start = 0
    for window in windows:
        item = window.objects.numbered(start)
        start = max(start, item.top_value)
        numbered.append(item)
    return ObjectSet.concat(numbered)


def segment_raster(
    path: str | Path,
    prompt: Prompt,
    backend: SegmentModel,
    *,
    name: str | None = None,
    read: ReadOptions | None = None,
    output: OutputOptions | None = None,
    prompt_crs: str | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelFn | None = None,
    plan: ReadPlan | None = None,
    cache: PreparedCache | None = None,
    content_key: str | None = None,
) -> SegmentResult:
    """Segment one raster file with one prompt.

    Args:
        path: GeoTIFF, PNG or JPEG on local disk.
        prompt: what to find; box/point coordinates are pixels unless ``prompt_crs``.
        backend: a loaded backend, or a lease of one.
        name: the file name to report (defaults to ``path``'s name).
        read: bands (``tile_size``/``tile_overlap``: accepted, not used yet).
        output: size filters, output CRS, simplification.
        prompt_crs: CRS of box/point coordinates (e.g. ``EPSG:4326``); None for pixels.
        progress: called with ``(done, total)`` windows and finishing steps.
        cancelled: polled between windows and steps; a True answer raises
            :class:`Cancelled`.
        plan: a read plan measured before (e.g. by the process that split the
            work); None measures it.
        cache: where prepared windows are kept between prompts.
        content_key: digest of the file's bytes, the cache's image key (None: the
            prepared windows are not cached).

    Raises:
        SegmentError: subclasses for bad input, unreadable images, unsupported prompts.
    """
    read = read or ReadOptions()
    output = output or OutputOptions()
    backend.check_prompt(prompt)
    target_crs = parse_crs(output.output_crs, field="output_crs") if output.output_crs else None
    source_crs = parse_crs(prompt_crs, field="point_crs") if prompt_crs else None
    settings = ModelSettings(backend.version, backend.model_id)

    with RasterSource(path, name=name, bands=read.bands, plan=plan) as src:
        info = src.info
        if target_crs is not None and info.crs is None:
            raise InvalidRequest(
                "output_crs needs a georeferenced raster, but this image has no CRS. "
                "Leave output_crs empty to get pixel coordinates.",
                fields="output_crs",
            )
        run = plan_run(src, prompt, backend, prompt_crs=source_crs)
        total = len(run.windows) + FINISH_STEPS
        found = []
        for done, window in enumerate(run.windows, start=1):
            _check(cancelled)
            task = WindowTask(
                str(path), window, run.read_plan, run.prompt, settings, info.name, content_key
            )
            found.append(
                segment_window(task, backend, source=src, cache=cache, cancelled=cancelled)
            )
            if progress is not None:
                progress(done, total)
    objects = merge_windows(found)
    reused = sum(window.reused for window in found)
    base = _base_properties(prompt, backend, info)
    step = len(run.windows)

    def advance() -> None:
        nonlocal step
        _check(cancelled)
        step += 1
        if progress is not None:
            progress(step, total)

    with watching(cancelled):
        features, kept = finish_features(
            objects,
            transform=info.transform,
            crs=info.crs,
            georeferenced=info.georeferenced,
            output=output,
            target_crs=target_crs,
            base=base,
            advance=advance,
            combine=_combiner(prompt, (info.height, info.width), found),
        )
    concepts = prompt.concepts if isinstance(prompt, TextPrompt) else ()
    return SegmentResult(
        features, kept, info, features.crs, base, reused_windows=reused, concepts=concepts
    )


def finish_features(
    objects: ObjectSet,
    *,
    transform: Affine,
    crs: CRS | None,
    georeferenced: bool,
    output: OutputOptions,
    target_crs: CRS | None = None,
    base: dict[str, Any] | None = None,
    advance: Callable[[], None] | None = None,
    combine: Callable[[ObjectSet], ObjectSet] | None = None,
) -> tuple[FeatureSet, ObjectSet]:
    """Turn a run's numbered objects into features: size filters, polygons, properties.

    Objects outside ``output.min_size``/``output.max_size`` pixels are dropped, the
    rest polygonized on the exact grid of ``transform``; each feature gets ``value``,
    ``score`` (when finite), ``area_m2`` (ground area of its pixels, when ``crs`` is
    known) and the ``base`` properties, its ``prompt`` replaced by the concept that
    found the object (:attr:`~.masks.Origin.prompt`) when it has one. Then polygons
    are reprojected to ``target_crs`` and simplified by ``output.simplify_tolerance``
    (units of the output CRS): objects that tile an area (one label layer) as one
    coverage, so neighbours stay adjacent; overlapping objects each on its own.

    Args:
        objects: numbered objects in raster pixels, nodata already removed.
        transform: the raster's transform (pixel corners to ``crs`` coordinates;
            identity: pixel space).
        crs: the raster's CRS, or None.
        georeferenced: True when ``transform`` is a real geotransform (with or
            without a CRS); False marks pixel coordinates.
        output: size filters and simplification (``output_crs`` is given parsed,
            as ``target_crs``).
        target_crs: CRS to reproject to, or None to stay in ``crs``.
        base: properties every feature shares (``mode``, ``model``...).
        advance: called after each step (progress, and the chance to cancel).
        combine: applied to the objects kept by the size filters, before polygons
            are made (e.g. :func:`binary_objects`).

    Returns:
        The features (in ``target_crs`` or ``crs``, by value) and the kept objects.

    Raises:
        InvalidRequest: when ``target_crs`` cannot represent the raster's area.
    """
    step = advance or (lambda: None)
    counts = objects.pixel_counts()
    keep = counts >= max(output.min_size, 1)
    if output.max_size is not None and output.max_size > 0:
        keep &= counts <= output.max_size
    objects = objects.subset(keep)
    if combine is not None:
        objects = combine(objects)
    step()

    tolerance = output.simplify_tolerance or 0.0
    # Neighbours must share every vertex of their common edges for both reprojection
    # (otherwise a shared edge bends on one side only, opening slivers) and coverage
    # simplification.
    reprojecting = target_crs is not None and crs is not None
    polygons = polygonize_objects(
        objects, transform=transform, junctions=reprojecting or tolerance > 0
    )
    step()

    geometries = polygons.geometries
    areas = ground_area_m2(geometries, crs) if len(geometries) else None
    if reprojecting:
        geometries = reproject(geometries, crs, target_crs)
        crs = target_crs
    by_value = {o.value: o for o in objects}
    if tolerance > 0 and len(geometries):
        geometries = _simplify_groups(geometries, polygons.values, by_value, tolerance)

    properties = []
    for i, value in enumerate(polygons.values.tolist()):
        props: dict[str, Any] = {"value": value}
        score = by_value[value].score
        if np.isfinite(score):
            props["score"] = round(float(score), 4)
        if areas is not None and np.isfinite(areas[i]):
            # Nine significant digits: the precision of the computation, and tidy
            # whether objects are tenths of a square metre (drone imagery) or lakes.
            props["area_m2"] = float(f"{areas[i]:.9g}")
        if base:
            props.update(base)
        # The concept that found the object, not the request's first one (several
        # concepts in one text request): the per-object origin wins over the base.
        concept = by_value[value].origin.prompt
        if concept is not None:
            props["prompt"] = concept
        properties.append(props)
    step()
    features = FeatureSet(
        geometries=geometries,
        properties=properties,
        crs=crs,
        transform_only=crs is None and georeferenced,
    )
    return features, objects


def build_features(
    masks: MaskSet | ObjectSet,
    *,
    valid: np.ndarray | None,
    transform: Affine,
    crs: CRS | None,
    georeferenced: bool,
    output: OutputOptions,
    target_crs: CRS | None = None,
    base: dict[str, Any] | None = None,
) -> tuple[FeatureSet, np.ndarray]:
    """Features of one chip's answer, and its filtered label image.

    The finishing stage for an answer on one grid: nodata (``valid`` False)
    removed, objects numbered, then :func:`finish_features`; the label image is
    flattened from the kept objects (highest score wins).
    """
    objects = masks.objects() if isinstance(masks, MaskSet) else masks
    shape = masks.labels.shape if isinstance(masks, MaskSet) else valid.shape
    objects = objects.without_invalid(valid).numbered()
    features, kept = finish_features(
        objects,
        transform=transform,
        crs=crs,
        georeferenced=georeferenced,
        output=output,
        target_crs=target_crs,
        base=base,
    )
    return features, kept.label_image(shape)


def _simplify_groups(
    geometries: np.ndarray,
    values: np.ndarray,
    by_value: dict[int, Any],
    tolerance: float,
) -> np.ndarray:
    """Simplify each label layer's polygons as one coverage, cropped objects alone
    (they may overlap, which a coverage cannot)."""
    out = np.array(geometries, dtype=object)
    layers: dict[int, list[int]] = {}
    cropped: list[int] = []
    for i, value in enumerate(values.tolist()):
        layer = by_value[value].layer
        if layer is None:
            cropped.append(i)
        else:
            layers.setdefault(id(layer), []).append(i)
    for members in layers.values():
        out[members] = simplify(out[members], tolerance)
    if cropped:
        out[cropped] = shapely.simplify(out[cropped], tolerance, preserve_topology=True)
    return out


def binary_objects(
    objects: ObjectSet, shape: tuple[int, int], *, foreground: bool, valid: np.ndarray | None
) -> ObjectSet:
    """samgeo's binary answer (``unique=false``): one object of value 1 covering every
    object's pixels (``foreground``), or else the data pixels no object covers.

    Args:
        objects: numbered objects on a ``shape`` grid (raster pixels).
        valid: ``shape`` bool, True where the raster holds data (None: everywhere).
    """
    covered = objects.label_image(shape) > 0
    rest = ~covered if valid is None else valid & ~covered
    mask = covered if foreground else rest
    return ObjectSet.from_masks([mask], [float("nan")], [Origin()], shape=shape).numbered()


def _combiner(
    prompt: Prompt, shape: tuple[int, int], windows: list[WindowResult]
) -> Callable[[ObjectSet], ObjectSet] | None:
    """How an automatic prompt with ``unique=false`` joins its objects, else None."""
    if not isinstance(prompt, AutomaticPrompt) or prompt.unique:
        return None
    valid = None
    if not prompt.foreground:
        valid = np.zeros(shape, dtype=bool)
        for window in windows:
            col, row, width, height = window.window
            if window.valid is not None:
                valid[row : row + height, col : col + width] |= window.valid
            else:
                valid[row : row + height, col : col + width] = True
    return lambda objects: binary_objects(objects, shape, foreground=prompt.foreground, valid=valid)


def _window_prompt(prompt: Prompt, col: int, row: int) -> Prompt:
    """``prompt`` in the pixels of the window whose top-left pixel is ``(col, row)``:
    box/point prompts and a text prompt's exemplar boxes are moved."""
    if col == 0 and row == 0:
        return prompt
    boxes = tuple(
        (x0 - col, y0 - row, x1 - col, y1 - row) for x0, y0, x1, y1 in getattr(prompt, "boxes", ())
    )
    if isinstance(prompt, TextPrompt):
        return replace(prompt, boxes=boxes) if boxes else prompt
    if not isinstance(prompt, PointBoxPrompt):
        return prompt
    return replace(prompt, points=tuple((x - col, y - row) for x, y in prompt.points), boxes=boxes)


def _origin(prompt: Prompt) -> Origin:
    """The origin of objects a backend answered as one label image: the text
    prompt, or the one box or point behind them."""
    if isinstance(prompt, TextPrompt):
        return Origin(prompt=prompt.text)
    if isinstance(prompt, PointBoxPrompt) and len(prompt.boxes) + len(prompt.points) == 1:
        if prompt.boxes:
            return Origin(box=prompt.boxes[0])
        return Origin(point=prompt.points[0])
    return Origin()


def _check(cancelled: CancelFn | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("The run was cancelled.")


def _base_properties(prompt: Prompt, backend: SegmentModel, info: RasterInfo) -> dict[str, Any]:
    props: dict[str, Any] = {"mode": prompt.mode}
    if isinstance(prompt, TextPrompt):
        props["prompt"] = prompt.text
    props["model"] = backend.version
    props["model_id"] = backend.model_id
    props["source"] = info.name
    return props
