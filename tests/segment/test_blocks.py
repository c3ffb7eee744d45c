"""The merge cut into blocks of tiles (segment/blocks.py), run here in one process: the
same answer as the stitcher's, feature for feature, for any block size, prompt and
finishing, with objects that cross many blocks."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely

from geolibre_ml.segment import blocks
from geolibre_ml.segment.blocks import BlockGrid
from geolibre_ml.segment.finish import Finishing
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import (
    SegmentModel,
    WindowTask,
    run_tiles,
    segment_raster,
    segment_tile,
)
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    OutputOptions,
    Prompt,
    ReadOptions,
    TextPrompt,
)
from geolibre_ml.segment.results import SegmentResult
from geolibre_ml.segment.tiling import TileGrid
from support.rasters import write_blobs

#: 200 px tiles overlapping by 32 on a 1000 px raster: 6 x 6 tiles.
TILES = ReadOptions(tile_size=200, tile_overlap=32)


class InProcessBlocks:
    """A grid runner that runs the block steps one after the other in this process,
    in the order a cluster may finish them (blocks in reverse), and records them."""

    def __init__(self, tiles_per_block: int) -> None:
        self.tiles_per_block = tiles_per_block
        self.plans: list[blocks.BlockPlan] = []
        self.layout: BlockGrid | None = None

    def __call__(self, tasks: list[WindowTask], model: SegmentModel, **kwargs: Any) -> Any:
        return run_tiles(tasks, model, **kwargs)

    def segment_grid(
        self,
        tasks: list[WindowTask],
        grid: TileGrid,
        model: SegmentModel,
        *,
        finishing: Finishing,
        progress: Any = None,
        cancelled: Any = None,
    ) -> Any:
        layout = self.layout = BlockGrid.build(grid, self.tiles_per_block)
        stitched = [
            blocks.stitch_block(k, [segment_tile(tasks[i], model) for i in layout.tiles(k)], grid)
            for k in range(len(layout))
        ]
        links = [
            blocks.block_links(stitched[k], [stitched[m] for m in layout.later_neighbours(k)], grid)
            for k in reversed(range(len(layout)))
        ]
        parts = [blocks.finish_closed(b, finishing) for b in stitched]
        self.plans = blocks.plan_groups(links, layout)
        parts += [
            blocks.finish_open(stitched[p.index], p, [stitched[m] for m in p.sources], finishing)
            for p in self.plans
        ]
        # The parts come back to the client pickled, as from a cluster's workers.
        return blocks.join_blocks([pickle.loads(pickle.dumps(p)) for p in parts[::-1]], finishing)


@pytest.fixture(scope="module")
def classic() -> Any:
    manager = ModelManager(device="cpu")
    return manager.get(*manager.resolve("classic", None))


@pytest.fixture(scope="module")
def rivers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lakes and woods, and a river across the whole raster each way: objects that
    cross every block."""
    path = write_blobs(tmp_path_factory.mktemp("blocks") / "rivers.tif")
    with rasterio.open(path, "r+") as dst:
        rgb = dst.read()
        water = np.asarray([0.04, 0.07, 0.08]) / 0.45 * 255
        rgb[:, 480:510, :] = water.astype("uint8")[:, None, None]
        rgb[:, :, 300:322] = water.astype("uint8")[:, None, None]
        dst.write(rgb)
    return path


def assert_same(got: SegmentResult, want: SegmentResult) -> None:
    """The same features, in the same order, vertex for vertex, and the same kept objects."""
    assert len(want.features) > 0
    assert len(got.features) == len(want.features)
    for a, b in zip(got.features.geometries, want.features.geometries, strict=True):
        assert shapely.equals_exact(a, b, 0.0)
    assert got.features.properties == want.features.properties
    assert got.features.crs == want.features.crs
    assert got.objects.values.tolist() == want.objects.values.tolist()
    assert got.objects.pixels.tolist() == want.objects.pixels.tolist()
    assert got.objects.pixel_boxes().tolist() == want.objects.pixel_boxes().tolist()


@pytest.mark.parametrize("tiles_per_block", [1, 2, 4, 9, 36])
@pytest.mark.parametrize(
    "prompt",
    [AutomaticPrompt(), TextPrompt("water", 0.5, others=("trees",))],
    ids=["automatic", "text"],
)
def test_blocks_give_the_stitchers_answer(
    prompt: Prompt, tiles_per_block: int, rivers: Path, classic: Any
) -> None:
    local = segment_raster(rivers, prompt, classic, read=TILES)
    runner = InProcessBlocks(tiles_per_block)
    remote = segment_raster(rivers, prompt, classic, read=TILES, runner=runner)
    assert runner.layout is not None and len(runner.layout) == 36 // tiles_per_block
    assert_same(remote, local)
    if tiles_per_block <= 4:
        # The rivers join pieces of blocks that do not touch the block owning them.
        assert any(
            set(p.sources) - {p.index, *runner.layout.later_neighbours(p.index)}
            for p in runner.plans
        )
    elif tiles_per_block == 36:
        assert [p.sources for p in runner.plans] == [()]


@pytest.mark.parametrize(
    "output",
    [
        OutputOptions(output_crs="EPSG:4326", simplify_tolerance=0.00005),
        OutputOptions(min_size=400, max_size=20000, simplify_tolerance=3.0),
    ],
    ids=["wgs84-simplified", "size-filters-simplified"],
)
def test_blocks_finish_as_the_whole_run(output: OutputOptions, rivers: Path, classic: Any) -> None:
    """Reprojection, size filters and simplification (the label layer's as one coverage
    over the whole answer) come out as they do in one process."""
    prompt = AutomaticPrompt()
    local = segment_raster(rivers, prompt, classic, read=TILES, output=output)
    remote = segment_raster(
        rivers, prompt, classic, read=TILES, output=output, runner=InProcessBlocks(4)
    )
    assert_same(remote, local)


def test_binary_answers_and_the_antimeridian_stay_with_the_stitcher(
    rivers: Path, classic: Any, tmp_path: Path
) -> None:
    """Answers that need the whole run at once go through the stitcher, tile by tile."""
    runner = InProcessBlocks(4)
    binary = AutomaticPrompt(unique=False)
    assert_same(
        segment_raster(rivers, binary, classic, read=TILES, runner=runner),
        segment_raster(rivers, binary, classic, read=TILES),
    )
    assert runner.layout is None
    # The same raster on the antimeridian (UTM zone 60, east edge past 180 degrees).
    moved = tmp_path / "antimeridian.tif"
    with rasterio.open(rivers) as src:
        profile = src.profile | {
            "crs": "EPSG:32660",
            "transform": rasterio.transform.from_origin(645000.0, 7000000.0, 20.0, 20.0),
        }
        with rasterio.open(moved, "w", **profile) as dst:
            dst.write(src.read())
    output = OutputOptions(output_crs="EPSG:4326")
    remote = segment_raster(
        moved, AutomaticPrompt(), classic, read=TILES, output=output, runner=runner
    )
    assert runner.layout is None
    local = segment_raster(moved, AutomaticPrompt(), classic, read=TILES, output=output)
    assert_same(remote, local)
    lon = shapely.get_coordinates(remote.features.geometries)[:, 0]
    assert lon.max() > 180 > lon.min()  # one continuous range past 180


def test_block_grid_partitions_the_tiles_and_lists_each_touching_pair_once() -> None:
    grid = TileGrid.build(2000, 1400, 200, 32)  # 12 x 8 tiles
    for tiles in (1, 2, 5, 16, 64, 500):
        layout = BlockGrid.build(grid, tiles)
        members = [layout.tiles(k) for k in range(len(layout))]
        assert sorted(t for m in members for t in m) == list(range(len(grid)))
        assert layout.block_of_tiles().tolist() == [
            next(k for k, m in enumerate(members) if t in m) for t in range(len(grid))
        ]
        if tiles < len(grid):
            assert max(len(m) for m in members) <= 2 * tiles
        # Blocks touch when one of their tiles neighbours one of the other's.
        touching = {
            (min(a, b), max(a, b))
            for a, ma in enumerate(members)
            for b, mb in enumerate(members)
            if a != b and any(n in mb for t in ma for n in grid.neighbours(t))
        }
        listed = {(k, m) for k in range(len(layout)) for m in layout.later_neighbours(k)}
        assert listed == touching
