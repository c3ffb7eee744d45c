"""Benchmark: classic automatic on a large raster over a Dask cluster (issue 11: scale-out).

The same run as ``bench/bench_tiling.py`` (its synthetic landscape, 8192 x 8192 by
default, cached in ``--data-dir``), through :class:`geolibre_ml.segment.cluster.DaskRunner`
on a cluster of 1 and then 2 worker processes (1 thread each) whose scheduler runs in
a process of its own, as on a real cluster (``distributed``'s ``SubprocessCluster``),
and, for reference, in this process (``run_tiles``: up to 4 threads). Each cluster
runs the raster two ways:

- ``blocks`` (what the runner does): blocks of tiles stitched, linked and finished on
  the workers (segment/blocks.py); this process plans, joins groups across blocks and
  puts the finished features in order;
- ``tile-by-tile`` (the code before the blocks, kept for binary answers): every tile's
  pieces come back here, to the stitcher, and are finished here.

Measured for each: the **wall time** of ``segment_raster`` (the workers started and
the model loaded on each before the clock starts, as on a cluster that serves many
runs; ``--cold`` times the first run too), the **client's CPU** (this process, all of
its threads, and its main thread alone), the **scheduler's CPU** and the number of
Dask tasks, the **workers' time** in the merge and finishing tasks (``blocks``: from
the task stream), the features found (the same everywhere, or the run is wrong), the
speed-up at 2 workers over 1 (goal: at least 1.7x on a 2-core machine), and the
scheduler's overhead per task on ``--empty-tasks`` (2000) empty tasks.

From those figures, :func:`estimate` works out the wall time, speed-up and efficiency
at 10, 100 and 1,000 workers for a 100,000 x 100,000 raster (docs/benchmarks.md
states every assumption), for classic tiles (measured) and SAM 3 tiles
(``--sam3-tile-s`` seconds per tile on a GPU worker).

Usage::

    python bench/bench_dask.py                   # 8192, 1 and 2 workers, JSON on stdout
    python bench/bench_dask.py --size 2048       # a smoke run (seconds)
    python bench/bench_dask.py --out dask.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from distributed.utils import key_split

from bench_tiling import DEFAULT_DATA_DIR, cached_landscape, write_landscape
from geolibre_ml.segment import cluster as cluster_module
from geolibre_ml.segment.blocks import KEY_STRIDE, FinishedPart, join_blocks
from geolibre_ml.segment.cluster import DaskRunner, tiles_per_block, worker_counts
from geolibre_ml.segment.models import ModelManager, ModelSettings
from geolibre_ml.segment.pipeline import plan_run, segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, ReadOptions
from geolibre_ml.segment.raster import RasterSource

#: Rasters of the worked estimate: one 100,000 x 100,000 image.
ESTIMATE_SIZE = 100_000
ESTIMATE_WORKERS = (10, 100, 1000)
#: Dask tasks per block: its tiles, its links and closed groups, its open groups.
TASKS_PER_BLOCK = 3
#: Copies of a run's finished parts joined to measure the join's cost per tile.
JOIN_REPLICAS = 20
#: The merge and finishing tasks of a block (``blocks``), by their Dask names.
MERGE_TASKS = ("link_block", "finish_on_worker")


def tiles_of(size: int, tile: int, overlap: int) -> int:
    """Tiles of a ``size`` x ``size`` raster cut into ``tile`` px tiles sharing ``overlap``
    px (the stride is ``tile - overlap``)."""
    per_side = max(1, math.ceil((size - overlap) / (tile - overlap)))
    return per_side * per_side


def estimate(
    *,
    t_tile: float,
    merge_per_tile: float,
    scheduler_per_task: float,
    client_per_tile: float,
    decode_per_tile: float,
    tail_per_tile: float,
    tail_fixed: float,
    before_client_per_tile: float,
    tile: int,
    overlap: int,
    client_cores: int = 16,
    size: int = ESTIMATE_SIZE,
) -> dict[str, Any]:
    """Wall time, speed-up and efficiency at :data:`ESTIMATE_WORKERS` one-thread workers
    for an :data:`ESTIMATE_SIZE` raster (seconds; every figure measured by this bench but
    ``t_tile`` for SAM 3). In blocks (what the runner does):

    - blocks of :func:`~geolibre_ml.segment.cluster.tiles_per_block` tiles, three tasks
      each;
    - workers: ``t_tile + merge_per_tile`` per tile (their share of the link and
      finishing tasks), spread evenly; the last one starts its first task
      ``N * scheduler_per_task / 3`` late (**assumed**: a third of the scheduler's
      work on a task is handing it out, done worker after worker);
    - scheduler: ``scheduler_per_task`` per task, in its own process; client:
      ``client_per_tile`` on its communication thread while the tiles run (taking in
      the links and the closed groups' features), and ``decode_per_tile`` reading
      their polygons back, spread over its ``client_cores`` (**assumed**: 16).
      Workers, scheduler and client overlap: the run lasts as long as the slowest;
    - then the tail, which nothing overlaps: the last block's links and finishing
      (``block tiles * merge_per_tile``) and the client's plan and join
      (``tail_fixed + tiles * tail_per_tile``).

    Tile by tile (the code before): ``max(tiles * t_tile / N, tiles *
    before_client_per_tile)``, the client merging and finishing every tile.

    Speed-up is ``T(1) / T(N)``, efficiency the speed-up over N.
    """
    tiles = tiles_of(size, tile, overlap)

    def wall(n: int) -> tuple[float, int]:
        size = tiles_per_block(tiles, n)
        tasks = TASKS_PER_BLOCK * math.ceil(tiles / size)
        workers = tiles * (t_tile + merge_per_tile) / n + n * scheduler_per_task / 3
        client = tiles * max(client_per_tile, decode_per_tile / client_cores)
        running = max(workers, tasks * scheduler_per_task, client)
        tail = size * merge_per_tile + tail_fixed + tiles * tail_per_tile
        return running + tail, size

    def before(n: int) -> float:
        return max(tiles * t_tile / n, tiles * before_client_per_tile)

    one, _ = wall(1)
    out: dict[str, Any] = {"tiles": tiles, "one_worker_s": round(one, 1)}
    for n in ESTIMATE_WORKERS:
        t, size = wall(n)
        out[str(n)] = {
            "tiles_per_block": size,
            "wall_s": round(t, 2),
            "speedup": round(one / t, 1),
            "efficiency": round(one / t / n, 3),
            "before_efficiency": round(before(1) / before(n) / n, 3),
        }
    return out


class _Timed:
    """Wall seconds spent in some functions of the runner (the client's tail)."""

    def __init__(self, module: Any, names: tuple[str, ...]) -> None:
        self.seconds = 0.0
        for name in names:
            setattr(module, name, self._wrap(getattr(module, name)))

    def _wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


class _Decoding:
    """CPU seconds the client spends reading polygons back from WKB (on its threads)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.paused = False
        self._lock = threading.Lock()
        decode = FinishedPart.decode

        def timed(part: FinishedPart) -> None:
            started = time.thread_time()
            try:
                decode(part)
            finally:
                if not self.paused:  # the open groups', read in the tail, count there
                    with self._lock:
                        self.seconds += time.thread_time() - started

        FinishedPart.decode = timed  # type: ignore[method-assign]


def join_per_tile(captured: list[Any], tiles: int) -> float:
    """Seconds of the client's join per tile, on :data:`JOIN_REPLICAS` copies of the
    last run's finished parts as if from a raster that many times larger (the join of
    one 8192 px run is too short to tell its cost per feature from its fixed cost)."""
    blob, args = captured
    parts: list[FinishedPart] = []
    for r in range(JOIN_REPLICAS):
        copies = pickle.loads(blob)
        for part in copies:
            part.decode()
            shift = r * tiles * KEY_STRIDE
            part.groups = part.groups + shift
            part.objects.values = part.objects.values + shift
        parts += copies
    started = time.perf_counter()
    join_blocks(parts, *args)
    return (time.perf_counter() - started) / (JOIN_REPLICAS * tiles)


def tiles_in(path: Path, read: ReadOptions, model: Any) -> int:
    """The tiles of a run on ``path``."""
    with RasterSource(path) as src:
        return len(plan_run(src, AutomaticPrompt(), model, read=read).windows)


def _scheduler_cpu() -> float:
    return time.process_time()


def timed_run(
    client: Any,
    runner: Any,
    path: Path,
    read: ReadOptions,
    model: Any,
    tail: _Timed,
    decoding: _Decoding,
) -> tuple[dict[str, Any], Any]:
    """One timed ``segment_raster`` of ``path`` through ``runner``: wall, CPU of this
    process (all threads, and the main thread), of the scheduler, and the time the
    workers spent in each kind of task."""
    import distributed

    tail.seconds = decoding.seconds = 0.0
    decoding.paused = False
    scheduler = client.run_on_scheduler(_scheduler_cpu)
    with distributed.get_task_stream(client) as stream:
        started, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        result = segment_raster(path, AutomaticPrompt(), model, read=read, runner=runner)
        wall = time.perf_counter() - started
        cpu, main = time.process_time() - cpu, time.thread_time() - main
    by_name: dict[str, list[float]] = {}
    for task in stream.data:
        spent = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        by_name.setdefault(key_split(task["key"]), []).append(spent)
    out = {
        "wall_s": round(wall, 2),
        "client_cpu_s": round(cpu, 3),
        "client_main_thread_cpu_s": round(main, 3),
        "client_tail_s": round(tail.seconds, 4),
        "client_decode_cpu_s": round(decoding.seconds, 4),
        "scheduler_cpu_s": round(client.run_on_scheduler(_scheduler_cpu) - scheduler, 2),
        "tasks": {name: len(times) for name, times in sorted(by_name.items())},
        "task_s": {name: round(sum(times), 2) for name, times in sorted(by_name.items())},
        "features": len(result.features),
        "pixels": int(result.objects.pixels.sum()),
    }
    return out, result


def run_on_cluster(
    path: Path, read: ReadOptions, model: Any, workers: int, warm: Path, cold: bool
) -> dict[str, Any]:
    """The timed runs on a fresh cluster of ``workers`` processes, its scheduler in a
    process of its own."""
    import distributed
    from distributed.deploy.subprocess import SubprocessCluster

    with (
        SubprocessCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(workers)
        runner = DaskRunner(client)
        out: dict[str, Any] = {"workers": workers}
        if cold:
            started = time.perf_counter()
            segment_raster(path, AutomaticPrompt(), model, read=read, runner=runner)
            out["cold_s"] = round(time.perf_counter() - started, 2)
        # Every worker loads the model (a 2-tile raster per worker) before timing.
        for _ in range(workers):
            segment_raster(
                warm, AutomaticPrompt(), model, read=ReadOptions(tile_size=256), runner=runner
            )
        decoding = _Decoding()
        tail = _Timed(cluster_module, ("plan_groups", "join_blocks"))
        join = cluster_module.join_blocks
        captured: list[Any] = []

        def joining(parts: list[FinishedPart], *args: Any, **kwargs: Any) -> Any:
            # Kept (outside the timed join) for join_per_tile.
            decoding.paused = True
            captured[:] = [pickle.dumps(parts), args]
            return join(parts, *args, **kwargs)

        cluster_module.join_blocks = joining
        # The runner's tile stream alone, without its segment_grid: every tile back here.
        tile_by_tile = functools.partial(runner.__call__)
        for mode, chosen in (("tile-by-tile", tile_by_tile), ("blocks", runner)):
            out[mode], result = timed_run(client, chosen, path, read, model, tail, decoding)
            del result
        out["join_per_tile_s"] = join_per_tile(captured, tiles_in(path, read, model))
        counts = client.run(worker_counts, name=runner.plugin)
        out["tiles_per_worker"] = sorted(c["tiles"] for c in counts.values())
        out["loads_per_worker"] = sorted(c["loads"] for c in counts.values())
        # The scheduler's and the client's own background work (heartbeats...), per
        # second, to take out of the runs' CPU.
        scheduler, started = client.run_on_scheduler(_scheduler_cpu), time.perf_counter()
        mine = time.process_time()
        time.sleep(ARGS.idle_s)
        spent = client.run_on_scheduler(_scheduler_cpu) - scheduler
        mine = time.process_time() - mine
        out["scheduler_idle_cpu_per_s"] = spent / (time.perf_counter() - started)
        out["client_idle_cpu_per_s"] = mine / (time.perf_counter() - started)
        if workers >= 2:
            scheduler = client.run_on_scheduler(_scheduler_cpu)
            out["empty_task_overhead_s"] = runner.overhead(ARGS.empty_tasks)
            spent = client.run_on_scheduler(_scheduler_cpu) - scheduler
            out["empty_task_scheduler_cpu_s"] = spent / ARGS.empty_tasks
        return out


def _per_task(run: dict[str, Any], idle_per_s: float) -> float:
    """The scheduler's CPU seconds per task of ``run``, its idle background taken out."""
    busy = run["scheduler_cpu_s"] - idle_per_s * run["wall_s"]
    return max(0.0, busy) / sum(run["tasks"].values())


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="raster side in px (8192)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--workers", default="1,2", help="worker process counts (1,2)")
    parser.add_argument("--empty-tasks", type=int, default=2000)
    parser.add_argument(
        "--idle-s", type=float, default=5.0, help="seconds the idle scheduler is watched"
    )
    parser.add_argument("--no-local", action="store_true", help="skip the in-process run")
    parser.add_argument("--cold", action="store_true", help="also time the first run")
    parser.add_argument(
        "--sam3-tile-s",
        type=float,
        default=0.25,
        help="seconds per SAM 3 tile on one GPU worker for the estimate (0.25: an "
        "assumption until bench_sam3_gpu.py has run)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    ARGS = args = parser.parse_args(argv)
    os.environ.setdefault("GDAL_CACHEMAX", "64")
    # The scheduler's process logs to a pipe nobody reads: only errors, or it fills.
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"

    image, generated = cached_landscape(args.data_dir, args.size)
    manager = ModelManager(device="cpu")
    model = manager.get(*manager.resolve("classic", None))
    read = ReadOptions()
    planning = time.process_time()
    with RasterSource(image) as src:
        run = plan_run(src, AutomaticPrompt(), model, read=read)
        tasks = run.tasks(str(image), ModelSettings(model.version, model.model_id))
    planning = time.process_time() - planning
    task = tasks[0]
    tiles = len(run.windows)
    result: dict[str, Any] = {
        "size": args.size,
        "tiles": tiles,
        "task_bytes": len(pickle.dumps(task)),
        "planning_cpu_s": round(planning, 3),
        "generated_s": None if generated is None else round(generated, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.tif"
        write_landscape(warm, 400)
        if not args.no_local:
            started = time.perf_counter()
            local = segment_raster(image, AutomaticPrompt(), model, read=read)
            result["local"] = {
                "wall_s": round(time.perf_counter() - started, 2),
                "features": len(local.features),
                "pixels": int(local.objects.pixels.sum()),
            }
            del local
        runs = [
            run_on_cluster(image, read, model, int(n), warm, args.cold)
            for n in args.workers.split(",")
        ]
    result["cluster"] = runs
    by_workers = {r["workers"]: r for r in runs}
    if 1 in by_workers and 2 in by_workers:
        for mode in ("tile-by-tile", "blocks"):
            one, two = by_workers[1][mode]["wall_s"], by_workers[2][mode]["wall_s"]
            result[f"speedup_2_workers_{mode}"] = round(one / two, 2)
        result["goal_speedup_1_7"] = result["speedup_2_workers_blocks"] >= 1.7
    two = by_workers.get(2)
    if 1 in by_workers and two is not None:
        blocks, before = two["blocks"], two["tile-by-tile"]
        merge = sum(blocks["task_s"].get(name, 0.0) for name in MERGE_TASKS)
        tail = blocks["client_tail_s"]
        figures = {
            "classic_t_tile_s": by_workers[1]["blocks"]["task_s"]["run_block"] / tiles,
            "sam3_t_tile_s": args.sam3_tile_s,
            "merge_per_tile_s": merge / tiles,
            # The marginal cost of a task, its idle background taken out.
            "scheduler_per_task_s": max(
                0.0,
                two["empty_task_scheduler_cpu_s"]
                - two["scheduler_idle_cpu_per_s"] * two["empty_task_overhead_s"],
            ),
            # The client's own work while the tiles run (its communication thread):
            # its CPU but planning, the tail, reading WKB and its idle background.
            "client_per_tile_s": max(
                0.0,
                blocks["client_cpu_s"]
                - planning
                - tail
                - blocks["client_decode_cpu_s"]
                - two["client_idle_cpu_per_s"] * blocks["wall_s"],
            )
            / tiles,
            "decode_per_tile_s": blocks["client_decode_cpu_s"] / tiles,
            # The join's cost per tile, and the run's whole tail (plan and join) as
            # if it were a fixed cost besides.
            "tail_per_tile_s": two["join_per_tile_s"],
            "tail_fixed_s": tail,
            "before_client_per_tile_s": max(
                0.0,
                before["client_cpu_s"] - planning - two["client_idle_cpu_per_s"] * before["wall_s"],
            )
            / tiles,
            "run_scheduler_per_task_s": _per_task(blocks, two["scheduler_idle_cpu_per_s"]),
        }
        result["figures"] = {k: round(v, 6) for k, v in figures.items()}
        names = (
            "merge_per_tile_s",
            "scheduler_per_task_s",
            "client_per_tile_s",
            "decode_per_tile_s",
            "tail_per_tile_s",
            "before_client_per_tile_s",
        )
        common = {k.removesuffix("_s"): figures[k] for k in names}
        common["tail_fixed"] = figures["tail_fixed_s"]
        result["estimate_classic"] = estimate(
            t_tile=figures["classic_t_tile_s"], tile=1024, overlap=64, **common
        )
        result["estimate_sam3"] = estimate(
            t_tile=args.sam3_tile_s, tile=1008, overlap=126, **common
        )
        # The same, were the answer written where it was finished instead of taken in
        # by the client (not built): the client's per-tile work gone.
        result["estimate_sam3_answer_not_through_client"] = estimate(
            t_tile=args.sam3_tile_s,
            tile=1008,
            overlap=126,
            **(common | {"client_per_tile": 0.0, "decode_per_tile": 0.0}),
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
