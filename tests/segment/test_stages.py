"""The stages of a run: plan, per-window work, merge, finish; the cache; model leases."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin

from geolibre_ml.segment import backends
from geolibre_ml.segment.backends import Backend, BackendEntry
from geolibre_ml.segment.cache import PreparedCache
from geolibre_ml.segment.errors import Cancelled
from geolibre_ml.segment.formats import boxes_json
from geolibre_ml.segment.masks import ObjectSet, Origin
from geolibre_ml.segment.models import ModelManager, ModelSettings
from geolibre_ml.segment.pipeline import (
    WindowTask,
    plan_windows,
    segment_raster,
    segment_tile,
    segment_window,
)
from geolibre_ml.segment.prompts import AutomaticPrompt, PointBoxPrompt, ReadOptions, TextPrompt
from geolibre_ml.segment.raster import RasterSource
from geolibre_ml.segment.readplan import ReadPlan
from geolibre_ml.segment.stretch import Stretch
from support.rasters import write_raster

GRID = from_origin(500000.0, 4000000.0, 10.0, 10.0)


def scene(tmp_path: Path, name: str = "scene.tif", dtype: str = "uint16") -> Path:
    rng = np.random.default_rng(3)
    data = rng.integers(100, 3000, (3, 60, 80)).astype(dtype)
    data[:, 10:30, 10:40] = 2500
    return write_raster(tmp_path / name, data, crs="EPSG:32633", transform=GRID)


class Discs(Backend):
    """Two overlapping discs per prompt, answered as cropped masks; counts its calls."""

    version: ClassVar[str] = "discs"
    model_ids: ClassVar[tuple[str, ...]] = ("test",)
    thread_safe: ClassVar[bool] = False

    def __init__(self, model_id: str = "test", device: str | None = None) -> None:
        super().__init__(model_id, device)
        self.prepared = 0
        self.runs = 0
        self.closed = False
        self.active = 0
        self.overlapped = False
        self.shapes: list[tuple[int, int]] = []

    def _enter(self) -> None:
        self.active += 1
        self.overlapped |= self.active > 1
        time.sleep(0.02)
        self.active -= 1

    def prepare(self, chip: Any) -> Any:
        self._enter()
        self.prepared += 1
        self.shapes.append(chip.shape)
        return chip

    def run(self, prepared: Any, prompt: Any) -> ObjectSet:
        self._enter()
        self.runs += 1
        h, w = prepared.shape
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        a = (xx - 20) ** 2 + (yy - 20) ** 2 <= 100
        b = (xx - 30) ** 2 + (yy - 20) ** 2 <= 100
        return ObjectSet.from_masks(
            [a, b], [0.9, 0.4], [Origin(point=(20, 20)), Origin(point=(30, 20))]
        )

    def close(self) -> None:
        self.closed = True


# -- plan ---------------------------------------------------------------------------


def test_one_window_unless_tiles_are_asked_for() -> None:
    assert plan_windows(5000, 3000) == ((0, 0, 5000, 3000),)
    assert plan_windows(500, 300, tile_size=1024) == ((0, 0, 500, 300),)


def test_tiles_cover_the_raster_with_the_overlap_and_stay_inside() -> None:
    windows = plan_windows(1000, 700, tile_size=400, overlap=50)
    cols = sorted({w[0] for w in windows})
    rows = sorted({w[1] for w in windows})
    assert cols == [0, 350, 600] and rows == [0, 300]
    assert all(w[2] == 400 and w[3] == 400 for w in windows)
    covered = np.zeros((700, 1000), bool)
    for c, r, w, h in windows:
        assert c + w <= 1000 and r + h <= 700
        covered[r : r + h, c : c + w] = True
    assert covered.all()
    with pytest.raises(ValueError):
        plan_windows(1000, 700, tile_size=400, overlap=400)


def test_a_read_plan_is_plain_data_and_is_reused_without_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = scene(tmp_path)
    with RasterSource(path) as src:
        plan = src.plan
        whole = src.read_chip()
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert plan.fingerprint == pickle.loads(pickle.dumps(plan)).fingerprint
    assert plan.stretch.limits  # a 16-bit raster is stretched

    def measuring(*_: Any) -> Stretch:
        raise AssertionError("a worker given a plan measured the stretch again")

    monkeypatch.setattr(RasterSource, "_measure_stretch", measuring)
    with RasterSource(path, plan=plan) as src:
        assert src.plan is plan
        again = src.read_chip()
    np.testing.assert_array_equal(again.rgb, whole.rgb)
    # Another plan is honoured as given: a different stretch, different display pixels.
    other = ReadPlan(plan.rgb_bands, plan.spectral_bands, plan.used, stretch=Stretch())
    with RasterSource(path, plan=other) as src:
        assert not np.array_equal(src.read_chip().rgb, whole.rgb)


# -- per window, merge, finish ---------------------------------------------------------


def test_the_per_window_work_is_a_pure_function_of_its_task(tmp_path: Path) -> None:
    path = scene(tmp_path)
    backend = Discs()
    whole = segment_raster(path, AutomaticPrompt(), backend)
    with RasterSource(path) as src:
        plan = src.plan
    task = WindowTask(
        str(path), (0, 0, 80, 60), plan, AutomaticPrompt(), ModelSettings("discs", "test")
    )
    task = pickle.loads(pickle.dumps(task))  # it can be sent to another process
    alone = pickle.loads(pickle.dumps(segment_tile(task, Discs())))  # and its answer back
    assert alone.pieces.boxes() == whole.objects.boxes()
    assert shapely.equals(alone.pieces.geometries, whole.objects.pixel_geometries()).all()
    np.testing.assert_array_equal(alone.pieces.scores, whole.objects.scores)


def test_a_window_reads_only_itself_and_reports_raster_pixels(tmp_path: Path) -> None:
    path = scene(tmp_path)
    with RasterSource(path) as src:
        plan = src.plan
    backend = Discs()
    task = WindowTask(
        str(path), (40, 20, 40, 40), plan, AutomaticPrompt(), ModelSettings("discs", "test")
    )
    objects = segment_window(task, backend).objects
    assert backend.shapes == [(40, 40)]
    assert [o.box for o in objects] == [(50, 30, 70, 50), (60, 30, 80, 50)]
    assert [o.origin.point for o in objects] == [(60, 40), (70, 40)]


def test_overlapping_objects_stay_whole_and_flatten_highest_score_first(tmp_path: Path) -> None:
    result = segment_raster(scene(tmp_path), AutomaticPrompt(), Discs())
    a, b = result.features.geometries
    assert shapely.intersection(a, b).area > 0  # both polygons keep the shared pixels
    labels = result.labels
    assert labels[20, 25] == 1  # the overlap goes to the 0.9 object, not the 0.4 one
    boxes = {d["value"]: d["bbox"] for d in boxes_json(result)["detections"]}
    assert boxes == {1: [10, 10, 30, 30], 2: [20, 10, 40, 30]}  # each its whole box


def test_progress_counts_windows_and_finishing_steps_and_cancel_stops_between(
    tmp_path: Path,
) -> None:
    path = scene(tmp_path)
    seen: list[tuple[int, int]] = []
    segment_raster(path, AutomaticPrompt(), Discs(), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls = 0

    def cancel_after_the_window() -> bool:
        nonlocal calls
        calls += 1
        return bool(seen2)

    seen2: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        segment_raster(
            path,
            AutomaticPrompt(),
            Discs(),
            progress=lambda d, t: seen2.append((d, t)),
            cancelled=cancel_after_the_window,
        )
    assert seen2 == [(1, 4)]


# -- the cache ------------------------------------------------------------------------


def test_a_second_prompt_on_the_same_image_skips_preparation(tmp_path: Path) -> None:
    path = scene(tmp_path)
    backend = Discs()
    cache = PreparedCache(64 * 1024 * 1024)
    reused = [
        segment_raster(path, prompt, backend, cache=cache, content_key="abc").reused_windows
        for prompt in (AutomaticPrompt(), PointBoxPrompt(points=((5.0, 5.0),), labels=(1,)))
    ]
    assert reused == [0, 1]
    assert backend.prepared == 1 and backend.runs == 2
    assert cache.hits == 1 and cache.misses == 1
    # Another image (content), another read plan (bands) or no key: prepared again.
    segment_raster(path, AutomaticPrompt(), backend, cache=cache, content_key="other")
    segment_raster(path, AutomaticPrompt(), backend, cache=cache)
    assert backend.prepared == 3
    segment_raster(
        path,
        AutomaticPrompt(),
        backend,
        cache=cache,
        content_key="abc",
        read=ReadOptions((3, 2, 1)),
    )
    assert backend.prepared == 4


def test_the_cache_is_bounded_in_bytes() -> None:
    cache = PreparedCache(max_bytes=1000)
    for key in range(5):
        cache.get_or_make(key, lambda: (np.zeros(300, np.uint8), 300))
    assert len(cache) == 3 and cache.bytes == 900
    cache.get_or_make("big", lambda: (None, 5000))  # larger than the bound: not kept
    assert "big" not in cache._entries and cache.bytes == 900
    made = []
    cache.get_or_make(4, lambda: made.append(1) or (None, 1))
    assert not made  # the most recent entries stayed


def test_concurrent_prompts_on_one_missing_key_prepare_once() -> None:
    cache = PreparedCache(1 << 20)
    made = []

    def make() -> tuple[str, int]:
        made.append(1)
        time.sleep(0.1)
        return "state", 10

    threads = [threading.Thread(target=cache.get_or_make, args=("k", make)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1


# -- leases ---------------------------------------------------------------------------


@pytest.fixture
def discs_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        backends.REGISTRY,
        "discs",
        BackendEntry("discs", ("test",), import_path=f"{__name__}:Discs"),
    )


def test_clear_during_a_run_lets_it_finish_and_closes_the_model_after(
    tmp_path: Path, discs_registered: None
) -> None:
    path = scene(tmp_path)
    manager = ModelManager(device="cpu")
    with manager.lease("discs", "test") as lease:
        manager.clear()  # DELETE /models while this run holds the model
        assert manager.loaded() == []
        assert not lease.backend.closed
        result = segment_raster(path, AutomaticPrompt(), lease)
        assert len(result.features) == 2
    assert lease.backend.closed
    with manager.lease("discs", "test") as again:  # a fresh copy on the next run
        assert again.backend is not lease.backend


def test_a_model_no_run_holds_is_closed_at_once(discs_registered: None) -> None:
    manager = ModelManager(device="cpu")
    with manager.lease("discs", "test") as lease:
        pass
    manager.clear()
    assert lease.backend.closed


def test_the_lock_covers_only_the_backends_own_calls(
    tmp_path: Path, discs_registered: None
) -> None:
    # Two runs of one model that is not thread-safe: its calls never overlap, yet
    # the runs do (reading, vectorizing), and both finish.
    paths = [scene(tmp_path, f"s{i}.tif") for i in range(2)]
    manager = ModelManager(device="cpu")
    results: list[int] = []

    def run(path: Path) -> None:
        with manager.lease("discs", "test") as lease:
            results.append(len(segment_raster(path, TextPrompt("x"), lease).features))

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2, 2]
    assert not manager.get("discs", "test").overlapped


def test_the_bands_shown_are_part_of_the_plan_fingerprint(tmp_path: Path) -> None:
    # The cache key must tell a 3,2,1 read of an image from its default read.
    path = scene(tmp_path)
    with RasterSource(path) as a, RasterSource(path, bands=(3, 2, 1)) as b:
        assert a.plan.fingerprint != b.plan.fingerprint
        assert a.plan.rgb_bands == (1, 2, 3) and b.plan.rgb_bands == (3, 2, 1)


def test_a_cancel_during_a_long_step_stops_it_at_its_next_checkpoint(tmp_path: Path) -> None:
    from geolibre_ml.segment.checkpoints import checkpoint

    class Slow(Discs):
        def run(self, prepared: Any, prompt: Any) -> ObjectSet:
            for _ in range(100):  # a long step in phases, as classic's are
                time.sleep(0.01)
                checkpoint()
            self.finished = True
            return super().run(prepared, prompt)

    backend = Slow()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        segment_raster(
            scene(tmp_path),
            AutomaticPrompt(),
            backend,
            cancelled=lambda: time.monotonic() - started > 0.1,
        )
    assert not getattr(backend, "finished", False)
    assert time.monotonic() - started < 0.5
    checkpoint()  # outside a run it never raises


def test_a_cancel_reaches_inside_the_classic_algorithms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Classic automatic checks for a cancel between its phases (superpixels, statistics,
    # graph, merging passes), not only when it returns.
    from geolibre_ml.segment.backends.classic import ClassicBackend
    from geolibre_ml.segment.classic import regions

    state = {"flooded": False, "stats": 0}
    real_superpixels = regions.superpixels

    def superpixels(*args: Any) -> Any:
        out = real_superpixels(*args)
        state["flooded"] = True  # the client leaves while superpixels are made
        return out

    def stats(*args: Any) -> Any:
        state["stats"] += 1
        raise AssertionError("the run went on after the cancel")

    monkeypatch.setattr(regions, "superpixels", superpixels)
    monkeypatch.setattr(regions, "_superpixel_stats", stats)
    with pytest.raises(Cancelled):
        segment_raster(
            scene(tmp_path),
            AutomaticPrompt(),
            ClassicBackend("default"),
            cancelled=lambda: state["flooded"],
        )
    assert state == {"flooded": True, "stats": 0}
