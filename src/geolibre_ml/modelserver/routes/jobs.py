"""``/jobs/*``: long runs with progress and cancel, over :mod:`..jobs` (a thin router).

``POST /jobs/segment/{mode}`` takes exactly the form of ``/segment/{mode}`` (the same
dependency classes, built from the same table of modes) and makes exactly the same
checks before any job exists: a bad request gets the synchronous call's 4xx and leaves
nothing behind. The upload is then moved into the job's own folder (the request's
folder is removed when the request ends) and the job is queued: 202 with its URLs.
"""

# No ``from __future__ import annotations``: the endpoints' annotations name each
# mode's parameter class, which FastAPI must see as a class, not as a string.

import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import ProgressFn, TileRunner
from geolibre_ml.segment.results import SegmentResult

from ..answers import ANSWER_FORMATS, answer_format
from ..budget import admission
from ..errors import status_for
from ..jobs import (
    FAILED,
    Job,
    JobEvent,
    JobNotFinished,
    JobRegistry,
    JobWork,
    RegistryClosed,
    UnknownJob,
)
from ..params import CommonParams
from ..runs import Rendered, SegmentRequest, execute
from ..schemas import ErrorDetail, JobCreated, JobProgress, JobStatus
from .segment import MODES, RESPONSES, ModeRoute, checked_request, file_answer, run_input
from .service import Models

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: Seconds between keep-alive comments on an events stream with no news, so that
#: proxies and clients do not time an idle stream out.
HEARTBEAT_S = 15.0

_ERRORS = {code: RESPONSES[code] for code in (400, 403, 413, 422, 503)}
_UNKNOWN = {404: {"model": ErrorDetail, "description": "No such job (or it expired)."}}


def _registry(request: Request) -> JobRegistry:
    return request.app.state.jobs


def _job(request: Request, job_id: str) -> Job:
    try:
        return _registry(request).get(job_id)
    except UnknownJob:
        raise _unknown(request, job_id) from None


def _unknown(request: Request, job_id: str) -> HTTPException:
    shown = job_id if len(job_id) <= 64 else f"{job_id[:64]}…"
    ttl = _registry(request).ttl_s
    return HTTPException(
        404,
        f"No job {shown!r} on this server: it never existed, was deleted, or expired (a "
        f"finished job is kept {ttl:g} s, GEOLIBRE_ML_JOB_TTL_S). Submit it again with "
        "POST /jobs/segment/{mode}.",
    )


def status_of(event: JobEvent) -> JobStatus:
    """The typed status of a job's event."""
    return JobStatus(
        status=event.status,  # type: ignore[arg-type]
        progress=JobProgress(done=event.done, total=event.total),
        detail=event.detail,
    )


def job_work(
    spec: SegmentRequest, path: str | Path, name: str, models: ModelManager, key: str | None
) -> JobWork:
    """The blocking run of a job: :func:`~..runs.execute`, as the synchronous call runs
    it, into the job's folder, with the job's cancel poll, progress and result keeper.

    With ``GEOLIBRE_ML_DASK_SCHEDULER`` set, the job's tiles run on that Dask cluster
    (:mod:`geolibre_ml.segment.cluster`): progress counts finished tiles, cancel
    cancels their futures. Synchronous calls stay here, next to the prepared cache
    that answers further prompts on the same image.
    """

    def work(
        folder: Path,
        cancelled: Callable[[], bool],
        progress: ProgressFn,
        keep: Callable[[SegmentResult], None],
    ) -> Rendered:
        return execute(
            spec,
            path,
            name,
            models,
            out_dir=folder,
            content_key=key,
            cancelled=cancelled,
            progress=progress,
            keep=keep,
            runner=cluster_runner(),
        )

    return work


def cluster_runner() -> TileRunner | None:
    """The Dask cluster's runner when ``GEOLIBRE_ML_DASK_SCHEDULER`` is set, else None
    (``distributed`` is imported only then).

    Raises:
        ClusterUnavailable: no scheduler answers there, or distributed is missing
            (the job fails with that message).
    """
    if not os.environ.get("GEOLIBRE_ML_DASK_SCHEDULER", "").strip():
        return None
    from geolibre_ml.segment.cluster import runner_from_env

    return runner_from_env()


#: A path prefix as a proxy in front may announce it (``/ml``): segments of plain characters.
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def forwarded_prefix(request: Request) -> str:
    """The path prefix a reverse proxy serves this server under (``X-Forwarded-Prefix``;
    the sidecar sends ``/ml``), so that the job URLs given back work where the client
    is; anything but a plain path is ignored."""
    prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


def job_endpoint(route: ModeRoute) -> Any:
    """The ``POST /jobs/segment/{mode}`` endpoint of one mode."""
    params_class = route.params

    async def endpoint(
        request: Request,
        models: Models,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[params_class, Depends()],
    ) -> JSONResponse:
        spec = await checked_request(models, common, params)
        registry = _registry(request)
        async with run_input(common, request.app.state.images) as given:
            # The memory refusal (413) is the synchronous call's, before any job exists.
            nbytes = await admission(
                request.app.state.budget, given.path, given.name, common.tile_size
            )
            folder = registry.new_folder()
            try:
                path: str | Path = given.path
                scratch = None
                if common.file is not None:
                    # Moved, not copied: the request's folder is removed when this
                    # request ends, the job's when the job is.
                    path = scratch = folder / Path(given.path).name
                    Path(given.path).replace(path)
                job = registry.submit(
                    folder,
                    given.name,
                    spec.output_format,
                    job_work(spec, path, given.name, models, given.content_key),
                    nbytes=nbytes,
                    scratch=scratch,
                )
            except RegistryClosed:
                shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(
                    503, "The model server is shutting down: submit the job again once it is back."
                ) from None
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        base = f"{request.scope.get('root_path', '')}{forwarded_prefix(request)}/jobs/{job.id}"
        created = JobCreated(
            job_id=job.id,
            status_url=base,
            events_url=f"{base}/events",
            result_url=f"{base}/result",
        )
        return JSONResponse(created.model_dump(), status_code=202)

    endpoint.__name__ = f"job_segment_{route.mode.name}"
    endpoint.__doc__ = f"{route.mode.summary} As a job: 202 at once, then follow its URLs."
    return endpoint


for _route in MODES:
    router.add_api_route(
        f"/segment/{_route.mode.name}",
        job_endpoint(_route),
        methods=["POST"],
        name=f"job_segment_{_route.mode.name}",
        description=f"{_route.mode.summary} The same form as `{_route.mode.path}`; the job "
        "runs in the background (202 with its URLs).",
        status_code=202,
        response_model=JobCreated,
        responses=_ERRORS,
    )


@router.get(
    "/{job_id}",
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses=_UNKNOWN,
    summary="Where a job stands",
)
async def job_status(request: Request, job_id: str) -> JobStatus:
    """``queued``, ``running``, or an end status (``done``, ``failed`` with its detail,
    ``cancelled``), and the progress in steps."""
    return status_of(_job(request, job_id).event())


def sse(event: JobEvent | None) -> bytes:
    """One server-sent event: ``progress`` while the job is queued or running, then the
    end status as the event's name; ``None`` is a keep-alive comment."""
    if event is None:
        return b": keep-alive\n\n"
    name = event.status if event.final else "progress"
    data = json.dumps(status_of(event).model_dump(exclude_none=True), separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: `progress` events (data: the job's status) as "
            "the job moves, the current state first; then one event named after the end "
            "status (`done`, `failed`, `cancelled`), and the stream ends.",
            "content": {"text/event-stream": {}},
        },
        **_UNKNOWN,
    },
    summary="The job's progress as server-sent events",
)
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """Progress as it happens, then the end status (at once for a finished job)."""
    job = _job(request, job_id)
    events = _registry(request).events(job, heartbeat_s=HEARTBEAT_S)

    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            yield sse(event)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        # Caches and buffering proxies (nginx) must pass each event on as it comes.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/{job_id}/result",
    response_class=Response,
    responses={
        200: {
            "description": "The synchronous call's answer, or the same result in `output_format`.",
            "content": {fmt.media_type: {} for fmt in ANSWER_FORMATS.values()},
        },
        400: {"model": ErrorDetail, "description": "Unknown output_format."},
        409: {"model": ErrorDetail, "description": "The job is queued, running or cancelled."},
        **_UNKNOWN,
    },
    summary="The answer of a finished job",
)
async def job_result(
    request: Request,
    job_id: str,
    output_format: Annotated[
        str | None,
        Query(
            description="Another format of the same result, without running again: "
            + ", ".join(ANSWER_FORMATS)
            + ". Absent: the job's own output_format."
        ),
    ] = None,
) -> Response:
    """Exactly what the synchronous call would have answered (same bytes and headers);
    a failed job answers its failure (the same status and detail)."""
    job = _job(request, job_id)
    asked = output_format if output_format and output_format.strip() else job.output_format
    fmt = answer_format(asked)
    if job.error is not None:
        return JSONResponse({"detail": job.error.detail}, status_code=status_for(job.error))
    if job.status == FAILED:
        # A bug of ours, logged with its traceback when the job failed.
        return JSONResponse({"detail": job.detail}, status_code=500)
    try:
        rendered = await _registry(request).result(job, fmt)
    except JobNotFinished:
        raise HTTPException(409, _not_finished(job)) from None
    except UnknownJob:
        raise _unknown(request, job_id) from None
    return file_answer(rendered)


def _not_finished(job: Job) -> str:
    if job.status == "cancelled":
        return f"Job {job.id} was cancelled: it has no result. Submit it again."
    progress = f" ({job.done} of {job.total} steps)" if job.total else ""
    return (
        f"Job {job.id} is {job.status}{progress}: it has no result yet. Wait for the end "
        f"event at /jobs/{job.id}/events, or poll /jobs/{job.id} until it is done."
    )


@router.delete(
    "/{job_id}",
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses=_UNKNOWN,
    summary="Cancel a job, or remove a finished one",
)
async def job_delete(request: Request, job_id: str) -> JobStatus:
    """A queued or running job is cancelled: the run stops within one tile and its files
    are removed; this answers once it has stopped (``cancelled``), and the job answers
    ``cancelled`` until it expires. A finished job is removed with its files (404
    afterwards); the answer is its last status."""
    try:
        job = await _registry(request).cancel(job_id)
    except UnknownJob:
        raise _unknown(request, job_id) from None
    return status_of(job.event())
