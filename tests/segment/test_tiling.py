"""Tiles: objects whole across seams, duplicates in overlaps removed, the same answer
for any extent, one stretch for every tile, windows around box prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import rasterio
import shapely
from scipy import ndimage

from geolibre_ml.segment.backends import Backend
from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.cache import PreparedCache
from geolibre_ml.segment.chip import ImageChip
from geolibre_ml.segment.errors import Cancelled
from geolibre_ml.segment.formats import render
from geolibre_ml.segment.masks import ObjectSet, Origin
from geolibre_ml.segment.models import ModelSettings
from geolibre_ml.segment.pipeline import (
    plan_run,
    read_window,
    run_tiles,
    segment_raster,
)
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    PointBoxPrompt,
    ReadOptions,
    TextPrompt,
)
from geolibre_ml.segment.raster import RasterSource
from geolibre_ml.segment.seams import Stitcher
from geolibre_ml.segment.tiling import TileGrid, tile_grid
from geolibre_ml.segment.vectorize import polygonize
from support.rasters import UTM_TRANSFORM, write_raster

HEIGHT, WIDTH = 600, 760
#: Tiles of 256 px overlapping by 32: 3 x 4 tiles, with seams through every object.
TILES = ReadOptions(tile_size=256, tile_overlap=32)


def truth_scene(seed: int = 0) -> dict[str, np.ndarray]:
    """Masks of a landscape whose objects cross tile seams (pixels, ``(H, W)`` bool).

    ``river``: a 14 px band winding across the whole width (long and thin, through
    every column of tiles); ``lake``: a 330 x 230 px ellipse over six tiles;
    ``pond``: a small one wholly inside the overlap of the first two tiles of the
    first row (x 224..256), seen by both; ``forest``: a block over four tiles.
    """
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    centre = 470 + 25 * np.sin(xx / 90.0)
    river = np.abs(yy - centre) < 7
    lake = ((yy - 230) / 115.0) ** 2 + ((xx - 420) / 165.0) ** 2 < 1
    pond = (xx >= 228) & (xx < 252) & (yy >= 60) & (yy < 84)
    forest = (xx >= 40) & (xx < 300) & (yy >= 150) & (yy < 380) & ~lake
    return {"river": river, "lake": lake, "pond": pond, "forest": forest}


def reflectance(masks: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """``(4, H, W)`` uint16 blue, green, red, NIR reflectance x 10,000."""
    rng = np.random.default_rng(seed)
    soil = (0.12, 0.16, 0.22, 0.30)
    water = (0.08, 0.07, 0.04, 0.02)
    trees = (0.03, 0.08, 0.04, 0.40)
    out = np.empty((4, HEIGHT, WIDTH), dtype=np.float32)
    wet = masks["river"] | masks["lake"] | masks["pond"]
    for band in range(4):
        plane = np.full((HEIGHT, WIDTH), soil[band], dtype=np.float32)
        plane[masks["forest"]] = trees[band]
        plane[wet] = water[band]
        out[band] = plane + rng.normal(0, 0.004, plane.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 10000).astype(np.uint16)


def rgb(masks: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """``(3, H, W)`` uint8 colours of the same landscape (no stretch: 8-bit as it is)."""
    rng = np.random.default_rng(seed)
    out = np.empty((3, HEIGHT, WIDTH), dtype=np.float32)
    colours = {"soil": (170, 140, 100), "forest": (40, 110, 45), "water": (30, 60, 140)}
    wet = masks["river"] | masks["lake"] | masks["pond"]
    for band in range(3):
        plane = np.full((HEIGHT, WIDTH), colours["soil"][band], dtype=np.float32)
        plane[masks["forest"]] = colours["forest"][band]
        plane[wet] = colours["water"][band]
        out[band] = plane + rng.normal(0, 3, plane.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def as_polygon(mask: np.ndarray) -> shapely.Geometry:
    """The mask's outline in raster pixels."""
    return shapely.union_all(polygonize(mask.astype(np.int32)).geometries)


def in_pixels(result: Any) -> list[shapely.Geometry]:
    """The result's polygons in raster pixels (the objects' own outlines)."""
    return list(result.objects.pixel_geometries())


def matches(polygons: list[shapely.Geometry], truth: shapely.Geometry) -> list[float]:
    """IoU of each polygon that overlaps ``truth`` by more than a sliver."""
    out = []
    for polygon in polygons:
        inter = shapely.intersection(polygon, truth).area
        if inter > 0.05 * min(polygon.area, truth.area):
            out.append(inter / shapely.union(polygon, truth).area)
    return out


@pytest.fixture(scope="module")
def masks() -> dict[str, np.ndarray]:
    return truth_scene()


@pytest.fixture(scope="module")
def bands_tif(tmp_path_factory: pytest.TempPathFactory, masks: dict[str, np.ndarray]) -> Path:
    folder = tmp_path_factory.mktemp("tiling")
    return write_raster(
        folder / "bands.tif",
        reflectance(masks),
        descriptions=["blue", "green", "red", "nir"],
    )


@pytest.fixture(scope="module")
def rgb_tif(tmp_path_factory: pytest.TempPathFactory, masks: dict[str, np.ndarray]) -> Path:
    return write_raster(tmp_path_factory.mktemp("tiling") / "rgb.tif", rgb(masks))


class Blobs(Backend):
    """Every bright-blue blob of a chip as its own cropped mask, as SAM answers: a
    model that sees only its chip, so an object across a seam is cut in two by it.
    Batches two chips at a time and counts what it prepares."""

    version: ClassVar[str] = "blobs"
    model_ids: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(self, model_id: str = "test", device: str | None = None) -> None:
        super().__init__(model_id, device)
        self.batch_size = 2
        self.batches: list[int] = []

    @property
    def input_size(self) -> int | None:
        return 256

    def prepare(self, chip: ImageChip) -> Any:
        return self.prepare_batch([chip])[0]

    def prepare_batch(self, chips: Any) -> list[Any]:
        self.batches.append(len(chips))
        return list(chips)

    def prepared_nbytes(self, prepared: Any) -> int:
        return int(prepared.rgb.nbytes)

    def run(self, prepared: ImageChip, prompt: Any) -> ObjectSet:
        blue = prepared.rgb[..., 2] > 120
        labels, count = ndimage.label(blue)
        found = [labels == i for i in range(1, count + 1)]
        return ObjectSet.from_masks(found, [0.9] * count, [Origin()] * count, shape=blue.shape)


# -- the grid -----------------------------------------------------------------------


def test_cores_partition_the_raster_and_neighbours_are_listed_once() -> None:
    grid = TileGrid.build(WIDTH, HEIGHT, 256, 32)
    assert grid.shape == (3, 4)
    cover = np.zeros((HEIGHT, WIDTH), dtype=np.int32)
    for (c0, r0, c1, r1), (col, row, w, h) in zip(grid.cores, grid.windows, strict=True):
        assert col <= c0 < c1 <= col + w and row <= r0 < r1 <= row + h  # inside its tile
        cover[r0:r1, c0:c1] += 1
    assert (cover == 1).all()
    pairs = {(i, j) for i in range(len(grid)) for j in grid.earlier_neighbours(i)}
    every = {(i, j) for i in range(len(grid)) for j in grid.neighbours(i) if j < i}
    assert pairs == every
    assert len(tile_grid(200, 150, 256)) == 1  # a small raster is one window


# -- whole objects across seams ------------------------------------------------------


def test_classic_text_objects_come_back_whole_across_seams(
    bands_tif: Path, masks: dict[str, np.ndarray]
) -> None:
    result = segment_raster(bands_tif, TextPrompt("water"), ClassicBackend("default"), read=TILES)
    polygons = in_pixels(result)
    for name in ("river", "lake", "pond"):
        found = matches(polygons, as_polygon(masks[name]))
        assert len(found) == 1, (name, found)  # one polygon, not one per tile
        assert found[0] > 0.97, (name, found)
    assert len(polygons) == 3
    # The features are the same polygons on the raster's grid.
    x0, _y0, x1, _y1 = shapely.bounds(shapely.union_all(result.features.geometries))
    assert UTM_TRANSFORM.c <= x0 < x1 <= UTM_TRANSFORM.c + 10 * WIDTH


def test_classic_automatic_regions_come_back_whole_across_seams(
    rgb_tif: Path, masks: dict[str, np.ndarray]
) -> None:
    whole = segment_raster(rgb_tif, AutomaticPrompt(), ClassicBackend("default"))
    tiled = segment_raster(rgb_tif, AutomaticPrompt(), ClassicBackend("default"), read=TILES)
    polygons = in_pixels(tiled)
    for name in ("river", "lake", "forest"):
        found = matches(polygons, as_polygon(masks[name]))
        assert max(found) > 0.95, (name, found)
        assert sum(f > 0.5 for f in found) == 1, (name, found)
    # No two regions share pixels, and together they cover what one pass covers.
    union = shapely.union_all(polygons)
    assert abs(sum(p.area for p in polygons) - union.area) < 1
    assert abs(union.area - shapely.union_all(in_pixels(whole)).area) < 0.01 * union.area


def test_cropped_masks_join_across_seams_and_duplicates_in_overlaps_go(
    rgb_tif: Path, masks: dict[str, np.ndarray]
) -> None:
    backend = Blobs()
    result = segment_raster(rgb_tif, AutomaticPrompt(), backend)
    assert backend.batches == [2] * 6  # 12 tiles, two per encoder pass
    polygons = in_pixels(result)
    water = masks["river"] | masks["lake"] | masks["pond"]
    for name in ("river", "lake", "pond"):
        found = matches(polygons, as_polygon(masks[name]))
        assert len(found) == 1 and found[0] > 0.99, (name, found)
    assert len(polygons) == 3
    assert sum(p.area for p in polygons) == water.sum()
    # The label image, written window by window, is the truth.
    labels = result.labels
    np.testing.assert_array_equal(labels > 0, water)


def test_a_label_geotiff_of_a_tiled_run_is_the_union_of_its_polygons(bands_tif: Path) -> None:
    result = segment_raster(bands_tif, TextPrompt("water"), ClassicBackend("default"), read=TILES)
    path = bands_tif.parent / "labels.tif"
    path.write_bytes(render(result, "geotiff"))
    with rasterio.open(path) as src:
        labels = src.read(1)
        assert src.transform == UTM_TRANSFORM
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
    for value, polygon in zip(
        result.objects.values, result.objects.pixel_geometries(), strict=True
    ):
        assert (labels == value).sum() == round(polygon.area)


# -- the same answer, any extent -----------------------------------------------------


@pytest.mark.parametrize("mode", ["text", "automatic"])
def test_an_object_inside_a_crop_gets_the_same_polygon_from_the_crop(
    tmp_path: Path, bands_tif: Path, rgb_tif: Path, mode: str
) -> None:
    source = bands_tif if mode == "text" else rgb_tif
    prompt = TextPrompt("water") if mode == "text" else AutomaticPrompt()
    col, row, width, height = 137, 21, 530, 420  # not on the tile grid of the whole
    with rasterio.open(source) as src:
        profile = src.profile
        descriptions = src.descriptions
        data = src.read(window=((row, row + height), (col, col + width)))
        profile.update(
            width=width,
            height=height,
            transform=src.window_transform(((row, row + height), (col, col + width))),
        )
    crop = tmp_path / "crop.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(data)
        for band, text in enumerate(descriptions, start=1):
            dst.set_band_description(band, text or "")
    model = ClassicBackend("default")
    whole = segment_raster(source, prompt, model, read=TILES).features.geometries
    part = segment_raster(crop, prompt, model, read=TILES).features.geometries
    frame = shapely.box(*rasterio.transform.array_bounds(height, width, profile["transform"]))
    inner = frame.buffer(-10 * 5)  # objects clear of the crop's edge (10 m pixels)
    inside = [g for g in whole if inner.contains(g)]
    assert inside, "the crop holds whole objects"
    for polygon in inside:
        best = max(part, key=lambda p: shapely.intersection(p, polygon).area)
        # Within a pixel: the outlines differ by less than one pixel's width.
        assert shapely.hausdorff_distance(best, polygon) <= 10.0 + 1e-6


# -- one stretch, windows, progress ---------------------------------------------------


def test_every_tile_is_read_with_the_whole_rasters_stretch(bands_tif: Path) -> None:
    model = ClassicBackend("default")
    with RasterSource(bands_tif) as src:
        run = plan_run(src, TextPrompt("water"), model, read=TILES)
        whole = src.read_chip()
    tasks = run.tasks(str(bands_tif), ModelSettings("classic", "default"))
    assert len(tasks) == 12
    assert {t.plan.fingerprint for t in tasks} == {run.read_plan.fingerprint}
    assert run.read_plan.stretch.limits  # 16-bit: stretched, once for the raster
    for task in tasks:
        col, row, width, height = task.window
        chip = read_window(task)
        np.testing.assert_array_equal(chip.rgb, whole.rgb[row : row + height, col : col + width])


def test_a_box_prompt_reads_only_the_tile_that_holds_it(rgb_tif: Path) -> None:
    model = ClassicBackend("default")
    prompt = PointBoxPrompt(boxes=((230.0, 55.0, 256.0, 90.0),), box_mode="object")
    with RasterSource(rgb_tif) as src:
        run = plan_run(src, prompt, model, read=TILES)
    assert len(run.windows) == 1
    col, _row, width, height = run.windows[0]
    assert (width, height) == (256, 256) and col <= 230 and col + width >= 256
    result = segment_raster(rgb_tif, prompt, model, read=TILES)
    assert len(result.features) == 1
    x0, y0, x1, y1 = result.objects.boxes()[0]
    assert x0 >= 224 and x1 <= 256 and y0 >= 50 and y1 <= 95


def test_progress_counts_tiles_and_cancel_stops_within_one_tile(rgb_tif: Path) -> None:
    seen: list[tuple[int, int]] = []
    segment_raster(rgb_tif, AutomaticPrompt(), Blobs(), progress=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == list(range(1, 16))
    assert {t for _, t in seen} == {15}  # 12 tiles and 3 finishing steps
    backend = Blobs()
    done: list[int] = []
    with pytest.raises(Cancelled):
        segment_raster(
            rgb_tif,
            AutomaticPrompt(),
            backend,
            progress=lambda d, t: done.append(d),
            cancelled=lambda: len(done) >= 3,
        )
    assert done == [1, 2, 3]
    assert sum(backend.batches) <= 6  # at most one batch read ahead


def test_threads_give_the_same_answer_as_one_thread(
    rgb_tif: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ClassicBackend("default")
    many = segment_raster(rgb_tif, TextPrompt("water"), model, read=TILES)
    monkeypatch.setattr("geolibre_ml.segment.pipeline.tile_threads", lambda: 1)
    one = segment_raster(rgb_tif, TextPrompt("water"), model, read=TILES)
    assert shapely.equals(many.features.geometries, one.features.geometries).all()


def test_the_merge_keeps_outlines_of_one_row_of_tiles(rgb_tif: Path) -> None:
    model = Blobs()
    with RasterSource(rgb_tif) as src:
        run = plan_run(src, AutomaticPrompt(), model, read=ReadOptions(tile_size=128))
        tasks = run.tasks(str(rgb_tif), ModelSettings("blobs", "test"))
        stitcher = Stitcher(run.grid)
        held = []
        for tile in run_tiles(tasks, model, source=src):
            stitcher.add(tile)
            held.append(len(stitcher._tiles))
    columns = run.grid.shape[1]
    assert max(held) <= columns + 2
    assert len(stitcher.finish()) == 3


def test_a_run_keeps_its_tiles_in_the_cache_only_when_they_all_fit(rgb_tif: Path) -> None:
    tile_bytes = 256 * 256 * 3 + 256 * 256  # a chip's pixels and its validity
    roomy = PreparedCache(13 * tile_bytes)
    backend = Blobs()
    for _ in range(2):
        segment_raster(rgb_tif, AutomaticPrompt(), backend, cache=roomy, content_key="k")
    assert sum(backend.batches) == 12  # the second run read and prepared nothing
    assert len(roomy) == 12

    tight = PreparedCache(6 * tile_bytes)
    tight.fetch(("other image",), lambda: ("kept", 10))
    backend = Blobs()
    for _ in range(2):
        segment_raster(rgb_tif, AutomaticPrompt(), backend, cache=tight, content_key="k")
    # Twelve tiles cannot fit in six: none is kept, and the other image's entry stays.
    assert sum(backend.batches) == 24
    assert len(tight) == 1 and ("other image",) in tight


def test_the_binary_answer_of_a_tiled_run_covers_what_its_objects_cover(
    rgb_tif: Path, masks: dict[str, np.ndarray]
) -> None:
    water = masks["river"] | masks["lake"] | masks["pond"]
    found = segment_raster(rgb_tif, AutomaticPrompt(unique=False), Blobs())
    assert len(found.features) == 1
    assert round(found.objects.pixel_geometries()[0].area) == water.sum()
    rest = segment_raster(rgb_tif, AutomaticPrompt(unique=False, foreground=False), Blobs())
    assert len(rest.features) == 1
    assert round(rest.objects.pixel_geometries()[0].area) == HEIGHT * WIDTH - water.sum()
    np.testing.assert_array_equal(rest.labels > 0, ~water)


def test_a_box_larger_than_a_tile_gets_a_window_around_it(rgb_tif: Path) -> None:
    box = (250.0, 120.0, 600.0, 350.0)  # the lake, wider than a 256 px tile
    prompt = PointBoxPrompt(boxes=(box,), box_mode="object")
    with RasterSource(rgb_tif) as src:
        run = plan_run(src, prompt, ClassicBackend("default"), read=TILES)
    ((col, row, width, height),) = run.windows
    assert col <= 250 and col + width >= 600 and row <= 120 and row + height >= 350
    assert width == 350 + 2 * 64 and height == 230 + 2 * 64  # a quarter of a tile each side
