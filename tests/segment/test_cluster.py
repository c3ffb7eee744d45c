"""Tiles on a real Dask cluster (a LocalCluster of 2 worker processes): the same answer
as a local run, the model loaded once per worker, a lost worker changing nothing,
cancel stopping the run, and SAM 3 through the cluster."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import shapely

from geolibre_ml.segment.errors import Cancelled, ClusterUnavailable
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, Prompt, ReadOptions, TextPrompt
from geolibre_ml.segment.results import SegmentResult
from support.rasters import write_blobs

distributed = pytest.importorskip("distributed")

from distributed.utils import key_split  # noqa: E402

from geolibre_ml.segment.cluster import DaskRunner, worker_counts  # noqa: E402
from geolibre_ml.segment.tiling import TileGrid  # noqa: E402

SIZE = 1000
#: 256 px tiles overlapping by 32: 5 x 5 = 25 tiles, seams through most objects.
TILES = ReadOptions(tile_size=256, tile_overlap=32)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blobs(tmp_path_factory.mktemp("cluster") / "blobs.tif")


@pytest.fixture(scope="module")
def classic() -> Any:
    manager = ModelManager(device="cpu")
    return manager.get(*manager.resolve("classic", None))


@pytest.fixture(scope="module")
def runner(dask_client: Any) -> DaskRunner:
    return DaskRunner(dask_client, device="cpu")


def assert_same(got: SegmentResult, want: SegmentResult) -> None:
    """The same features: equal polygons (vertex for vertex) and equal properties."""
    assert len(got.features) == len(want.features)
    assert len(want.features) > 0
    for a, b in zip(got.features.geometries, want.features.geometries, strict=True):
        assert shapely.equals_exact(a, b, 0.0)
    assert got.features.properties == want.features.properties


@pytest.mark.parametrize(
    ("prompt", "tiles_per_task"),
    [
        (AutomaticPrompt(), 1),
        (TextPrompt("water", 0.5, others=("trees",)), 1),
        (AutomaticPrompt(), 4),
        (AutomaticPrompt(unique=False), 4),
    ],
    ids=["automatic", "text", "automatic-4-tiles-per-task", "binary-tile-by-tile"],
)
def test_classic_on_the_cluster_equals_the_local_answer(
    prompt: Prompt, tiles_per_task: int, blobs: Path, classic: Any, runner: DaskRunner
) -> None:
    local = segment_raster(blobs, prompt, classic, read=TILES)
    progress: list[tuple[int, int]] = []
    remote = segment_raster(
        blobs,
        prompt,
        classic,
        read=TILES,
        runner=runner.configured(tiles_per_task=tiles_per_task),
        progress=lambda *p: progress.append(p),
    )
    assert_same(remote, local)
    # Progress counts the 25 tiles as they come back, then the finishing steps.
    assert [done for done, _ in progress] == list(range(1, len(progress) + 1))
    assert progress[24] == (25, progress[-1][1])


def test_a_grid_is_merged_and_finished_on_the_workers(
    blobs: Path, classic: Any, runner: DaskRunner, dask_client: Any
) -> None:
    """Blocks of tiles are stitched, linked and finished by Dask tasks; the client takes
    the finished features, a binary answer (one object of everything) the tiles."""
    with distributed.get_task_stream(dask_client) as stream:
        segment_raster(blobs, AutomaticPrompt(), classic, read=TILES, runner=runner)
    prefixes = [key_split(t["key"]) for t in stream.data]
    blocks = len(runner.blocks(TileGrid.build(SIZE, SIZE, TILES.tile_size, TILES.tile_overlap)))
    assert blocks > 1
    assert {p: prefixes.count(p) for p in set(prefixes)} == {
        "run_block": blocks,
        "link_block": blocks,
        "finish_on_worker": blocks,
    }
    with distributed.get_task_stream(dask_client) as stream:
        segment_raster(blobs, AutomaticPrompt(unique=False), classic, read=TILES, runner=runner)
    assert {key_split(t["key"]) for t in stream.data} == {"run_on_worker"}


def _opencv_threads() -> int:
    import cv2

    return int(cv2.getNumThreads())


def test_opencv_uses_the_workers_threads_not_every_core(
    runner: DaskRunner, dask_client: Any
) -> None:
    """A one-thread worker runs OpenCV on one thread, as Dask's nanny has OpenMP and BLAS
    do, so that a machine's workers do not oversubscribe its cores."""
    assert set(dask_client.run(_opencv_threads).values()) == {1}


def test_the_model_is_loaded_once_per_worker_and_reused(
    blobs: Path, classic: Any, runner: DaskRunner, dask_client: Any
) -> None:
    before = dask_client.run(worker_counts, name=runner.plugin)
    segment_raster(blobs, AutomaticPrompt(), classic, read=TILES, runner=runner)
    middle = dask_client.run(worker_counts, name=runner.plugin)
    segment_raster(blobs, TextPrompt("water", 0.5), classic, read=TILES, runner=runner)
    after = dask_client.run(worker_counts, name=runner.plugin)
    assert set(before) == set(middle) == set(after)
    ran = {w: after[w]["tiles"] - before[w]["tiles"] for w in after}
    assert sum(ran.values()) == 2 * 25
    for worker, counts in after.items():
        # One load on every worker that ran a task, none for the second run.
        assert counts["loads"] == (1 if counts["tiles"] else 0), (worker, counts)
        assert counts["loads"] == middle[worker]["loads"]


def test_a_worker_killed_mid_run_changes_nothing(
    blobs: Path, classic: Any, runner: DaskRunner, dask_client: Any
) -> None:
    prompt = AutomaticPrompt()
    local = segment_raster(blobs, prompt, classic, read=TILES)
    pids = dask_client.run(os.getpid)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == 2 and not killed:
            # A worker with tasks in hand, so that work is lost and must be redone.
            busy = [w for w, keys in dask_client.processing().items() if keys] or list(pids)
            killed.append(pids[busy[0]])
            os.kill(pids[busy[0]], signal.SIGKILL)

    remote = segment_raster(blobs, prompt, classic, read=TILES, runner=runner, progress=progress)
    assert killed
    assert_same(remote, local)
    dask_client.wait_for_workers(2, timeout=60)
    assert killed[0] not in dask_client.run(os.getpid).values()


#: The names of the run's Dask tasks: tiles outside a grid, and a grid's blocks.
RUN_TASKS = ("run_on_worker", "run_block", "link_block", "finish_on_worker")


def _run_tasks_on_scheduler(dask_scheduler: Any) -> int:
    return sum(key.startswith(RUN_TASKS) for key in map(str, dask_scheduler.tasks))


def test_cancel_stops_the_run_while_its_tiles_wait(
    blobs: Path, classic: Any, runner: DaskRunner, dask_client: Any
) -> None:
    # Both workers (one thread each) are busy for a while, so no tile can start: only
    # the runner's own look at the cancel flag can end the run.
    blockers = [
        dask_client.submit(time.sleep, 3, pure=False, workers=[w])
        for w in dask_client.scheduler_info()["workers"]
    ]
    before = dask_client.run(worker_counts, name=runner.plugin)
    polls: list[int] = []
    seen: list[int] = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(Cancelled):
        segment_raster(
            blobs,
            AutomaticPrompt(),
            classic,
            read=TILES,
            runner=runner,
            progress=lambda done, total: seen.append(done),
            cancelled=cancelled,
        )
    assert seen == []  # stopped before any tile came back
    # The run's futures are gone from the scheduler; once the workers are free, none
    # of its tiles runs.
    deadline = time.monotonic() + 10
    while dask_client.run_on_scheduler(_run_tasks_on_scheduler) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dask_client.run_on_scheduler(_run_tasks_on_scheduler) == 0
    dask_client.gather(blockers)
    time.sleep(0.5)
    after = dask_client.run(worker_counts, name=runner.plugin)
    assert {w: c["tiles"] for w, c in after.items()} == {w: c["tiles"] for w, c in before.items()}


def test_sam3_runs_through_the_cluster(
    sam3_checkpoint: Path, tmp_path: Path, runner: DaskRunner, dask_client: Any
) -> None:
    manager = ModelManager(device="cpu")
    model = manager.get("sam3", str(sam3_checkpoint))
    assert model.wants_gpu
    path = write_blobs(tmp_path / "small.tif", size=200, count=6)
    prompt = TextPrompt("water", 0.0)
    read = ReadOptions(tile_size=112, tile_overlap=16)
    local = segment_raster(path, prompt, model, read=read)
    # Two tiles per task: the worker encodes them in one batch (batch_size 2 on CPU).
    remote = segment_raster(
        path, prompt, model, read=read, runner=runner.configured(tiles_per_task=2)
    )
    assert len(local.features) > 0
    assert len(remote.features) == len(local.features)
    for a, b in zip(remote.features.geometries, local.features.geometries, strict=True):
        assert shapely.equals_exact(a, b, 0.0)
    scores = [p.get("score") for p in remote.features.properties]
    assert scores == pytest.approx([p.get("score") for p in local.features.properties], abs=1e-4)


def test_gpu_tiles_need_a_worker_offering_the_resource(tmp_path: Path, classic: Any) -> None:
    path = write_blobs(tmp_path / "small.tif", size=300, count=6)
    read = ReadOptions(tile_size=256, tile_overlap=32)
    local = segment_raster(path, AutomaticPrompt(), classic, read=read)
    # In-process workers (threads) are enough here: what is checked is the scheduling.
    for resources, runs in (({}, False), ({"gpu": 1}, True), ({"GPU": 1}, True)):
        with (
            distributed.LocalCluster(
                n_workers=1,
                threads_per_worker=1,
                processes=False,
                resources=resources,
                dashboard_address=None,
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            runner = DaskRunner(client, device="cpu", gpu=True)
            if not runs:
                with pytest.raises(ClusterUnavailable, match="--resources GPU=1"):
                    segment_raster(path, AutomaticPrompt(), classic, read=read, runner=runner)
                continue
            # "gpu": the spelling of DASK_DISTRIBUTED__WORKER__RESOURCES__GPU=1.
            assert runner.gpu_resource() == (next(iter(resources)), 1)
            remote = segment_raster(path, AutomaticPrompt(), classic, read=read, runner=runner)
            assert_same(remote, local)
