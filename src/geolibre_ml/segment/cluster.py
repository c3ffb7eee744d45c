"""A run's tiles on a Dask cluster: the same per-window work, on other machines.

The pipeline's per-window function (:func:`~.pipeline.segment_tile`) is pure: a
:class:`~.pipeline.WindowTask` (plain data: the source path, the window, the read
plan, the prompt, the model's name) in, a :class:`~.seams.TilePieces` (polygons) out,
both pickled. :class:`DaskRunner` runs those tasks on a ``distributed`` cluster instead
of this process's threads, two ways:

* **a grid, by blocks** (:meth:`DaskRunner.segment_grid`, what a tiled run does): the
  grid is cut into blocks of tiles (:mod:`.blocks`), and each block is three Dask
  tasks: :func:`run_block` runs its tiles and stitches them, :func:`link_block` links
  it with the blocks after it and finishes its closed groups, and
  :func:`finish_on_worker` finishes the open groups it owns once the client has
  joined groups across blocks. The seam merge and finishing run on the workers;
  the client plans, joins a few integers per object on a block's edge, and takes in
  the finished features (as WKB, read back on its cores). The answer is the one a
  local run gives, feature for feature.
* **tile by tile** (:meth:`DaskRunner.__call__`, a :class:`~.pipeline.TileRunner`): for
  answers that need the whole run at once (``unique=false``, a raster across the
  antimeridian) and runs without a grid: every tile's pieces come back to the
  client's stitcher, in task order, at most :attr:`DaskRunner.lookahead` tasks ahead.

What travels:

* **to the worker**: the tasks (a few hundred bytes a tile). The worker reads its own
  window from ``task.source`` (a path every worker sees, or a ``/vsicurl/`` URL); no
  pixels leave the client.
* **on the worker**: the model, loaded once per worker by :class:`ModelPlugin` (a
  ``distributed`` worker plugin holding a :class:`~.models.ModelManager`) and lent to
  every task that worker runs; the blocks' pieces, until the run ends.

Tasks of a model that wants a GPU (:attr:`~.backends.Backend.wants_gpu`: SAM 3) ask
for one unit of the worker resource ``GPU`` (``dask worker --resources GPU=1``), so
they go to GPU workers only; classic tiles, and every block's link and finishing
tasks, run on any worker. A worker lost mid-run has its tasks rerun elsewhere by the
scheduler; cancelling a run cancels its futures.

``distributed`` is an optional dependency (``geolibre-ml[distributed]``), imported
only when a runner is made.
"""

from __future__ import annotations

import copy
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .blocks import (
    BlockGrid,
    BlockLinks,
    BlockPieces,
    BlockPlan,
    FinishedPart,
    block_links,
    finish_closed,
    finish_open,
    join_blocks,
    plan_groups,
    stitch_block,
)
from .cache import PreparedCache, RunCache
from .errors import Cancelled, ClusterUnavailable
from .features import FeatureSet
from .finish import Finishing
from .models import ModelManager, ModelSettings
from .outlines import OutlineSet
from .pipeline import (
    FINISH_STEPS,
    CancelFn,
    ProgressFn,
    SegmentModel,
    WindowTask,
    run_tiles,
    segment_tile,
)
from .raster import RasterSource
from .seams import TilePieces
from .tiling import TileGrid

if TYPE_CHECKING:
    from distributed import Client, Future

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ModuleNotFoundError:  # the extra is not installed: made known when a runner is made
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = [
    "GPU_RESOURCE",
    "PLUGIN_NAME",
    "SCHEDULER_ENV",
    "DaskRunner",
    "ModelPlugin",
    "close_runners",
    "connect",
    "plugin_name",
    "runner_for",
    "runner_from_env",
    "tiles_per_block",
    "worker_counts",
]

#: The environment variable naming the model server's scheduler (``tcp://HOST:8786``).
SCHEDULER_ENV = "GEOLIBRE_ML_DASK_SCHEDULER"
#: The worker resource a GPU model's tasks ask one unit of.
GPU_RESOURCE = "GPU"
#: The name the model plugin is registered under on every worker (with the device
#: after a dash when the runner names one: ``geolibre-ml-models-cpu``).
PLUGIN_NAME = "geolibre-ml-models"
#: Most tiles one Dask task runs outside a grid (see :meth:`DaskRunner.chunk`).
MAX_TILES_PER_TASK = 16
#: Most tiles of one block of a grid (see :meth:`DaskRunner.blocks`).
MAX_TILES_PER_BLOCK = 64
#: Blocks a run aims to give each worker thread (see :func:`tiles_per_block`): one,
#: as the blocks' grid rounds it (more on small clusters): every block is three tasks.
BLOCKS_PER_THREAD = 1
#: Seconds between two looks at the caller's cancel flag while a tile is awaited.
POLL_S = 0.2

#: Seconds a client waits for the scheduler to answer when it connects.
CONNECT_TIMEOUT_S = 10.0

INSTALL_HINT = "Install it with: pip install 'geolibre-ml[distributed]'"


def _distributed() -> Any:
    try:
        import distributed
    except ModuleNotFoundError as exc:
        raise ClusterUnavailable(
            f"Running on a Dask cluster needs the distributed package ({exc.name} is "
            f"missing). {INSTALL_HINT}"
        ) from None
    return distributed


class ModelPlugin(WorkerPlugin):  # type: ignore[misc]
    """The models of one Dask worker: each loaded on the first task that needs it, then
    lent to every later task on that worker (a ``distributed`` worker plugin).

    Registered with :meth:`distributed.Client.register_plugin`, a copy is set up on
    every worker, including those that join (or are restarted) later.

    Attributes:
        device: the device models load on (None: ``GEOLIBRE_ML_DEVICE`` on the
            worker, else the best it has).
        loads: models this worker has loaded (what tests count).
        tiles: tiles this worker has run.
    """

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self.name = plugin_name(device)
        self.loads = 0
        self.tiles = 0
        self.manager: ModelManager | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Only the settings travel; each worker builds its own manager and counters.
        return {"device": self.device}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["device"])  # type: ignore[misc]

    def setup(self, worker: Any) -> None:
        """Called by the worker when the plugin is registered or the worker starts."""
        _limit_opencv_threads(int(getattr(worker, "nthreads", 1) or 1))
        # No prepared cache on workers: each task's window is read once per run, and
        # a later prompt may land on any worker.
        self.manager = ModelManager(self.device, cache=PreparedCache(0))

    def teardown(self, worker: Any) -> None:
        """Called when the worker closes: the models are let go."""
        if self.manager is not None:
            self.manager.clear()

    def run(self, tasks: list[WindowTask]) -> list[TilePieces]:
        """The tiles of one Dask task with this worker's model, in order: one
        :func:`~.pipeline.segment_tile` after the other, or, for a model that batches
        (SAM 3 on a GPU), in batches of its ``batch_size`` (:func:`~.pipeline.run_tiles`:
        one encoder pass per batch, the next batch read meanwhile)."""
        if self.manager is None:  # a plugin used without a worker (tests, tools)
            self.setup(None)
        assert self.manager is not None
        version, model_id = tasks[0].model.version, tasks[0].model.model_id
        with self._lock:
            # Loading under the lock: two threads of one worker load the model once.
            if [version, model_id] not in self.manager.loaded():
                self.manager.get(version, model_id)
                self.loads += 1
            self.tiles += len(tasks)
        with self.manager.lease(version, model_id) as model:
            if getattr(model, "thread_safe", False) or getattr(model, "batch_size", 1) <= 1:
                # The worker's own threads are the parallelism: no pool of threads here.
                return [segment_tile(task, model) for task in tasks]
            return list(run_tiles(tasks, model))


def _limit_opencv_threads(threads: int) -> None:
    """OpenCV's own thread pool sized to the worker's threads. Dask's nanny limits
    OpenMP, MKL and OpenBLAS to one thread per worker process
    (``distributed.nanny.pre-spawn-environ``) so that a machine's workers do not
    oversubscribe its cores; OpenCV (the classic backend's filters) has a pool of its
    own, one thread per core, which it reads from ``OPENCV_FOR_THREADS_NUM`` when it
    is imported."""
    os.environ.setdefault("OPENCV_FOR_THREADS_NUM", str(threads))
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # imported already: its pool is resized instead
        cv2.setNumThreads(int(os.environ["OPENCV_FOR_THREADS_NUM"]))


def plugin_name(device: str | None) -> str:
    """The name of the model plugin for ``device`` (None: each worker's own choice)."""
    return PLUGIN_NAME if device is None else f"{PLUGIN_NAME}-{device}"


def run_on_worker(tasks: list[WindowTask], name: str = PLUGIN_NAME) -> list[TilePieces]:
    """The Dask task: ``tasks`` (a few tiles) run by this worker's :class:`ModelPlugin`
    ``name``."""
    worker = _distributed().get_worker()
    plugin = worker.plugins.get(name)
    if plugin is None:
        raise ClusterUnavailable(
            f"The worker {worker.address} has no {name} plugin (registered by the "
            "runner when it connects)."
        )
    return plugin.run(tasks)


def run_block(
    index: int, tasks: list[WindowTask], grid: TileGrid, name: str = PLUGIN_NAME
) -> BlockPieces:
    """The Dask task of one block: its tiles run by this worker's :class:`ModelPlugin`
    ``name``, then stitched together (:func:`.blocks.stitch_block`)."""
    return stitch_block(index, run_on_worker(tasks, name), grid)


def link_block(
    block: BlockPieces, later: list[BlockPieces], grid: TileGrid, finishing: Finishing
) -> tuple[BlockLinks, FinishedPart]:
    """The Dask task of one block's seams with the blocks after it
    (:func:`.blocks.block_links`), and of its closed groups (:func:`.blocks.finish_closed`)."""
    return block_links(block, later, grid), finish_closed(block, finishing)


def finish_on_worker(
    block: BlockPieces, plan: BlockPlan, sources: list[BlockPieces], finishing: Finishing
) -> FinishedPart:
    """The Dask task that finishes one block's open groups (:func:`.blocks.finish_open`)."""
    return finish_open(block, plan, sources, finishing)


def _has_plugin(dask_scheduler: Any, name: str) -> bool:
    """Whether the scheduler hands the worker plugin ``name`` to its workers."""
    return name in dask_scheduler.worker_plugins


def _noop(i: int) -> int:
    """An empty task (for measuring the scheduler's overhead per task)."""
    return i


def worker_counts(dask_worker: Any, name: str | None = None) -> dict[str, int]:
    """``{"loads": ..., "tiles": ...}`` of one worker's model plugin ``name`` (None: of
    all of them, one per device named by runners); for ``client.run``."""
    plugins = [
        p
        for key, p in dask_worker.plugins.items()
        if isinstance(p, ModelPlugin) and (name is None or key == name)
    ]
    return {
        "loads": sum(p.loads for p in plugins),
        "tiles": sum(p.tiles for p in plugins),
    }


def tiles_per_block(tiles: int, threads: int) -> int:
    """Tiles in each block of a run of ``tiles`` on ``threads`` worker threads: enough
    for :data:`BLOCKS_PER_THREAD` blocks per thread (load balance, and a short tail
    after the last tile), up to :data:`MAX_TILES_PER_BLOCK` (fewer, larger blocks:
    fewer tasks for the scheduler, fewer seams between blocks)."""
    return max(1, min(MAX_TILES_PER_BLOCK, tiles // (BLOCKS_PER_THREAD * max(1, threads))))


def _shared_source(source: str) -> str:
    """A local path as every worker on this filesystem finds it (absolute); GDAL
    paths (``/vsicurl/...``) as they are."""
    if source.startswith("/vsi"):
        return source
    return str(Path(source).absolute())


class DaskRunner:
    """A :class:`~.pipeline.TileRunner` that runs each window's task on a Dask cluster.

    Args:
        client: a connected ``distributed.Client``.
        lookahead: most Dask tasks submitted ahead of the one holding the next tile
            the stitcher takes (None: eight per worker thread, at least 16): enough to
            keep every worker busy while bounding the finished pieces waiting on a
            slow tile.
        tiles_per_task: tiles in one Dask task (None: one, or more for a run of many
            more tiles than the cluster has threads, up to :data:`MAX_TILES_PER_TASK`,
            so that the scheduler's cost per task is shared by several tiles while
            every thread still gets eight tasks or more).
        device: the device workers load models on (None: each worker's own choice).
        gpu: whether tasks ask for the ``GPU`` resource (None: when the model
            :attr:`~.backends.Backend.wants_gpu`).
    """

    def __init__(
        self,
        client: Client,
        *,
        lookahead: int | None = None,
        tiles_per_task: int | None = None,
        device: str | None = None,
        gpu: bool | None = None,
    ) -> None:
        self.client = client
        self._lookahead = lookahead
        self.tiles_per_task = tiles_per_task
        self.gpu = gpu
        self.plugin = plugin_name(device)
        # Once per cluster and device: registering again would replace the plugin on
        # every worker, and with it the models other clients' runs have loaded.
        try:
            registered = bool(client.run_on_scheduler(_has_plugin, name=self.plugin))
        except Exception:  # a scheduler without geolibre-ml installed cannot be asked
            registered = False
        if not registered:
            client.register_plugin(ModelPlugin(device), name=self.plugin)

    def configured(
        self, *, lookahead: int | None = None, tiles_per_task: int | None = None
    ) -> DaskRunner:
        """This runner on the same client and plugin, with other settings (None: as here)."""
        other = copy.copy(self)
        if lookahead is not None:
            other._lookahead = lookahead
        if tiles_per_task is not None:
            other.tiles_per_task = tiles_per_task
        return other

    def chunk(self, tiles: int) -> int:
        """Tiles per Dask task for a run of ``tiles``."""
        if self.tiles_per_task is not None:
            return max(1, self.tiles_per_task)
        return max(1, min(MAX_TILES_PER_TASK, tiles // (8 * max(1, self.threads()))))

    def _workers(self) -> list[dict[str, Any]]:
        return list(self.client.scheduler_info(n_workers=-1)["workers"].values())

    def threads(self) -> int:
        """Worker threads of the cluster now."""
        return sum(int(w.get("nthreads", 1)) for w in self._workers())

    def gpu_resource(self) -> tuple[str, int]:
        """The name the cluster's workers give the GPU resource, and the threads of
        those that offer it: ``GPU`` (``--resources GPU=1``), or ``gpu`` as Dask's
        configuration spells it when set by the environment
        (``DASK_DISTRIBUTED__WORKER__RESOURCES__GPU=1``: keys are lower-cased)."""
        counts: dict[str, int] = {}
        for worker in self._workers():
            for name, amount in worker.get("resources", {}).items():
                if name.lower() == GPU_RESOURCE.lower() and amount >= 1:
                    counts[name] = counts.get(name, 0) + int(worker.get("nthreads", 1))
        if not counts:
            return GPU_RESOURCE, 0
        name = GPU_RESOURCE if GPU_RESOURCE in counts else max(counts, key=counts.__getitem__)
        return name, counts[name]

    def lookahead(self) -> int:
        """Tasks kept in flight ahead of the next tile the stitcher takes."""
        if self._lookahead is not None:
            return max(1, self._lookahead)
        return max(16, 8 * self.threads())

    def _resources(self, model: SegmentModel) -> dict[str, float] | None:
        gpu = self.gpu if self.gpu is not None else bool(getattr(model, "wants_gpu", False))
        if not gpu:
            return None
        name, threads = self.gpu_resource()
        if threads == 0:
            raise ClusterUnavailable(
                f"The {model.version} model's tiles need a GPU worker, but no worker of the "
                f"Dask cluster offers the {GPU_RESOURCE} resource. Start GPU workers with "
                f"`dask worker SCHEDULER --resources {GPU_RESOURCE}=1`."
            )
        return {name: 1}

    def __call__(
        self,
        tasks: list[WindowTask],
        model: SegmentModel,
        *,
        source: RasterSource | None = None,
        cache: PreparedCache | RunCache | None = None,
        cancelled: CancelFn | None = None,
    ) -> Iterator[TilePieces]:
        """Every task run on the cluster, its pieces yielded in the order of ``tasks``.

        ``source`` and ``cache`` are this process's and stay unused: workers open the
        raster themselves and keep no prepared windows.

        Raises:
            Cancelled: when ``cancelled()`` turns True (the run's futures are
                cancelled first).
            ClusterUnavailable: a GPU model on a cluster without GPU workers.
            SegmentError: what a task raised on its worker.
        """
        if not tasks:
            return
        resources = self._resources(model)
        ahead = self.lookahead()
        settings = ModelSettings(model.version, model.model_id)
        sent = [replace(t, source=_shared_source(t.source), model=settings) for t in tasks]
        size = self.chunk(len(sent))
        chunks = [sent[i : i + size] for i in range(0, len(sent), size)]
        futures: dict[int, Future] = {}
        submitted = 0
        try:
            for index in range(len(chunks)):
                while submitted < len(chunks) and submitted - index < ahead:
                    # pure=False: two runs of identical tasks get futures of their own,
                    # so cancelling one run leaves the other alone.
                    futures[submitted] = self.client.submit(
                        run_on_worker,
                        chunks[submitted],
                        self.plugin,
                        pure=False,
                        resources=resources,
                    )
                    submitted += 1
                # Taken out only once answered: a cancel meanwhile cancels it too.
                pieces = _await(futures[index], cancelled)
                del futures[index]
                yield from pieces
        finally:
            # A cancel, an error, or a consumer that went away: the rest is not wanted.
            if futures:
                self.client.cancel(list(futures.values()))

    def blocks(self, grid: TileGrid) -> BlockGrid:
        """The blocks a run on ``grid`` is cut into: :attr:`tiles_per_task` tiles each,
        else :func:`tiles_per_block` for the cluster's threads now."""
        tiles = self.tiles_per_task or tiles_per_block(len(grid), self.threads())
        return BlockGrid.build(grid, max(1, tiles))

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
        """A run on a grid of tiles, merged and finished on the cluster (see
        :mod:`.blocks`): one task per block runs and stitches its tiles, one links its
        seams with the next blocks and finishes its closed groups, the client joins
        open groups across blocks from those links, and one task per block finishes the
        open groups it owns. The client takes in the finished features as they come
        (WKB, read back on its cores) and puts them in order.

        Raises:
            Cancelled: when ``cancelled()`` turns True (the run's futures are
                cancelled first).
            ClusterUnavailable: a GPU model on a cluster without GPU workers.
            SegmentError: what a task raised on its worker.
        """
        resources = self._resources(model)
        settings = ModelSettings(model.version, model.model_id)
        by_tile = {
            t.index: replace(t, source=_shared_source(t.source), model=settings) for t in tasks
        }
        layout = self.blocks(grid)
        total = len(tasks) + FINISH_STEPS
        futures: list[Future] = []
        submit = self.client.submit
        # Closed groups' polygons are read back as they arrive, on the client's cores,
        # while the cluster still works.
        decoding = ThreadPoolExecutor(os.cpu_count() or 1)
        try:
            # pure=False: two runs of identical tasks get futures of their own, so
            # cancelling one run leaves the other alone.
            stitched = [
                submit(
                    run_block,
                    k,
                    [by_tile[i] for i in layout.tiles(k)],
                    grid,
                    self.plugin,
                    pure=False,
                    resources=resources,
                )
                for k in range(len(layout))
            ]
            futures += stitched
            # Links and closed groups run as soon as their blocks are in, ahead of the
            # tiles still waiting (a higher priority), so that their features come back
            # while the cluster works on the rest.
            linked = [
                submit(
                    link_block,
                    stitched[k],
                    [stitched[m] for m in layout.later_neighbours(k)],
                    grid,
                    finishing,
                    pure=False,
                    priority=1,
                )
                for k in range(len(layout))
            ]
            futures += linked
            links: list[BlockLinks] = []
            parts: list[FinishedPart] = []
            decoded = []
            done = 0
            block_of = {f.key: k for k, f in enumerate(stitched)}
            for future in _as_done(stitched + linked, cancelled):
                if future.key in block_of:  # a block's tiles are done
                    for _ in layout.tiles(block_of[future.key]):
                        done += 1
                        if progress is not None:
                            progress(done, total)
                    continue
                found, closed = future.result()
                links.append(found)
                parts.append(closed)
                decoded.append(decoding.submit(closed.decode))
            plans = plan_groups(links, layout)
            _advance(progress, done + 1, total, cancelled)
            finished = [
                submit(
                    finish_on_worker,
                    stitched[plan.index],
                    plan,
                    [stitched[m] for m in plan.sources],
                    finishing,
                    pure=False,
                    priority=2,
                )
                for plan in plans
            ]
            futures += finished
            parts += [_await(f, cancelled) for f in finished]
            _advance(progress, done + 2, total, cancelled)
            for job in decoded:
                job.result()
        except BaseException:
            # Cancelled or failed: the tasks not yet run are not wanted.
            self.client.cancel(futures)
            raise
        finally:
            decoding.shutdown(wait=False, cancel_futures=True)
        # Done: dropping the futures lets the cluster free the blocks' pieces.
        del futures, stitched, linked, finished, decoded
        answer = join_blocks(parts, finishing)
        _advance(progress, done + 3, total, cancelled)
        return answer

    def overhead(self, count: int = 1000) -> float:
        """Seconds per empty task through the scheduler, measured on ``count`` tasks."""
        started = time.perf_counter()
        futures = [self.client.submit(_noop, i, pure=False) for i in range(count)]
        self.client.gather(futures)
        elapsed = time.perf_counter() - started
        self.client.cancel(futures)
        return elapsed / count


def _await(future: Future, cancelled: CancelFn | None) -> list[TilePieces]:
    """The future's pieces, looking at ``cancelled`` every :data:`POLL_S` seconds.

    Raises:
        Cancelled: when ``cancelled()`` turns True.
        Exception: what the task raised on its worker (pickled back).
    """
    # A done-callback and an event, not ``result(timeout=...)`` in a loop: each timed-out
    # ``result`` leaves a coroutine holding the future in the client's event loop,
    # which keeps finished tasks in the cluster's memory after a cancel.
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    while not done.wait(POLL_S):
        _check(cancelled)
    _check(cancelled)
    return future.result()


def _as_done(futures: list[Future], cancelled: CancelFn | None) -> Iterator[Future]:
    """``futures`` as each finishes, looking at ``cancelled`` every :data:`POLL_S`
    seconds.

    Raises:
        Cancelled: when ``cancelled()`` turns True.
        Exception: what a task raised on its worker (pickled back).
    """
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    for _ in futures:
        while True:
            try:
                future = finished.get(timeout=POLL_S)
                break
            except queue.Empty:
                _check(cancelled)
        _check(cancelled)
        if future.status != "finished":
            future.result()  # raises the task's own exception, or that it was cancelled
        yield future


def _advance(
    progress: ProgressFn | None, done: int, total: int, cancelled: CancelFn | None
) -> None:
    _check(cancelled)
    if progress is not None:
        progress(done, total)


def _check(cancelled: CancelFn | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("The run was cancelled.")


def connect(address: str, *, timeout: float | None = None) -> Client:
    """A client of the Dask scheduler at ``address`` (``tcp://HOST:8786``), waiting at
    most ``timeout`` seconds (None: :data:`CONNECT_TIMEOUT_S`) for it to answer.

    Raises:
        ClusterUnavailable: ``distributed`` is not installed, or no scheduler
            answers there within ``timeout`` seconds.
    """
    distributed = _distributed()
    try:
        return distributed.Client(
            address,
            timeout=CONNECT_TIMEOUT_S if timeout is None else timeout,
            set_as_default=False,
        )
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(
            f"No Dask scheduler answers at {address} ({exc}). Start one with `dask "
            "scheduler` and workers with `dask worker ADDRESS`, or check the address."
        ) from None


_runners: dict[str, DaskRunner] = {}
_runners_lock = threading.Lock()


def runner_for(address: str) -> DaskRunner:
    """One runner per scheduler address in this process, connected on first use."""
    with _runners_lock:
        runner = _runners.get(address)
        if runner is None or runner.client.status not in ("running", "connecting"):
            runner = DaskRunner(connect(address))
            _runners[address] = runner
        return runner


def runner_from_env() -> DaskRunner | None:
    """The runner of :data:`SCHEDULER_ENV`'s scheduler, or None when it is unset
    (runs stay in this process).

    Raises:
        ClusterUnavailable: as :func:`connect`.
    """
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    return runner_for(address) if address else None


def close_runners() -> None:
    """Close the clients of :func:`runner_for` (a process that is done with its clusters)."""
    with _runners_lock:
        runners = list(_runners.values())
        _runners.clear()
    for runner in runners:
        runner.client.close()
