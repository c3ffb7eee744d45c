"""Jobs: segmentations that outlive their request, observable while they run and cancellable.

No HTTP here (the router is :mod:`.routes.jobs`). A :class:`JobRegistry` owns the jobs of
one server:

- **Queue.** At most ``workers`` jobs run at once (``GEOLIBRE_ML_JOB_WORKERS``, default 1);
  the others wait, first come first served, as ``queued``. A job also waits, still
  ``queued``, for its share of the memory budget (:func:`~.budget.held`), like a
  synchronous run.
- **States.** ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``.
- **Events.** Every ``progress(done, total)`` call of the pipeline, and every change of
  state, is published to the job's subscribers (:meth:`JobRegistry.events`) as a
  :class:`JobEvent`; the last event of a job has its end status.
- **Files.** Each job has its own folder ``<TMPDIR>/geolibre-ml-uploads/<pid>/job-*``:
  the upload (removed once the run ends), the result as a pickle (:data:`RESULT_FILE`:
  plain data, loaded to answer in another format without running again) and each
  answer file rendered (cached). A failed or cancelled job keeps no files.
- **Lifetime.** A finished job is kept ``ttl_s`` seconds (``GEOLIBRE_ML_JOB_TTL_S``,
  default 3600) after it ended, then removed with its folder by a sweeper (and, at the
  latest, when it is next asked for). :meth:`JobRegistry.cancel` cancels a queued or
  running job (the run stops at the pipeline's next check, within one tile) and removes
  its files; the job then answers ``cancelled`` until its time is up. Cancelling a
  finished job removes it at once. At shutdown every job is cancelled and every job
  folder removed.

The registry lives on the server's event loop (it is not thread-safe); only the run
itself goes to a worker thread, and its progress comes back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import math
import os
import pickle
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

from geolibre_ml.segment.errors import Cancelled, SegmentError
from geolibre_ml.segment.pipeline import ProgressFn
from geolibre_ml.segment.results import SegmentResult

from .answers import AnswerFormat
from .budget import MemoryBudget, held
from .errors import as_segment_error
from .runs import Rendered
from .uploads import UploadArea

log = logging.getLogger("geolibre_ml.modelserver")

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
#: The end states: a job in one of them never changes again.
FINAL_STATES: Final = frozenset({DONE, FAILED, CANCELLED})

#: The pickled :class:`SegmentResult` of a finished job, in its folder.
RESULT_FILE = "result.pickle"

#: Defaults of ``GEOLIBRE_ML_JOB_WORKERS`` and ``GEOLIBRE_ML_JOB_TTL_S``.
DEFAULT_WORKERS = 1
DEFAULT_TTL_S = 3600.0

#: Longest pause between two sweeps for expired jobs, in seconds.
MAX_SWEEP_INTERVAL_S = 30.0

#: ``work(folder, cancelled, progress, keep)``: the run of a job, blocking (a worker thread
#: calls it). It writes its answer into ``folder``, polls ``cancelled()``, reports
#: ``progress(done, total)`` and hands the result to ``keep`` before writing the answer.
JobWork = Callable[
    [Path, Callable[[], bool], ProgressFn, Callable[[SegmentResult], None]], Rendered
]


def workers_from_env() -> int:
    """``GEOLIBRE_ML_JOB_WORKERS``: jobs run at once; not a positive integer: the default."""
    raw = os.environ.get("GEOLIBRE_ML_JOB_WORKERS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        log.warning("GEOLIBRE_ML_JOB_WORKERS=%r is not a positive integer: using 1", raw)
    return DEFAULT_WORKERS


def ttl_from_env() -> float:
    """``GEOLIBRE_ML_JOB_TTL_S``: seconds a finished job is kept; not a positive number:
    the default."""
    raw = os.environ.get("GEOLIBRE_ML_JOB_TTL_S", "").strip()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    if raw:
        log.warning("GEOLIBRE_ML_JOB_TTL_S=%r is not a positive number: using 3600", raw)
    return DEFAULT_TTL_S


class UnknownJob(LookupError):
    """No job has this id here: it never existed, was removed or expired."""


class RegistryClosed(RuntimeError):
    """The registry takes no more jobs: the server is shutting down (or not started)."""


class JobNotFinished(Exception):
    """The job has no result yet (queued or running), or will never have one (cancelled)."""


@dataclass(frozen=True)
class JobEvent:
    """Where a job stands: its state, its progress and, for a failure, why.

    ``done`` of ``total`` steps are the pipeline's ``progress(done, total)`` (windows or
    tiles, then finishing steps); both 0 before the first step.
    """

    status: str
    done: int
    total: int
    detail: str | None = None

    @property
    def final(self) -> bool:
        """Whether this is the job's last event (an end state)."""
        return self.status in FINAL_STATES


class Job:
    """One job: its files, state and subscribers. Changed only by its registry.

    Attributes:
        id: random, unguessable (128 bits, hex).
        folder: the job's private folder.
        name: the input's name (messages, the features' ``source``).
        output_format: the format the job was asked for.
        error: a failure's library error (its status and detail), None for a bug.
        rendered: the answer file of a job that is done.
    """

    def __init__(self, job_id: str, folder: Path, name: str, output_format: str) -> None:
        self.id = job_id
        self.folder = folder
        self.name = name
        self.output_format = output_format
        self.status: str = QUEUED
        self.done = 0
        self.total = 0
        self.detail: str | None = None
        self.error: SegmentError | None = None
        self.rendered: Rendered | None = None
        self.finished_at: float | None = None
        # Polled by the worker thread: a threading primitive.
        self._cancel = threading.Event()
        self._ended = anyio.Event()
        self._waiting: anyio.CancelScope | None = None
        self._subscribers: set[MemoryObjectSendStream[JobEvent]] = set()
        self._render_lock = anyio.Lock()
        self.removed = False

    @property
    def final(self) -> bool:
        """Whether the job has ended."""
        return self.status in FINAL_STATES

    @property
    def cancel_requested(self) -> bool:
        """Whether the job was asked to stop."""
        return self._cancel.is_set()

    def event(self) -> JobEvent:
        """The job's current state as an event."""
        return JobEvent(self.status, self.done, self.total, self.detail)


def plain_result(result: SegmentResult) -> SegmentResult:
    """``result`` without what it caches on first use (the whole-raster label image),
    which other answers recompute: what is pickled stays the run's plain data."""
    kept = copy.copy(result)
    for cached in ("labels",):
        vars(kept).pop(cached, None)
    return kept


class JobRegistry:
    """The jobs of one server: queue, states, events, files, expiry.

    Args:
        area: where job folders are made (the server's upload area).
        budget: the memory budget the runs share with the synchronous calls.
        workers: jobs run at once; the others wait their turn.
        ttl_s: seconds a finished job is kept before it is removed with its files.
        clock: monotonic seconds (tests may pass their own).

    Use :meth:`running` around the server's life: it runs the sweeper, and at its end
    cancels every job and removes every job folder.
    """

    def __init__(
        self,
        *,
        area: UploadArea,
        budget: MemoryBudget,
        workers: int = DEFAULT_WORKERS,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.area = area
        self.budget = budget
        self.workers = max(1, workers)
        self.ttl_s = ttl_s
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._slots = anyio.CapacityLimiter(self.workers)
        self._tasks: anyio.abc.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life of the registry --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[JobRegistry]:
        """Accept jobs for the block; at its end cancel them all and remove their folders."""
        # The server's loop is asyncio's (uvicorn's, or uvloop): progress reports from
        # worker threads are handed to it with call_soon_threadsafe.
        self._loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._sweep_forever)
            try:
                yield self
            finally:
                self._tasks = None
                with anyio.CancelScope(shield=True):
                    await self._shutdown()
                tasks.cancel_scope.cancel()

    async def _shutdown(self) -> None:
        jobs = list(self._jobs.values())
        for job in jobs:
            self._request_cancel(job)
        for job in jobs:
            # Each run stops at its next check (within one tile).
            await job._ended.wait()
        for job in jobs:
            self._remove(job)
        if jobs:
            log.info("Shutdown: %d job(s) cancelled or removed with their files", len(jobs))

    async def _sweep_forever(self) -> None:
        interval = min(MAX_SWEEP_INTERVAL_S, max(0.05, self.ttl_s / 4))
        while True:
            await anyio.sleep(interval)
            self.sweep()

    def sweep(self) -> list[str]:
        """Remove the finished jobs whose time is up, with their files; their ids."""
        expired = [job for job in self._jobs.values() if self._expired(job)]
        for job in expired:
            log.info("Job %s expired (%s, kept %g s): removed", job.id, job.status, self.ttl_s)
            self._remove(job)
        return [job.id for job in expired]

    def _expired(self, job: Job) -> bool:
        return job.finished_at is not None and self._clock() - job.finished_at >= self.ttl_s

    # -- jobs ------------------------------------------------------------------------

    def new_folder(self) -> Path:
        """A fresh private folder for a job about to be submitted."""
        return self.area.request_folder("job-")

    def submit(
        self,
        folder: Path,
        name: str,
        output_format: str,
        work: JobWork,
        *,
        nbytes: int | None = None,
        scratch: Path | None = None,
    ) -> Job:
        """Queue ``work`` as a new job whose files live in ``folder`` (from :meth:`new_folder`).

        Args:
            name: the input's name, for messages.
            output_format: the format ``work`` answers in.
            nbytes: memory to reserve from the budget before it runs (None: nothing).
            scratch: a file to delete once the run ends (the upload).

        Raises:
            RegistryClosed: when the registry is not running (the server is stopping).
        """
        if self._tasks is None:
            raise RegistryClosed("the job registry is not running")
        job = Job(secrets.token_hex(16), folder, name, output_format)
        self._jobs[job.id] = job
        self._tasks.start_soon(self._run, job, work, nbytes, scratch)
        log.info("Job %s queued: %s on %r", job.id, output_format, name)
        return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            UnknownJob: no such job here (never created, removed, or expired).
        """
        job = self._jobs.get(job_id)
        if job is not None and self._expired(job):
            self._remove(job)
            job = None
        if job is None:
            raise UnknownJob(job_id)
        return job

    def __len__(self) -> int:
        return len(self._jobs)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job, or remove a finished one.

        A queued or running job is stopped (a run within one tile: the pipeline polls
        between windows and inside the backends); this returns once it has stopped and
        its files are gone, and the job answers ``cancelled`` until its time is up. A
        finished job (``cancelled`` included) is removed with its files at once.

        Raises:
            UnknownJob: no such job.
        """
        job = self.get(job_id)
        if job.final:
            self._remove(job)
            log.info("Job %s (%s) deleted with its files", job.id, job.status)
            return job
        self._request_cancel(job)
        await job._ended.wait()
        return job

    def _request_cancel(self, job: Job) -> None:
        job._cancel.set()
        if job._waiting is not None:
            job._waiting.cancel()

    def _remove(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        job.removed = True
        shutil.rmtree(job.folder, ignore_errors=True)

    async def _run(self, job: Job, work: JobWork, nbytes: int | None, scratch: Path | None) -> None:
        rendered: Rendered | None = None
        error: Exception | None = None
        try:
            with anyio.CancelScope() as waiting:
                job._waiting = waiting
                if job.cancel_requested:
                    waiting.cancel()
                # Queued until a worker slot and the run's memory are both free.
                async with (
                    self._slots,
                    held(self.budget, nbytes, job.name, anyio.sleep_forever),
                ):
                    job._waiting = None
                    if not job.cancel_requested:
                        self._set(job, RUNNING)
                        rendered = await anyio.to_thread.run_sync(
                            functools.partial(
                                work,
                                job.folder,
                                job._cancel.is_set,
                                functools.partial(self._progress_from_thread, job),
                                functools.partial(self._keep, job),
                            )
                        )
        except Exception as exc:
            error = exc
        finally:
            # Synchronous: it must complete even when the server is being shut down.
            if scratch is not None:
                scratch.unlink(missing_ok=True)
            self._finish(job, rendered, error)

    def _finish(self, job: Job, rendered: Rendered | None, error: Exception | None) -> None:
        if job.cancel_requested or (rendered is None and error is None):
            # Asked to stop (or stopped by the server's shutdown): no result is kept, even
            # if the run got to its end before it heard.
            status = CANCELLED
        elif rendered is not None:
            status = DONE
            job.rendered = rendered
        elif isinstance(error, Cancelled):
            status = CANCELLED
        else:
            status = FAILED
            mapped = as_segment_error(error, job.name) if error is not None else None
            if mapped is None:
                log.error("Job %s failed on a bug", job.id, exc_info=error)
                job.detail = (
                    "Internal error in the model server while running this job. This is a bug, "
                    "not a problem with your input; the server log has the details."
                )
            else:
                job.error = mapped
                job.detail = mapped.detail
        if status != DONE:
            # Nothing in a failed or cancelled job's folder is of use any more.
            shutil.rmtree(job.folder, ignore_errors=True)
        job.finished_at = self._clock()
        log.info("Job %s %s%s", job.id, status, f": {job.detail}" if job.detail else "")
        self._set(job, status)
        job._ended.set()

    def _set(self, job: Job, status: str) -> None:
        job.status = status
        self._publish(job)

    def _progress_from_thread(self, job: Job, done: int, total: int) -> None:
        # Called by the pipeline in a worker thread (any thread: the engine may report
        # from its own pool); the job changes on the loop only, in the order reported,
        # and the run does not wait for it.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._progress, job, done, total)

    def _progress(self, job: Job, done: int, total: int) -> None:
        if job.final:
            return  # a report that crossed the run's end: the end event stays the last
        job.done, job.total = int(done), int(total)
        self._publish(job)

    def _publish(self, job: Job) -> None:
        event = job.event()
        for stream in list(job._subscribers):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                stream.send_nowait(event)

    def _keep(self, job: Job, result: SegmentResult) -> None:
        """Pickle the result into the job's folder (in the worker thread)."""
        _atomic_write(job.folder / RESULT_FILE, lambda path: _pickle(result, path))

    # -- events and results --------------------------------------------------------------

    async def events(
        self, job: Job, *, heartbeat_s: float = 15.0
    ) -> AsyncIterator[JobEvent | None]:
        """The job's events: its current state first, then each change as it happens,
        until the end state (at once, for a finished job). None every ``heartbeat_s``
        without news, for a keep-alive."""
        send, receive = anyio.create_memory_object_stream[JobEvent](math.inf)
        # Subscribed before the current state is read, with no await in between: no
        # change can fall between the two.
        job._subscribers.add(send)
        try:
            current = job.event()
            yield current
            if current.final:
                return
            while True:
                with anyio.move_on_after(heartbeat_s) as idle:
                    event = await receive.receive()
                if idle.cancelled_caught:
                    yield None
                    continue
                yield event
                if event.final:
                    return
        finally:
            job._subscribers.discard(send)
            send.close()
            receive.close()

    async def result(self, job: Job, fmt: AnswerFormat) -> Rendered:
        """The answer of a job that is done, in ``fmt``: the job's own answer file, or one
        rendered from its pickled result (once; then cached in its folder).

        Raises:
            JobNotFinished: the job is not done.
            UnknownJob: the job was removed meanwhile.
            SegmentError: the result cannot be given in ``fmt`` (e.g. too many objects
                for a PNG).
        """
        if job.status != DONE or job.rendered is None:
            raise JobNotFinished(job.status)
        own = job.rendered
        if fmt.name == job.output_format:
            return own
        target = job.folder / f"answer{fmt.extension}"
        async with job._render_lock:
            if not target.exists():
                try:
                    await anyio.to_thread.run_sync(_render, job.folder, fmt, target)
                except Exception as exc:
                    if job.removed:
                        raise UnknownJob(job.id) from exc
                    mapped = as_segment_error(exc, job.name)
                    if mapped is None:
                        raise
                    raise mapped from exc
        if job.removed:
            raise UnknownJob(job.id)
        return Rendered(target, fmt.media_type, fmt.filename, own.count, reused=own.reused)


def _pickle(result: SegmentResult, path: Path) -> None:
    with path.open("wb") as out:
        pickle.dump(plain_result(result), out, protocol=pickle.HIGHEST_PROTOCOL)


def _render(folder: Path, fmt: AnswerFormat, target: Path) -> None:
    """Write the pickled result in ``folder`` to ``target`` in ``fmt`` (blocking)."""
    # The job's own pickle, written by this server: trusted data.
    with (folder / RESULT_FILE).open("rb") as source:
        result: SegmentResult = pickle.load(source)  # noqa: S301
    _atomic_write(target, lambda path: fmt.write(result, path))


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """``write(path)`` into a private folder beside ``target``, then move it into place: a
    reader never sees a partial file, and a failure leaves none."""
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        staged = staging / target.name
        write(staged)
        staged.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
