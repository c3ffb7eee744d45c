"""One segmentation request: checked up front, computed off the event loop, rendered.

:class:`SegmentRequest` is what a ``/segment/*`` call asks for, independent of HTTP;
:func:`execute` does the work synchronously (in a worker thread) and
:func:`compute` runs it for a live request: at most ``workers`` at once, and given up
as soon as the client disconnects.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import Request

from geolibre_ml.segment import backends, formats
from geolibre_ml.segment.errors import Cancelled, ModelUnavailable, NoObjectsFound
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import ProgressFn, segment_raster
from geolibre_ml.segment.prompts import OutputOptions, Prompt, ReadOptions

from .errors import as_segment_error

log = logging.getLogger("geolibre_ml.modelserver")

NO_OBJECTS = {
    "text": "No objects found for the given prompt. Try a different prompt or a lower "
    "confidence_threshold.",
    "automatic": "No objects found for automatic segmentation. Try a smaller min_size or "
    "no max_size.",
    "predict": "No objects found for the given prompts. Try a larger box, other points, "
    "or a smaller min_size.",
}

#: ``Content-Disposition`` file names of the raster answers (those of samgeo-api).
FILENAMES = {"geotiff": "mask.tif", "png": "mask.png"}


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
    """An answer body and how to label it."""

    body: bytes
    media_type: str
    filename: str | None
    count: int


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
    path: Path,
    name: str,
    manager: ModelManager,
    *,
    cancelled: Callable[[], bool] | None = None,
    progress: ProgressFn | None = None,
) -> Rendered:
    """Segment the file at ``path`` as ``spec`` asks and render the answer (blocking).

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
        with manager.lease(spec.version, spec.model_id) as backend:
            result = segment_raster(
                path,
                spec.prompt,
                backend,
                name=name,
                read=spec.read,
                output=spec.output,
                prompt_crs=spec.point_crs,
                progress=progress,
                cancelled=cancelled,
            )
        count = len(result.features)
        if count == 0:
            raise NoObjectsFound(NO_OBJECTS[spec.prompt.mode])
        body = formats.render(result, spec.output_format)
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
        body, formats.MEDIA_TYPES[spec.output_format], FILENAMES.get(spec.output_format), count
    )


async def compute(
    request: Request,
    limiter: anyio.CapacityLimiter,
    work: Callable[[Callable[[], bool]], Rendered],
) -> Rendered:
    """Run ``work(cancelled)`` in a worker thread, at most ``limiter`` at once.

    While it runs, the request's connection is watched: when the client goes away,
    ``cancelled()`` turns True so the pipeline stops at its next check instead of
    computing an answer nobody will read.
    """
    gone = threading.Event()

    async def watch() -> None:
        # The body was read when the form was parsed; what the server hears from the
        # client now is its disconnect, if it leaves before the answer.
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return

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
