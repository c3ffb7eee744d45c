"""The memory budget: estimates, FIFO reservations, waits cancelled by a client leaving."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx
import numpy as np
import pytest

from geolibre_ml.modelserver import budget as budget_module
from geolibre_ml.modelserver.budget import (
    MIB,
    MemoryBudget,
    admit,
    budget_bytes_from_env,
    estimate_bytes,
    machine_memory_bytes,
    raster_size,
)
from geolibre_ml.segment.errors import Cancelled, ImageTooLarge
from support.rasters import write_raster
from support.servers import ServerProcess, run_server

from .helpers import detail, leftovers, segment


def test_estimate_matches_the_measured_peaks() -> None:
    # docs/benchmarks.md and issue 7: 730 MiB for 4096 x 4096, 3.45 GiB for 10,000 x 10,000.
    # In one piece (one tile as large as the raster): the measured peaks.
    assert estimate_bytes(4096, 4096, 4096) == pytest.approx(730 * MIB, rel=0.1)
    assert estimate_bytes(10_000, 10_000, 10_000) >= 3.45 * 1024 * MIB
    assert estimate_bytes(10_000, 10_000, 10_000) < 5 * 1024 * MIB
    assert estimate_bytes(0, 100) == 0
    # Tile by tile: the tiles at work and the answer, far below one piece.
    assert estimate_bytes(1000, 1000) == estimate_bytes(1000, 1000, 1000)
    assert estimate_bytes(20_000, 20_000) < 1024 * MIB < estimate_bytes(8192, 8192, 8192)


def test_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOLIBRE_ML_MEMORY_BUDGET_MB", "300")
    assert budget_bytes_from_env() == 300 * MIB
    memory = machine_memory_bytes()
    assert memory is not None and memory > 256 * MIB
    for bad in ("", "lots", "-5", "0", "nan", "inf"):
        monkeypatch.setenv("GEOLIBRE_ML_MEMORY_BUDGET_MB", bad)
        assert budget_bytes_from_env() == int(memory * budget_module.DEFAULT_FRACTION), bad


def test_raster_size_reads_the_header_only(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "a.tif", np.zeros((3, 20, 30), np.uint8))
    assert raster_size(path) == (30, 20)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00 not really a tiff")
    assert raster_size(junk) is None
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert raster_size(text) is None


async def _hold(budget: MemoryBudget, nbytes: int, log: list[str], name: str, secs: float) -> None:
    async with budget.reserve(nbytes):
        log.append(f"+{name}")
        await anyio.sleep(secs)
        log.append(f"-{name}")


def test_runs_that_fit_together_run_together_and_others_wait() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(100)
        log: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_hold, budget, 40, log, "a", 0.2)
            await anyio.sleep(0.01)
            tasks.start_soon(_hold, budget, 40, log, "b", 0.2)
            await anyio.sleep(0.01)
            tasks.start_soon(_hold, budget, 40, log, "c", 0.05)
            await anyio.sleep(0.05)
            assert budget.used == 80 and budget.waiting == 1
        assert budget.used == 0 and budget.waiting == 0
        return log

    log = anyio.run(main)
    assert log[:2] == ["+a", "+b"]  # together
    assert log.index("+c") > log.index("-a")  # waited for room


def test_reservations_are_first_come_first_served() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(100)
        log: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_hold, budget, 60, log, "first", 0.2)
            await anyio.sleep(0.01)
            tasks.start_soon(_hold, budget, 80, log, "large", 0.05)
            await anyio.sleep(0.01)
            # Would fit now (60 + 10), but the large run came first: no overtaking.
            tasks.start_soon(_hold, budget, 10, log, "small", 0.05)
            await anyio.sleep(0.05)
            assert budget.waiting == 2
        return log

    log = anyio.run(main)
    assert log.index("+large") < log.index("+small")
    assert log.index("-first") < log.index("+large")


def test_a_run_over_the_whole_budget_runs_alone() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(100)
        log: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_hold, budget, 10, log, "small", 0.1)
            await anyio.sleep(0.01)
            tasks.start_soon(_hold, budget, 250, log, "huge", 0.1)
            await anyio.sleep(0.01)
            tasks.start_soon(_hold, budget, 10, log, "after", 0.01)
            await anyio.sleep(0.15)
            assert budget.used == 100  # the huge run holds the whole budget
        return log

    log = anyio.run(main)
    assert log == ["+small", "-small", "+huge", "-huge", "+after", "-after"]


def test_a_run_far_over_the_budget_is_refused() -> None:
    budget = MemoryBudget(100, refuse_factor=4)
    assert budget.refuses(401) and not budget.refuses(400)

    async def main() -> None:
        async with budget.reserve(401):
            pass

    with pytest.raises(ValueError, match="over 4"):
        anyio.run(main)


def test_a_cancelled_wait_leaves_the_queue_and_lets_the_next_in() -> None:
    async def main() -> list[str]:
        budget = MemoryBudget(100)
        log: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_hold, budget, 50, log, "running", 0.2)
            await anyio.sleep(0.01)
            with anyio.CancelScope() as abandoned:
                # The large waiter blocks the small one (FIFO) until it is cancelled.
                async with anyio.create_task_group() as inner:
                    inner.start_soon(_hold, budget, 90, log, "large", 0.1)
                    await anyio.sleep(0.01)
                    tasks.start_soon(_hold, budget, 20, log, "small", 0.01)
                    await anyio.sleep(0.05)
                    assert budget.waiting == 2 and log == ["+running"]
                    abandoned.cancel()
            await anyio.sleep(0.02)
            assert "+small" in log  # moved up as soon as the large wait was given up
            assert budget.waiting == 0
        assert budget.used == 0
        return log

    log = anyio.run(main)
    assert "+large" not in log


class _Client:
    """Just enough of a Starlette request for :func:`admit`: its app and receive channel."""

    def __init__(self, budget: MemoryBudget, disconnect_after: float | None) -> None:
        self.app = SimpleNamespace(state=SimpleNamespace(budget=budget))
        self.disconnect_after = disconnect_after

    async def receive(self) -> dict:
        if self.disconnect_after is None:
            await anyio.sleep_forever()
        await anyio.sleep(self.disconnect_after)
        return {"type": "http.disconnect"}


def test_admit_reserves_the_estimate_and_a_client_leaving_stops_the_wait(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "a.tif", np.zeros((1, 1000, 1000), np.uint8))
    expected = estimate_bytes(1000, 1000)

    async def main() -> None:
        budget = MemoryBudget(int(expected * 1.5))
        async with admit(_Client(budget, None), path, "a.tif"):  # type: ignore[arg-type]
            assert budget.used == expected
            with pytest.raises(Cancelled, match="disconnected while the run waited"):
                async with admit(_Client(budget, 0.05), path, "b.tif"):  # type: ignore[arg-type]
                    raise AssertionError("admitted beyond the budget")
            assert budget.waiting == 0 and budget.used == expected
        assert budget.used == 0

    anyio.run(main)


def test_admit_refuses_far_too_large_and_ignores_unreadable(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "a.tif", np.zeros((1, 1000, 1000), np.uint8))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    async def main() -> None:
        budget = MemoryBudget(MIB)
        with pytest.raises(ImageTooLarge) as refused:
            async with admit(_Client(budget, None), path, "a.tif"):  # type: ignore[arg-type]
                pass
        assert "1,000 x 1,000 pixels" in refused.value.detail
        assert "GEOLIBRE_ML_MEMORY_BUDGET_MB" in refused.value.detail
        async with admit(_Client(budget, None), junk, "junk.png"):  # type: ignore[arg-type]
            assert budget.used == 0  # the run itself will say what is wrong with it

    anyio.run(main)


# -- over HTTP ------------------------------------------------------------------------

BUDGET_MB = 150  # one 1500 x 1500 run (~99 MiB) fits, two do not; two 1000 x 1000 (~44 MiB) do


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A model server with a memory budget of :data:`BUDGET_MB` MiB."""
    folder = tmp_path_factory.mktemp("budgeted")
    (folder / "tmp").mkdir()
    env = {"GEOLIBRE_ML_MEMORY_BUDGET_MB": str(BUDGET_MB), "TMPDIR": str(folder / "tmp")}
    with run_server(["model-server"], log_path=folder / "server.log", env=env) as process:
        yield process
        log = process.log()
    assert "Traceback" not in log, log
    assert leftovers(folder / "tmp") == []


def _budget_events(log: str, names: set[str]) -> list[tuple[str, str]]:
    """``(event, name)`` in log order, for 'holds' and 'released' of the given files."""
    found = re.findall(r"'([^']+)' (holds|released) \d+ MiB of the memory budget", log)
    return [(event, name) for name, event in found if name in names]


def _post_together(server: ServerProcess, paths: list[Path]) -> list[int]:
    def post(path: Path) -> int:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            return segment(client, "automatic", path, {"model_version": "classic"}).status_code

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(post, paths))


def _noise(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_raster(path, rng.integers(0, 255, (3, size, size), dtype=np.uint8))


def test_two_large_runs_do_not_overlap_under_a_small_budget(
    budgeted: ServerProcess, tmp_path: Path
) -> None:
    paths = [_noise(tmp_path / f"large-{i}.tif", 1500, i) for i in range(2)]
    assert _post_together(budgeted, paths) == [200, 200]
    events = _budget_events(budgeted.log(), {p.name for p in paths})
    assert len(events) == 4, events
    # Each run released its memory before the other was given any.
    assert events[0][0] == "holds" and events[1] == ("released", events[0][1])
    assert events[2][0] == "holds" and events[3] == ("released", events[2][1])
    assert "waits for memory" in budgeted.log()


def test_small_runs_still_run_concurrently(budgeted: ServerProcess, tmp_path: Path) -> None:
    paths = [_noise(tmp_path / f"small-{i}.tif", 1000, 10 + i) for i in range(2)]
    assert _post_together(budgeted, paths) == [200, 200]
    events = _budget_events(budgeted.log(), {p.name for p in paths})
    assert [event for event, _ in events] == ["holds", "holds", "released", "released"], events


def test_a_raster_far_over_the_budget_is_a_413(budgeted: ServerProcess, tmp_path: Path) -> None:
    # 16 megapixels of zeros: a few KB compressed, ~700 MiB to segment, over 4 x 150 MiB.
    path = write_raster(
        tmp_path / "vast.tif", np.zeros((1, 4000, 4000), np.uint8), compress="deflate"
    )
    assert path.stat().st_size < 1024 * 1024
    with httpx.Client(base_url=budgeted.url, timeout=120) as client:
        # In one piece, as a tile as large as the raster asks.
        response = segment(
            client, "automatic", path, {"model_version": "classic", "tile_size": "4000"}
        )
    assert response.status_code == 413
    message = detail(response)
    assert "4,000 x 4,000 pixels" in message and "GEOLIBRE_ML_MEMORY_BUDGET_MB" in message
