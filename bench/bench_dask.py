"""Benchmark: classic automatic on a large raster over a Dask cluster (issue 11: scale-out).

The same run as ``bench/bench_tiling.py`` (its synthetic landscape, 8192 x 8192 by
default, cached in ``--data-dir``), through :class:`geolibre_ml.segment.cluster.DaskRunner`
on a ``distributed.LocalCluster`` of 1 and then 2 worker processes (1 thread each), and,
for reference, in this process (``run_tiles``: up to 4 threads). Measured:

- **wall time** of ``segment_raster`` per configuration: planning, every tile on the
  workers, the seam merge and finishing in this process. The workers are started and
  the model loaded on each (one warm-up run on a 2-tile raster) before the clock
  starts, as on a cluster that serves many runs; ``--cold`` times the first run too.
- **speed-up** at 2 workers over 1 (goal: at least 1.7x on a 2-core machine).
- **scheduler overhead per task**: ``--empty-tasks`` (2000) tasks that return their
  argument, submitted and gathered on the 2-worker cluster, seconds per task.
- the pickled size of one tile's task (what the client sends per tile), and the
  features found (equal across configurations, or the run is wrong).

- the **client's CPU seconds per tile** in the 2-worker run (this process: planning,
  the scheduler, which LocalCluster runs here too, gathering, the seam merge and
  finishing): the serial part that more workers do not shorten.

From those figures, ``estimate`` works out the speed-up at 10, 100 and 1,000 workers
for a 100,000 x 100,000 raster (docs/benchmarks.md states every assumption): each tile
costs ``t_tile`` seconds of a worker (measured: the 1-worker wall time over the
tiles), and the client and scheduler together spend the larger
of the empty-task overhead shared by a task's tiles and the client's CPU per tile
(measured), in one process and overlapped with the workers, so

    T(N) = max(tiles * t_tile / N, tiles * max(overhead / chunk(N), client_cpu)),

speed-up ``T(1) / T(N)`` and efficiency ``tiles * t_tile / N / T(N)``; the same for
SAM 3 tiles with ``--sam3-tile-s`` seconds per tile on a GPU worker.

Usage::

    python bench/bench_dask.py                   # 8192, 1 and 2 workers, JSON on stdout
    python bench/bench_dask.py --size 2048       # a smoke run (seconds)
    python bench/bench_dask.py --out dask.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_tiling import DEFAULT_DATA_DIR, cached_landscape, write_landscape
from geolibre_ml.segment.cluster import MAX_TILES_PER_TASK, DaskRunner, worker_counts
from geolibre_ml.segment.models import ModelManager, ModelSettings
from geolibre_ml.segment.pipeline import plan_run, segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, ReadOptions
from geolibre_ml.segment.raster import RasterSource

#: Rasters of the worked estimate: one 100,000 x 100,000 image.
ESTIMATE_SIZE = 100_000
ESTIMATE_WORKERS = (10, 100, 1000)


def tiles_of(size: int, tile: int, overlap: int) -> int:
    """Tiles of a ``size`` x ``size`` raster cut into ``tile`` px tiles sharing ``overlap``
    px (the stride is ``tile - overlap``)."""
    per_side = max(1, math.ceil((size - overlap) / (tile - overlap)))
    return per_side * per_side


def estimate(
    *, t_tile: float, overhead: float, client_per_tile: float, tile: int, overlap: int
) -> dict[str, Any]:
    """Speed-up and efficiency at :data:`ESTIMATE_WORKERS` for an :data:`ESTIMATE_SIZE`
    raster: ``t_tile`` seconds of a worker per tile; the scheduler's ``overhead`` per
    task, shared by the tiles of a task as :meth:`DaskRunner.chunk` groups them for N
    one-thread workers; ``client_per_tile`` seconds of the client per tile. The client
    and the scheduler overlap with the workers: T(N) = max(tiles * t_tile / N,
    tiles * max(overhead / chunk(N), client_per_tile))."""
    tiles = tiles_of(ESTIMATE_SIZE, tile, overlap)
    work = tiles * t_tile

    def wall(n: int) -> tuple[float, int]:
        chunk = max(1, min(MAX_TILES_PER_TASK, tiles // (8 * n)))
        return max(work / n, tiles * max(overhead / chunk, client_per_tile)), chunk

    one, _ = wall(1)
    out: dict[str, Any] = {"tiles": tiles, "one_worker_s": round(one, 1)}
    for n in ESTIMATE_WORKERS:
        t, chunk = wall(n)
        out[str(n)] = {
            "tiles_per_task": chunk,
            "wall_s": round(t, 1),
            "speedup": round(one / t, 1),
            "efficiency": round(work / n / t, 3),
        }
    return out


def run_on_cluster(
    path: Path, read: ReadOptions, model: Any, workers: int, warm: Path, cold: bool
) -> dict[str, Any]:
    """One timed run on a fresh LocalCluster of ``workers`` processes."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
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
        started, cpu = time.perf_counter(), time.process_time()
        result = segment_raster(path, AutomaticPrompt(), model, read=read, runner=runner)
        out["wall_s"] = round(time.perf_counter() - started, 2)
        out["client_cpu_s"] = round(time.process_time() - cpu, 2)
        out["features"] = len(result.features)
        counts = client.run(worker_counts, name=runner.plugin)
        out["tiles_per_worker"] = sorted(c["tiles"] for c in counts.values())
        out["loads_per_worker"] = sorted(c["loads"] for c in counts.values())
        if workers >= 2:
            out["empty_task_overhead_s"] = runner.overhead(ARGS.empty_tasks)
        return out


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="raster side in px (8192)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--workers", default="1,2", help="worker process counts (1,2)")
    parser.add_argument("--empty-tasks", type=int, default=2000)
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

    image, generated = cached_landscape(args.data_dir, args.size)
    manager = ModelManager(device="cpu")
    model = manager.get(*manager.resolve("classic", None))
    read = ReadOptions()
    with RasterSource(image) as src:
        run = plan_run(src, AutomaticPrompt(), model, read=read)
        task = run.tasks(str(image), ModelSettings(model.version, model.model_id))[0]
    result: dict[str, Any] = {
        "size": args.size,
        "tiles": len(run.windows),
        "task_bytes": len(pickle.dumps(task)),
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
            }
        runs = [
            run_on_cluster(image, read, model, int(n), warm, args.cold)
            for n in args.workers.split(",")
        ]
    result["cluster"] = runs
    by_workers = {r["workers"]: r for r in runs}
    if 1 in by_workers and 2 in by_workers:
        result["speedup_2_workers"] = round(by_workers[1]["wall_s"] / by_workers[2]["wall_s"], 2)
        result["goal_speedup_1_7"] = result["speedup_2_workers"] >= 1.7
    two = by_workers.get(2)
    if 1 in by_workers and two is not None:
        tiles = len(run.windows)
        t_tile = by_workers[1]["wall_s"] / tiles
        client_per_tile = two["client_cpu_s"] / tiles
        result["assumed"] = {
            "classic_t_tile_s": round(t_tile, 4),
            "sam3_t_tile_s": args.sam3_tile_s,
            "empty_task_overhead_s": two["empty_task_overhead_s"],
            "client_cpu_per_tile_s": round(client_per_tile, 4),
        }
        # Classic's tiles of at most 1024 px (64 px overlap); SAM 3's native 1008 px
        # (126 px overlap).
        common = {"overhead": two["empty_task_overhead_s"], "client_per_tile": client_per_tile}
        result["estimate_classic"] = estimate(t_tile=t_tile, tile=1024, overlap=64, **common)
        result["estimate_sam3"] = estimate(
            t_tile=args.sam3_tile_s, tile=1008, overlap=126, **common
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
