"""The job registry on its own (no HTTP): events in order, cancel while queued or running,
expiry on a clock of the test's own, the queue's order, shutdown.

The work is a stand-in for :func:`~geolibre_ml.modelserver.runs.execute` with the same
contract (blocking, polls ``cancelled``, reports ``progress``): what is tested is the
registry's bookkeeping, which the HTTP tests exercise with real runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from geolibre_ml.modelserver.budget import MemoryBudget
from geolibre_ml.modelserver.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    JobEvent,
    JobRegistry,
    RegistryClosed,
    UnknownJob,
)
from geolibre_ml.modelserver.runs import Rendered
from geolibre_ml.modelserver.uploads import UploadArea
from geolibre_ml.segment.errors import Cancelled, NoObjectsFound

MIB = 1024 * 1024


class Steps:
    """Work of ``steps`` steps, each waiting for the test to release it (``go``)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.released = threading.Semaphore(0)
        self.finished_steps = 0

    def go(self, n: int = 1) -> None:
        for _ in range(n):
            self.released.release()

    def __call__(
        self,
        folder: Path,
        cancelled: Callable[[], bool],
        progress: Callable[[int, int], None],
        keep: Callable[[object], None],
    ) -> Rendered:
        for step in range(1, self.steps + 1):
            while not self.released.acquire(timeout=0.01):
                if cancelled():
                    raise Cancelled("The run was cancelled.")
            self.finished_steps = step
            progress(step, self.steps)
        answer = folder / "answer.geojson"
        answer.write_text("{}")
        return Rendered(answer, "application/json", None, 1)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Callable[..., JobRegistry]]:
    """``registry(**options)``: a registry over an upload area of the test's own (closed,
    its lock released, when the test ends)."""
    area = UploadArea(tmp_path / "area")
    yield lambda **kwargs: JobRegistry(area=area, budget=MemoryBudget(64 * MIB), **kwargs)
    area.close()


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.005)


def test_events_follow_every_step_in_order_and_end_with_done(
    registry: Callable[..., JobRegistry],
) -> None:
    jobs = registry()
    work = Steps(4)
    seen: list[JobEvent] = []

    async def main() -> None:
        async with jobs.running():
            job = jobs.submit(jobs.new_folder(), "a.tif", "geojson", work)

            async def listen() -> None:
                async for event in jobs.events(job):
                    if event is not None:
                        seen.append(event)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(listen)
                await until(lambda: job.status == RUNNING)
                for step in range(1, 5):
                    work.go()
                    await until(lambda step=step: job.done == step)
            assert job.status == DONE
            # A late subscriber: the end at once.
            late = [event async for event in jobs.events(job)]
            assert late == [seen[-1]]
            assert (job.folder / "answer.geojson").exists()

    anyio.run(main)
    assert seen[0].status in (QUEUED, RUNNING)
    progress = [(e.done, e.total) for e in seen if e.status == RUNNING and e.done]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert seen[-1] == JobEvent(DONE, 4, 4)
    assert [e.final for e in seen].count(True) == 1


def test_cancel_running_and_queued_jobs(registry: Callable[..., JobRegistry]) -> None:
    jobs = registry(workers=1)
    first, second = Steps(100), Steps(1)

    async def main() -> None:
        async with jobs.running():
            running = jobs.submit(jobs.new_folder(), "a.tif", "geojson", first)
            queued = jobs.submit(jobs.new_folder(), "b.tif", "geojson", second)
            await until(lambda: running.status == RUNNING)
            first.go(3)
            await until(lambda: running.done == 3)
            assert queued.status == QUEUED

            assert (await jobs.cancel(queued.id)).status == CANCELLED
            assert not queued.folder.exists()
            assert (await jobs.cancel(running.id)).status == CANCELLED
            # Stopped where it was: within the step it was in.
            assert first.finished_steps == 3
            assert not running.folder.exists()
            assert jobs.get(running.id).status == CANCELLED  # kept until it expires
            await jobs.cancel(running.id)  # a finished job: removed
            with pytest.raises(UnknownJob):
                jobs.get(running.id)

    anyio.run(main)


def test_failures_keep_the_error_and_no_files(registry: Callable[..., JobRegistry]) -> None:
    jobs = registry()

    def nothing(folder: Path, *_: object) -> Rendered:
        (folder / "partial").write_text("x")
        raise NoObjectsFound("No objects found for 'water'.")

    async def main() -> None:
        async with jobs.running():
            job = jobs.submit(jobs.new_folder(), "a.tif", "geojson", nothing)
            await until(lambda: job.final)
            assert job.status == FAILED
            assert isinstance(job.error, NoObjectsFound)
            assert job.detail == "No objects found for 'water'."
            assert not job.folder.exists()

    anyio.run(main)


def test_finished_jobs_expire_on_the_clock(registry: Callable[..., JobRegistry]) -> None:
    now = [1000.0]
    jobs = registry(ttl_s=60.0, clock=lambda: now[0])
    work = Steps(1)

    async def main() -> None:
        async with jobs.running():
            job = jobs.submit(jobs.new_folder(), "a.tif", "geojson", work)
            work.go()
            await until(lambda: job.status == DONE)
            now[0] += 59
            assert jobs.sweep() == [] and job.folder.exists()
            now[0] += 1
            assert jobs.sweep() == [job.id]
            assert not job.folder.exists()
            with pytest.raises(UnknownJob):
                jobs.get(job.id)

    anyio.run(main)


def test_shutdown_cancels_everything_and_removes_the_folders(
    tmp_path: Path, registry: Callable[..., JobRegistry]
) -> None:
    jobs = registry(workers=1)
    works = [Steps(100), Steps(100)]

    async def main() -> list[Path]:
        async with jobs.running():
            submitted = [jobs.submit(jobs.new_folder(), "a.tif", "geojson", w) for w in works]
            await until(lambda: submitted[0].status == RUNNING)
            return [job.folder for job in submitted]

    folders = anyio.run(main)
    assert not any(folder.exists() for folder in folders)
    assert len(jobs) == 0
    with pytest.raises(RegistryClosed):
        jobs.submit(tmp_path, "late.tif", "geojson", works[0])
