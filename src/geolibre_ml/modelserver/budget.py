"""A memory budget for segmentations: large runs wait their turn instead of exhausting RAM.

Until tiling bounds memory, a run holds its whole raster and the algorithms' working
arrays at once: the classic backend peaks at about :data:`MIB_PER_MEGAPIXEL` MiB per
megapixel (see docs/benchmarks.md), so a 377 KB compressed 10,000 x 10,000 GeoTIFF
takes 3.5 GiB and two of them at once 6-7 GiB, whatever their size on the wire.

Each run therefore reserves its expected peak (:func:`estimate_bytes`, from the
raster's header) from a :class:`MemoryBudget` before it starts, and gives it back when
it ends. Reservations are granted first come, first served: a large run at the head
of the queue is not overtaken by smaller ones behind it, so it cannot starve. A run
expected to need more than the whole budget runs alone; one that needs more than
:data:`REFUSE_FACTOR` times the budget is refused with a 413, since it would almost
certainly exhaust the machine. Requests still waiting when their client goes away
leave the queue.

The budget is ``GEOLIBRE_ML_MEMORY_BUDGET_MB`` MiB, by default
:data:`DEFAULT_FRACTION` of the machine's physical memory (or of the container's
cgroup limit, when lower).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import Request

from geolibre_ml.envvars import MIB, mib_from_env
from geolibre_ml.segment.errors import Cancelled, ImageTooLarge, quoted

log = logging.getLogger("geolibre_ml.modelserver")


#: Peak memory of a one-piece classic run per megapixel of raster, in MiB (measured:
#: 730 MiB for 4096 x 4096 RGB, 3.45 GiB for 10,000 x 10,000; see docs/benchmarks.md).
MIB_PER_MEGAPIXEL = 45

#: Share of the machine's memory the budget takes when ``GEOLIBRE_ML_MEMORY_BUDGET_MB``
#: is not set: the rest is left to the server's own footprint and to other programs.
DEFAULT_FRACTION = 0.5

#: Budget used when the machine's memory cannot be read, in MiB.
FALLBACK_BUDGET_MB = 4096

#: A run expected to need more than this many budgets is refused (413) rather than run.
REFUSE_FACTOR = 4.0

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


#: Memory of a tiled run's answer (polygons, properties) per megapixel of raster, in
#: MiB: about 1 on the classic benchmark landscape, whose regions are small (see
#: docs/benchmarks.md, "Tiling"); twice that for margin.
ANSWER_MIB_PER_MEGAPIXEL = 2


def estimate_bytes(width: int, height: int, tile_size: int | None = None) -> int:
    """Expected peak memory of a run on a ``width`` x ``height`` raster, in bytes.

    A raster that fits in one tile (``tile_size``, default
    :data:`~geolibre_ml.segment.tiling.DEFAULT_TILE`) is segmented in one piece; a larger
    one tile by tile, which needs the tiles at work at once plus the answer.
    """
    from geolibre_ml.segment.pipeline import tile_threads
    from geolibre_ml.segment.tiling import DEFAULT_TILE

    def one_piece(pixels: float) -> float:
        return pixels / 1e6 * MIB_PER_MEGAPIXEL * MIB

    tile = tile_size or DEFAULT_TILE
    whole = one_piece(width * height)
    if width <= tile and height <= tile:
        return math.ceil(whole)
    tiled = tile_threads() * one_piece(tile * tile)
    tiled += width * height / 1e6 * ANSWER_MIB_PER_MEGAPIXEL * MIB
    return math.ceil(min(whole, tiled))


def machine_memory_bytes() -> int | None:
    """Physical memory (``os.sysconf``), or the cgroup limit when lower; None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    for path in _CGROUP_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            limit = int(path.read_text().strip())  # "max" (no limit) fails here
            # cgroup v1 writes a huge number for "no limit".
            if 0 < limit < (total or limit + 1):
                total = limit
    return total if total > 0 else None


def budget_bytes_from_env() -> int:
    """The budget in bytes: ``GEOLIBRE_ML_MEMORY_BUDGET_MB`` (MiB), or the default.

    A value that is not a positive number falls back to the default rather than
    removing the budget.
    """
    value = mib_from_env("GEOLIBRE_ML_MEMORY_BUDGET_MB")
    if value is not None:
        return value
    memory = machine_memory_bytes()
    return int(memory * DEFAULT_FRACTION) if memory else FALLBACK_BUDGET_MB * MIB


def raster_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from the raster's header (blocking: call it in a worker thread),
    or None when it cannot be read: the run itself then says what is wrong."""
    # Imported here so that importing the app stays free of GDAL until a request comes.
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    from geolibre_ml.segment.raster import sniff_driver

    try:
        driver = sniff_driver(path)
        if driver is None:
            return None
        # The driver is pinned as the run pins it: nothing else is ever opened.
        with rasterio.open(path, driver=driver) as ds:
            return ds.width, ds.height
    except (OSError, RasterioError, CPLE_BaseError):
        return None


@dataclass(eq=False)
class _Waiter:
    amount: int
    event: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False


class MemoryBudget:
    """``total`` bytes shared by the runs, granted first come, first served.

    Use :meth:`reserve` around a run. Not thread-safe: use it from the event loop.
    """

    def __init__(self, total: int, *, refuse_factor: float = REFUSE_FACTOR) -> None:
        if total <= 0:
            raise ValueError("the memory budget must be positive")
        self.total = total
        self.refuse_factor = refuse_factor
        self.used = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Reservations waiting for memory."""
        return len(self._queue)

    def refuses(self, nbytes: int) -> bool:
        """Whether a run of ``nbytes`` is refused outright (over ``refuse_factor`` budgets)."""
        return nbytes > self.total * self.refuse_factor

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[int]:
        """Hold ``nbytes`` of the budget for the block, waiting until they are free.

        More than the whole budget is held as the whole budget: the run waits until
        nothing else runs, and nothing else starts until it ends. A cancelled wait
        (the client left) leaves the queue and lets those behind it move on.

        Yields:
            The bytes actually held (``min(nbytes, total)``).

        Raises:
            ValueError: when :meth:`refuses` ``nbytes`` (check it first for a message).
        """
        if self.refuses(nbytes):
            raise ValueError(f"{nbytes} bytes is over {self.refuse_factor} budgets")
        amount = max(0, min(nbytes, self.total))
        if not self._queue and self.used + amount <= self.total:
            self.used += amount
        else:
            waiter = _Waiter(amount)
            self._queue.append(waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.granted:
                    self._release(amount)
                else:
                    self._queue.remove(waiter)
                    self._grant()  # those behind a large waiter may fit now
                raise
        try:
            yield amount
        finally:
            self._release(amount)

    def _release(self, amount: int) -> None:
        self.used -= amount
        self._grant()

    def _grant(self) -> None:
        while self._queue and self.used + self._queue[0].amount <= self.total:
            waiter = self._queue.popleft()
            self.used += waiter.amount
            waiter.granted = True
            waiter.event.set()


def too_large_detail(name: str, size: tuple[int, int], nbytes: int, budget: MemoryBudget) -> str:
    """The 413 detail for a raster whose run would need far more than the budget."""
    width, height = size
    return (
        f"{quoted(name)} is {width:,} x {height:,} pixels: segmenting it needs "
        f"about {nbytes / MIB / 1024:,.1f} GiB, far more than this server's memory budget "
        f"({budget.total / MIB / 1024:,.1f} GiB). Crop or downsample it, or raise "
        "GEOLIBRE_ML_MEMORY_BUDGET_MB on the server."
    )


async def admission(
    budget: MemoryBudget, path: str | Path, name: str, tile_size: int | None = None
) -> int | None:
    """The bytes a run on the raster at ``path`` must reserve, checked against ``budget``
    (``tile_size``: the request's, see :func:`estimate_bytes`).

    The raster's header is read in a worker thread. A file whose header cannot be read,
    or that is over the pixel cap, needs no reservation (None): the run refuses it at
    once with the right message.

    Raises:
        ImageTooLarge: for a run over ``REFUSE_FACTOR`` budgets (413).
    """
    from geolibre_ml.segment.raster import max_pixels_from_env

    size = await anyio.to_thread.run_sync(raster_size, path)
    if size is None or size[0] * size[1] > max_pixels_from_env():
        return None
    nbytes = estimate_bytes(*size, tile_size)
    if budget.refuses(nbytes):
        raise ImageTooLarge(too_large_detail(name, size, nbytes, budget))
    return nbytes


@contextlib.asynccontextmanager
async def held(
    budget: MemoryBudget,
    nbytes: int | None,
    name: str,
    gone: Callable[[], Awaitable[None]],
    *,
    why: str = "The client disconnected while the run waited for memory.",
) -> AsyncIterator[None]:
    """Hold ``nbytes`` (from :func:`admission`; None: nothing) of ``budget`` for the block.

    While it waits, ``gone()`` is awaited beside the wait: when it returns (the client
    left, the job was cancelled) the run leaves the queue.

    Raises:
        Cancelled: with ``why``, when ``gone()`` returned while waiting.
    """
    if nbytes is None:
        yield
        return
    if budget.waiting or budget.used + min(nbytes, budget.total) > budget.total:
        log.info(
            "%r waits for memory: needs %d MiB, %d of %d MiB in use",
            name,
            nbytes // MIB,
            budget.used // MIB,
            budget.total // MIB,
        )
    left = False
    async with contextlib.AsyncExitStack() as stack:
        with anyio.CancelScope() as waiting:

            async def watch() -> None:
                nonlocal left
                await gone()
                left = True
                waiting.cancel()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                amount = await stack.enter_async_context(budget.reserve(nbytes))
                tasks.cancel_scope.cancel()
        if left:
            # Whatever was reserved meanwhile is given back as the stack unwinds.
            raise Cancelled(why)
        log.info(
            "%r holds %d MiB of the memory budget (%d of %d MiB in use)",
            name,
            amount // MIB,
            budget.used // MIB,
            budget.total // MIB,
        )
        stack.callback(log.info, "%r released %d MiB of the memory budget", name, amount // MIB)
        yield


@contextlib.asynccontextmanager
async def admit(
    request: Request, path: str | Path, name: str, tile_size: int | None = None
) -> AsyncIterator[None]:
    """Hold the memory a run on the upload at ``path`` needs, from the app's budget
    (:func:`admission`, then :func:`held`). While the request waits, its connection is
    watched, and a client that goes away leaves the queue.

    Raises:
        ImageTooLarge: for a run over ``REFUSE_FACTOR`` budgets (413).
        Cancelled: when the client disconnected while waiting.
    """
    budget: MemoryBudget = request.app.state.budget

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    nbytes = await admission(budget, path, name, tile_size)
    async with held(budget, nbytes, name, disconnected):
        yield
