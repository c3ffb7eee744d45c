"""One segmentation run, in four stages: plan, per window, merge, finish.

1. **plan** (:func:`plan_run`): open the raster, check the request against it, turn
   the prompt into raster pixels, decide the windows to read and the read plan every
   window shares (band roles, stretch, validity rules; :class:`~.readplan.ReadPlan`),
   measured once or passed in ready-made. A raster that fits the model's input is one
   window; a larger one is cut into tiles of the model's native size
   (:mod:`.tiling`), and a box/point prompt is answered in the tile that holds it.
2. **per window** (:func:`segment_tile`): a pure function of a :class:`WindowTask`
   (source, window, read plan, prompt, model settings) and the model: it reads only
   its window (or takes the prepared state from the cache), lets the backend answer,
   removes nodata pixels, and returns the window's objects as polygons cut to the
   part of the raster the tile owns (:class:`~.seams.TilePieces`). This is the unit
   that tiles, batches and a cluster run; tiles run on several threads for
   thread-safe models and in batches for models that batch, the next batch read
   while the model works on this one.
3. **merge** (:class:`~.seams.Stitcher`): pieces of one object in neighbouring tiles
   joined across the seams, tile by tile; the objects numbered once for the run.
4. **finish** (:mod:`.finish`): size filters, polygons to the raster's CRS,
   properties, ground areas, reprojection and simplification. A label image is made
   only when an answer asks for one, window by window
   (:meth:`.outlines.OutlineSet.label_window`).

On a cluster (:class:`GridRunner`), the merge and finishing of a grid run next to
the tiles, block by block (:mod:`.blocks`), for the same answer.

Progress is reported after each window and each finishing step; cancellation is
checked between windows and steps, and inside the long steps at their own
checkpoints (:mod:`.checkpoints`: the backend's phases, polygonizing, ground
areas). An empty result is a normal outcome; callers decide how to say so.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely
from pyproj import CRS
from rasterio.windows import Window

from .cache import PreparedCache, RunCache
from .checkpoints import watching
from .chip import ImageChip
from .crs import footprint_may_unwrap, parse_crs
from .errors import Cancelled, InvalidRequest
from .features import FeatureSet
from .finish import Finishing, finish_features
from .masks import Box, MaskSet, ObjectSet, Origin
from .models import ModelSettings
from .outlines import OutlineSet
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
from .seams import Stitcher, TilePieces, tile_pieces
from .tiling import TileGrid, WindowBox, plan_windows, prompt_windows, tile_grid

__all__ = [
    "FINISH_STEPS",
    "GridRunner",
    "RunPlan",
    "TileRunner",
    "WindowResult",
    "WindowTask",
    "binary_objects",
    "build_features",
    "finish_features",
    "plan_run",
    "plan_windows",
    "segment_raster",
    "segment_tile",
    "segment_window",
]

#: ``progress(done, total)``: called as windows and finishing steps complete.
ProgressFn = Callable[[int, int], None]
#: ``cancelled()``: returns True when the caller wants the run to stop.
CancelFn = Callable[[], bool]


class TileRunner(Protocol):
    """Runs a run's per-window tasks and yields their pieces in the order of ``tasks``
    (the :class:`~.seams.Stitcher` joins tiles in grid order): :func:`run_tiles` in
    this process, or :class:`~.cluster.DaskRunner` on a Dask cluster."""

    def __call__(
        self,
        tasks: list[WindowTask],
        model: SegmentModel,
        *,
        source: RasterSource | None = None,
        cache: PreparedCache | RunCache | None = None,
        cancelled: CancelFn | None = None,
    ) -> Iterator[TilePieces]: ...


#: Finishing steps counted by progress: filters, polygons, areas and reprojection.
FINISH_STEPS = 3


class GridRunner(TileRunner, Protocol):
    """A :class:`TileRunner` that can also merge a grid's tiles and finish them where
    they ran (:class:`~.cluster.DaskRunner`: on the cluster's workers, by blocks of
    tiles, :mod:`.blocks`), for the same answer a local run gives."""

    def segment_grid(
        self,
        tasks: list[WindowTask],
        grid: TileGrid,
        model: SegmentModel,
        *,
        finishing: Finishing,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
    ) -> tuple[FeatureSet, OutlineSet]:
        """The run's features and kept objects, as :meth:`Finishing.apply` of the
        stitched tiles gives them; progress counts the tiles, then
        :data:`FINISH_STEPS`."""
        ...


class SegmentModel(Protocol):
    """What a run needs of a model: a :class:`~.backends.Backend` or a lease of one."""

    version: str
    model_id: str

    @property
    def input_size(self) -> int | None: ...

    def check_prompt(self, prompt: Prompt) -> None: ...

    def prepare(self, chip: ImageChip) -> Any: ...

    def prepare_batch(self, chips: list[ImageChip]) -> list[Any]: ...

    def prepared_nbytes(self, prepared: Any) -> int: ...

    def run(self, prepared: Any, prompt: Prompt) -> ObjectSet | MaskSet: ...


#: Most threads a run's tiles use on a thread-safe model.
MAX_TILE_THREADS = 4


def tile_threads() -> int:
    """Threads for the tiles of one run: the CPUs this process may use, at most
    :data:`MAX_TILE_THREADS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_TILE_THREADS))


@dataclass(frozen=True)
class WindowTask:
    """Everything one window's work depends on: plain, serializable values.

    Attributes:
        source: the raster (a local path or a ``/vsicurl/`` URL).
        window: ``(col_off, row_off, width, height)`` in raster pixels.
        plan: the raster's read plan.
        prompt: the window's prompt, coordinates in raster pixels.
        model: which model answers.
        name: the raster's name in messages.
        content_key: digest of the source's bytes; with it the prepared window is
            cached and reused by later prompts on the same image (None: not cached).
        index: the tile's place in the run's grid (None: a window with no seams).
        core: the part of the raster the tile owns (None: its whole window).
        neighbours: the windows of the tiles around it.
        junctions: trace polygons with vertices at label junctions (for
            reprojection and simplification).
        trace_valid: also trace the core's data pixels (for the binary answer of
            ``unique=false, foreground=false``).
    """

    source: str
    window: WindowBox
    plan: ReadPlan
    prompt: Prompt
    model: ModelSettings
    name: str | None = None
    content_key: str | None = None
    index: int | None = None
    core: Box | None = None
    neighbours: tuple[WindowBox, ...] = ()
    junctions: bool = False
    trace_valid: bool = False

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
    """What one window's model answer gives: its objects in raster pixels, nodata removed.

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
    """The plan of a run: the raster, its read plan, the windows and their prompts.

    Attributes:
        info: the raster.
        read_plan: how every window is read.
        windows: the windows to segment, in order.
        prompts: each window's prompt (raster pixels).
        prompt: the whole prompt, in raster pixels.
        grid: the tile grid when ``windows`` are its tiles (their objects are
            joined across seams), else None.
        indexes: each window's index in ``grid`` (None without a grid).
    """

    info: RasterInfo
    read_plan: ReadPlan
    windows: tuple[WindowBox, ...]
    prompt: Prompt
    prompts: tuple[Prompt, ...] = ()
    grid: TileGrid | None = None
    indexes: tuple[int | None, ...] = ()

    def tasks(
        self,
        source: str,
        model: ModelSettings,
        *,
        content_key: str | None = None,
        junctions: bool = False,
        trace_valid: bool = False,
    ) -> list[WindowTask]:
        """The per-window tasks of the run (plain data: they can run anywhere)."""
        cores = self.grid.cores if self.grid is not None else ()
        grid_windows = self.grid.windows if self.grid is not None else ()
        out = []
        for window, prompt, index in zip(self.windows, self.prompts, self.indexes, strict=True):
            core, neighbours = None, ()
            if index is not None and self.grid is not None:
                core = cores[index]
                neighbours = tuple(grid_windows[i] for i in self.grid.neighbours(index))
            out.append(
                WindowTask(
                    source,
                    window,
                    self.read_plan,
                    prompt,
                    model,
                    self.info.name,
                    content_key,
                    index,
                    core,
                    neighbours,
                    junctions,
                    trace_valid,
                )
            )
        return out


def plan_run(
    src: RasterSource,
    prompt: Prompt,
    model: SegmentModel,
    *,
    prompt_crs: CRS | None = None,
    read: ReadOptions | None = None,
) -> RunPlan:
    """The windows and the read plan of a run on the opened ``src``.

    A raster that fits in one tile (``read.tile_size``, else the model's
    :attr:`~.backends.Backend.input_size`, else :data:`.tiling.DEFAULT_TILE`) is one
    window. A larger one is cut into overlapping tiles for text and automatic
    prompts; a text prompt's exemplar boxes go to the tiles that hold them whole (a
    tile without any answers the text alone).
    A box/point prompt is answered in the tiles that hold its boxes and points
    (:func:`.tiling.prompt_windows`), so only those are read.

    Raises:
        InvalidRequest: a prompt outside the image, or a CRS for an image without one.
    """
    read = read or ReadOptions()
    info = src.info
    pixel_prompt = prompt_to_pixels(prompt, prompt_crs, info)
    grid = tile_grid(
        info.width,
        info.height,
        model.input_size,
        read.tile_size,
        read.tile_overlap,
        getattr(model, "tile_overlap", None),
    )
    if len(grid) == 1:
        return RunPlan(
            info,
            src.plan,
            ((0, 0, info.width, info.height),),
            pixel_prompt,
            (pixel_prompt,),
            indexes=(None,),
        )
    if isinstance(pixel_prompt, PointBoxPrompt):
        mode = pixel_prompt.box_mode or getattr(model, "default_box_mode", "object")
        similar = mode == "similar"
        parts = prompt_windows(pixel_prompt, grid, similar=similar)
        return RunPlan(
            info,
            src.plan,
            tuple(w for w, _ in parts),
            pixel_prompt,
            tuple(p for _, p in parts),
            None,
            (None,) * len(parts),
        )
    windows, prompts, indexes = [], [], []
    for index, window in enumerate(grid.windows):
        windows.append(window)
        prompts.append(_tile_prompt(pixel_prompt, window))
        indexes.append(index)
    return RunPlan(
        info, src.plan, tuple(windows), pixel_prompt, tuple(prompts), grid, tuple(indexes)
    )


def _tile_prompt(prompt: Prompt, window: WindowBox) -> Prompt:
    """A text prompt with the exemplar boxes that ``window`` holds whole; other prompts
    as they are."""
    if not isinstance(prompt, TextPrompt) or not prompt.boxes:
        return prompt
    col, row, width, height = window
    inside = [
        i
        for i, (x0, y0, x1, y1) in enumerate(prompt.boxes)
        if x0 >= col and y0 >= row and x1 <= col + width and y1 <= row + height
    ]
    labels = prompt.box_labels
    return replace(
        prompt,
        boxes=tuple(prompt.boxes[i] for i in inside),
        box_labels=tuple(labels[i] for i in inside) if labels else labels,
    )


def segment_window(
    task: WindowTask,
    model: SegmentModel,
    *,
    source: RasterSource | None = None,
    cache: PreparedCache | RunCache | None = None,
    cancelled: CancelFn | None = None,
    ready: tuple[Any, np.ndarray] | None = None,
) -> WindowResult:
    """The objects of one window, in raster pixels, nodata removed.

    Reads only ``task.window`` (from ``source`` when it is already open, else by
    opening ``task.source`` with the task's read plan, which measures nothing), or
    takes the prepared window from ``cache`` when an earlier prompt on the same
    image prepared it, or uses ``ready`` (``(prepared, valid)``, prepared in a batch
    with other windows).
    """
    col, row = task.window[:2]

    def prepare() -> tuple[tuple[Any, np.ndarray], int]:
        if ready is not None:
            return ready, model.prepared_nbytes(ready[0]) + ready[1].nbytes
        chip = read_window(task, source)
        _check(cancelled)
        with watching(cancelled):
            prepared = model.prepare(chip)
        return (prepared, chip.valid), model.prepared_nbytes(prepared) + chip.valid.nbytes

    if cache is not None:
        (prepared, valid), reused = cache.fetch(task.cache_key, prepare)
        reused = reused and ready is None
    else:
        (prepared, valid), reused = prepare()[0], False
    _check(cancelled)
    with watching(cancelled):
        answer = model.run(prepared, _window_prompt(task.prompt, col, row))
    objects = answer.objects(_origin(task.prompt)) if isinstance(answer, MaskSet) else answer
    objects = objects.without_invalid(valid).shifted(row, col)
    return WindowResult(task.window, objects, reused, valid)


def read_window(task: WindowTask, source: RasterSource | None = None) -> ImageChip:
    """The chip of ``task.window``, from ``source`` or by opening ``task.source``."""
    col, row, width, height = task.window
    if source is not None:
        return source.read_chip(Window(col, row, width, height))
    with RasterSource(task.source, name=task.name, plan=task.plan) as opened:
        return opened.read_chip(Window(col, row, width, height))


def segment_tile(
    task: WindowTask,
    model: SegmentModel,
    *,
    source: RasterSource | None = None,
    cache: PreparedCache | RunCache | None = None,
    cancelled: CancelFn | None = None,
    ready: tuple[Any, np.ndarray] | None = None,
) -> TilePieces:
    """One window's work from pixels to polygons: :func:`segment_window`, then its
    objects traced and cut to the tile's core (:func:`.seams.tile_pieces`)."""
    found = segment_window(
        task, model, source=source, cache=cache, cancelled=cancelled, ready=ready
    )
    _check(cancelled)
    with watching(cancelled):
        pieces = tile_pieces(
            found.objects,
            window=task.window,
            core=task.core,
            neighbours=task.neighbours,
            index=task.index,
            junctions=task.junctions,
            valid=_valid_or_all(found) if task.trace_valid else None,
        )
    pieces.reused = found.reused
    return pieces


def _valid_or_all(found: WindowResult) -> np.ndarray:
    if found.valid is not None:
        return found.valid
    _col, _row, width, height = found.window
    return np.ones((height, width), dtype=bool)


def run_tiles(
    tasks: list[WindowTask],
    model: SegmentModel,
    *,
    source: RasterSource | None = None,
    cache: PreparedCache | RunCache | None = None,
    cancelled: CancelFn | None = None,
) -> Iterator[TilePieces]:
    """Every task's :func:`segment_tile`, yielded in the order of ``tasks``.

    One task runs here, on ``source``. Several run on :func:`tile_threads` threads
    when the model is thread-safe (each thread reads through its own dataset), or
    in batches of the model's ``batch_size`` when it batches: one encoder pass per
    batch, the next batch read in the background meanwhile.
    """
    if len(tasks) <= 1:
        for task in tasks:
            yield segment_tile(task, model, source=source, cache=cache, cancelled=cancelled)
        return
    if getattr(model, "thread_safe", False) and tile_threads() > 1:
        yield from _threaded(tasks, model, cache, cancelled)
        return
    size = max(1, int(getattr(model, "batch_size", 1)))
    yield from _batched(tasks, model, cache, cancelled, size)


class _Readers:
    """One open dataset per thread (GDAL datasets are not shared between threads)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._opened: list[RasterSource] = []
        self._lock = threading.Lock()

    def get(self, task: WindowTask) -> RasterSource:
        src = getattr(self._local, "src", None)
        if src is None:
            src = RasterSource(task.source, name=task.name, plan=task.plan)
            self._local.src = src
            with self._lock:
                self._opened.append(src)
        return src

    def close(self) -> None:
        for src in self._opened:
            src.close()


def _threaded(
    tasks: list[WindowTask],
    model: SegmentModel,
    cache: PreparedCache | RunCache | None,
    cancelled: CancelFn | None,
) -> Iterator[TilePieces]:
    threads = tile_threads()
    readers = _Readers()
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    def work(task: WindowTask) -> TilePieces:
        return segment_tile(task, model, source=readers.get(task), cache=cache, cancelled=stopped)

    pending: deque[Future[TilePieces]] = deque()
    todo = iter(tasks)
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="geolibre-tile") as pool:
            try:
                for task in todo:
                    pending.append(pool.submit(work, task))
                    if len(pending) >= 2 * threads:
                        break
                while pending:
                    yield pending.popleft().result()
                    _check(cancelled)
                    task = next(todo, None)
                    if task is not None:
                        pending.append(pool.submit(work, task))
            finally:
                # Stop the other tiles at their next checkpoint (an error, a cancel, or a
                # consumer that went away), then let the pool wind down.
                stop.set()
                for future in pending:
                    future.cancel()
    finally:
        readers.close()


def _batched(
    tasks: list[WindowTask],
    model: SegmentModel,
    cache: PreparedCache | RunCache | None,
    cancelled: CancelFn | None,
    size: int,
) -> Iterator[TilePieces]:
    readers = _Readers()

    def cached(task: WindowTask) -> bool:
        return cache is not None and task.cache_key is not None and task.cache_key in cache

    def read(batch: list[WindowTask]) -> list[ImageChip | None]:
        return [None if cached(t) else read_window(t, readers.get(t)) for t in batch]

    batches = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="geolibre-read") as reader:
            upcoming = reader.submit(read, batches[0])
            for k, batch in enumerate(batches):
                chips = upcoming.result()
                if k + 1 < len(batches):
                    upcoming = reader.submit(read, batches[k + 1])
                _check(cancelled)
                fresh = [c for c in chips if c is not None]
                with watching(cancelled):
                    prepared = iter(model.prepare_batch(fresh) if fresh else [])
                for task, chip in zip(batch, chips, strict=True):
                    ready = (next(prepared), chip.valid) if chip is not None else None
                    yield segment_tile(task, model, cache=cache, cancelled=cancelled, ready=ready)
    finally:
        readers.close()


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
    runner: TileRunner | None = None,
) -> SegmentResult:
    """Segment one raster file with one prompt, tile by tile where it is large.

    Args:
        path: GeoTIFF, PNG or JPEG on local disk, or a ``/vsicurl/`` URL.
        prompt: what to find; box/point coordinates are pixels unless ``prompt_crs``.
        backend: a loaded backend, or a lease of one.
        name: the file name to report (defaults to ``path``'s name).
        read: bands, ``tile_size`` and ``tile_overlap`` (pixels; see :mod:`.tiling`).
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
        runner: what runs the per-window tasks (None: :func:`run_tiles`, here; a
            :class:`~.cluster.DaskRunner` sends them to a cluster). Planning, the
            merge and finishing stay in this process either way.

    Raises:
        SegmentError: subclasses for bad input, unreadable images, unsupported prompts.
    """
    read = read or ReadOptions()
    output = output or OutputOptions()
    backend.check_prompt(prompt)
    target_crs = parse_crs(output.output_crs, field="output_crs") if output.output_crs else None
    source_crs = parse_crs(prompt_crs, field="point_crs") if prompt_crs else None
    settings = ModelSettings(backend.version, backend.model_id)
    automatic = isinstance(prompt, AutomaticPrompt)
    binary_rest = automatic and not prompt.unique and not prompt.foreground

    with RasterSource(path, name=name, bands=read.bands, plan=plan) as src:
        info = src.info
        if target_crs is not None and info.crs is None:
            raise InvalidRequest(
                "output_crs needs a georeferenced raster, but this image has no CRS. "
                "Leave output_crs empty to get pixel coordinates.",
                fields="output_crs",
            )
        run = plan_run(src, prompt, backend, prompt_crs=source_crs, read=read)
        junctions = target_crs is not None or bool(output.simplify_tolerance)
        tasks = run.tasks(
            str(path),
            settings,
            content_key=content_key,
            junctions=junctions,
            trace_valid=binary_rest,
        )
        total = len(tasks) + FINISH_STEPS
        base = _base_properties(prompt, backend, info)
        finishing = Finishing(
            info.transform, info.crs, info.georeferenced, output, target_crs, base
        )
        concepts = prompt.concepts if isinstance(prompt, TextPrompt) else ()
        _check(cancelled)
        grid_runner = getattr(runner, "segment_grid", None)
        if grid_runner is not None and _spreads(run, prompt, finishing):
            assert run.grid is not None
            features, kept = grid_runner(
                tasks,
                run.grid,
                backend,
                finishing=finishing,
                progress=progress,
                cancelled=cancelled,
            )
            return SegmentResult(features, kept, info, features.crs, base, concepts=concepts)
        stitcher = Stitcher(run.grid, threads=tile_threads())
        reused = 0
        shared = RunCache(cache, len(tasks)) if cache is not None else None
        run_windows = runner if runner is not None else run_tiles
        tiles = run_windows(tasks, backend, source=src, cache=shared, cancelled=cancelled)
        for done, tile in enumerate(tiles, start=1):
            stitcher.add(tile)
            reused += tile.reused
            if progress is not None:
                progress(done, total)
            _check(cancelled)
    step = len(tasks)

    def advance() -> None:
        nonlocal step
        _check(cancelled)
        step += 1
        if progress is not None:
            progress(step, total)

    combine = _combiner(prompt, stitcher)
    with watching(cancelled):
        # The merged objects are handed over, not kept here: finishing turns them into
        # the features' polygons, and the answer is held once.
        features, kept = finishing.apply(stitcher.finish(), advance=advance, combine=combine)
    return SegmentResult(
        features, kept, info, features.crs, base, reused_windows=reused, concepts=concepts
    )


def _spreads(run: RunPlan, prompt: Prompt, finishing: Finishing) -> bool:
    """Whether a run's merge and finishing may be cut into parts done where its tiles
    ran (:meth:`GridRunner.segment_grid`) and still give the answer one process gives:
    a grid of tiles, no binary answer (``unique=false`` joins every object into one),
    and no reprojection that might shift some longitudes of the answer by a turn and
    not others (a raster near the antimeridian, :func:`.crs.footprint_may_unwrap`)."""
    if run.grid is None:
        return False
    if isinstance(prompt, AutomaticPrompt) and not prompt.unique:
        return False
    info = run.info
    if finishing.target_crs is not None and info.crs is not None:
        return not footprint_may_unwrap(
            info.transform, info.width, info.height, info.crs, finishing.target_crs
        )
    return True


def build_features(
    masks: MaskSet | ObjectSet, *, valid: np.ndarray | None, finishing: Finishing
) -> tuple[FeatureSet, np.ndarray]:
    """Features of one chip's answer, and its filtered label image.

    The later stages for an answer on one grid: nodata (``valid`` False) removed,
    objects traced (:func:`.seams.tile_pieces`), then ``finishing``; the label image
    is flattened from the kept objects (highest score wins).
    """
    objects = masks.objects() if isinstance(masks, MaskSet) else masks
    shape = masks.labels.shape if isinstance(masks, MaskSet) else valid.shape
    objects = objects.without_invalid(valid)
    junctions = finishing.target_crs is not None or bool(finishing.output.simplify_tolerance)
    stitcher = Stitcher()
    stitcher.add(tile_pieces(objects, window=(0, 0, shape[1], shape[0]), junctions=junctions))
    features, kept = finishing.apply(stitcher.finish())
    return features, kept.label_image(shape)


def binary_objects(
    objects: OutlineSet, *, foreground: bool, valid: shapely.Geometry | None
) -> OutlineSet:
    """samgeo's binary answer (``unique=false``): one object of value 1 covering every
    object's pixels (``foreground``), or else the data pixels no object covers.

    Args:
        objects: the run's objects, raster pixels.
        valid: the raster's data pixels as a polygon (None: the objects' own union
            stands for them, so the rest is empty).
    """
    covered = shapely.union_all(objects.geometries) if len(objects) else shapely.Polygon()
    if foreground:
        shape = covered
    else:
        shape = shapely.difference(valid, covered) if valid is not None else shapely.Polygon()
    pixels = round(float(shapely.area(shape)))
    if pixels == 0:
        return OutlineSet()
    return OutlineSet(
        np.array([shape], dtype=object),
        np.array([pixels], dtype=np.int64),
        np.array([np.nan]),
        [Origin()],
        np.array([False]),
        np.array([False]),
    )


def _combiner(prompt: Prompt, stitcher: Stitcher) -> Callable[[OutlineSet], OutlineSet] | None:
    """How an automatic prompt with ``unique=false`` joins its objects, else None."""
    if not isinstance(prompt, AutomaticPrompt) or prompt.unique:
        return None
    valid = None if prompt.foreground else stitcher.valid_area()
    return lambda objects: binary_objects(objects, foreground=prompt.foreground, valid=valid)


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
