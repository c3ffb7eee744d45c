"""One segmentation request: checked up front, computed off the event loop, written to a file.

:class:`SegmentRequest` is what a ``/segment/*`` call asks for, independent of HTTP;
:func:`execute` does the work synchronously (in a worker thread) and writes the answer
to a file; :func:`compute` runs it for a live request: at most ``workers`` at once, and
given up as soon as the caller says the client has gone away. Nothing here knows of
HTTP requests: the jobs of the tiling work run the same functions.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from geolibre_ml.segment import backends
from geolibre_ml.segment.errors import Cancelled, ModelUnavailable, no_objects
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import ProgressFn, TileRunner, segment_raster
from geolibre_ml.segment.prompts import OutputOptions, Prompt, ReadOptions
from geolibre_ml.segment.results import SegmentResult

from .answers import ANSWER_FORMATS, FILENAMES
from .errors import as_segment_error

log = logging.getLogger("geolibre_ml.modelserver")

__all__ = ["FILENAMES", "Rendered", "SegmentRequest", "check_model", "compute", "execute"]


@dataclass(frozen=True)
class SegmentRequest:
    """What a ``/segment/*`` call asks for, checked and resolved.

    Attributes:
        prompt: the prompt; box/point coordinates in ``point_crs`` (pixels when None).
        version, model_id: the model, defaults filled in.
        output_format: one of :data:`geolibre_ml.segment.formats.OUTPUT_FORMATS`.
        read, output: how to read the raster and shape the answer.
        point_crs: CRS of box/point coordinates, or None for pixels.
    """

    prompt: Prompt
    version: str
    model_id: str
    output_format: str
    read: ReadOptions
    output: OutputOptions
    point_crs: str | None = None


@dataclass(frozen=True)
class Rendered:
    """An answer written to a file, and how to label it."""

    path: Path
    media_type: str
    filename: str | None
    count: int
    reused: bool = False


def check_model(manager: ModelManager, version: str, model_id: str) -> None:
    """Fail fast, before an upload is copied, when the model cannot be loaded here.

    Raises:
        ModelUnavailable: with the backend's instructions to make it available.
    """
    if [version, model_id] in manager.loaded():
        return
    state = backends.availability(version, model_id)
    if not state.ready:
        raise ModelUnavailable(state.message)


def execute(
    spec: SegmentRequest,
    path: str | Path,
    name: str,
    manager: ModelManager,
    *,
    out_dir: Path,
    content_key: str | None = None,
    cancelled: Callable[[], bool] | None = None,
    progress: ProgressFn | None = None,
    keep: Callable[[SegmentResult], None] | None = None,
    runner: TileRunner | None = None,
) -> Rendered:
    """Segment the file at ``path`` as ``spec`` asks and write the answer (blocking).

    Args:
        out_dir: the folder the answer file is written to.
        content_key: digest of the file's bytes; prepared windows are then cached in
            ``manager.prepared`` for further prompts on the same image.
        cancelled: polled by the pipeline between windows and steps.
        progress: ``progress(done, total)`` as windows and finishing steps complete.
        keep: called with the result (objects found) before the answer is written: a
            job keeps it to answer in other formats later.
        runner: what runs the tiles (None: this process; jobs pass the Dask cluster's
            runner when ``GEOLIBRE_ML_DASK_SCHEDULER`` is set).

    Raises:
        SegmentError: subclasses for every problem with the input or the request,
            including exceptions GDAL or PROJ raised on the file (see
            :func:`~.errors.as_segment_error`); :class:`NoObjectsFound` for an
            empty result.
    """
    started = time.perf_counter()
    try:
        if cancelled is not None and cancelled():
            raise Cancelled("The client disconnected before the run started.")
        with manager.lease(spec.version, spec.model_id) as model:
            result = segment_raster(
                path,
                spec.prompt,
                model,
                name=name,
                read=spec.read,
                output=spec.output,
                prompt_crs=spec.point_crs,
                progress=progress,
                cancelled=cancelled,
                cache=manager.prepared,
                content_key=content_key,
                runner=runner,
            )
        count = len(result.features)
        if count == 0:
            raise no_objects(spec.prompt.mode)
        if keep is not None:
            keep(result)
        fmt = ANSWER_FORMATS[spec.output_format]
        answer = fmt.write(result, out_dir / f"answer{fmt.extension}")
    except Exception as exc:
        mapped = as_segment_error(exc, name)
        if mapped is None:
            raise
        if mapped is not exc:
            # The file's fault as far as we can tell; the traceback stays available in
            # debug logs in case it is ours after all.
            log.warning("%s: %s on the input, answered as a client error", name, type(exc).__name__)
            log.debug("Traceback of the mapped error", exc_info=exc)
            raise mapped from exc
        raise
    log.info(
        "%s %s:%s on %r: %d object(s) as %s in %.2f s",
        spec.prompt.mode,
        spec.version,
        spec.model_id,
        name,
        count,
        spec.output_format,
        time.perf_counter() - started,
    )
    return Rendered(
        answer,
        fmt.media_type,
        fmt.filename,
        count,
        reused=result.reused_windows > 0,
    )


async def compute(
    disconnected: Callable[[], Awaitable[None]],
    limiter: anyio.CapacityLimiter,
    work: Callable[[Callable[[], bool]], Rendered],
) -> Rendered:
    """Run ``work(cancelled)`` in a worker thread, at most ``limiter`` at once.

    ``disconnected()`` returns when the client has gone away: ``cancelled()`` then
    turns True, so the pipeline stops at its next check instead of computing an
    answer nobody will read.
    """
    gone = threading.Event()

    async def watch() -> None:
        await disconnected()
        gone.set()

    result: Rendered | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        try:
            result = await anyio.to_thread.run_sync(
                functools.partial(work, gone.is_set), limiter=limiter
            )
        except Exception as exc:
            # Raised outside the task group, so that it is not wrapped in an ExceptionGroup.
            error = exc
        finally:
            tasks.cancel_scope.cancel()
    if error is not None:
        raise error
    assert result is not None
    return result
