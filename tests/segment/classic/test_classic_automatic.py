"""Classic automatic segmentation: whole objects as single regions that follow real edges."""

from __future__ import annotations

import numpy as np
import pytest
from classic_scenes import (
    iou,
    is_single_piece,
    landscape,
    read_chip,
    write_multispectral,
    write_true_colour,
)

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.classic.graph import adjacency, felzenszwalb_merge
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, OutputOptions

BACKEND = ClassicBackend("default")


def _region_at(labels: np.ndarray, row: int, col: int) -> np.ndarray:
    value = labels[row, col]
    assert value > 0
    return labels == value


@pytest.mark.parametrize("writer", [write_true_colour, write_multispectral])
def test_the_lake_and_the_forest_are_one_region_each(tmp_path, writer):
    planes = landscape()
    chip = read_chip(writer(tmp_path / "scene.tif", planes))
    labels = BACKEND.segment(chip, AutomaticPrompt()).labels
    lake = _region_at(labels, 84, 96)  # the lake's centre
    forest = _region_at(labels, 190, 224)
    assert iou(lake, planes["water"]) > 0.95
    assert iou(forest, planes["vegetation"]) > 0.95
    # Soil (the rest) is a region of its own, not merged with either.
    soil = _region_at(labels, 220, 20)
    assert not (soil & (lake | forest)).any()


def test_a_large_uniform_area_is_not_cut_into_superpixels(tmp_path):
    # A 600 x 600 lake with a gentle brightness gradient and noise: one region.
    planes = landscape(600, 600)
    yy = np.mgrid[0:600, 0:600][0].astype(np.float32)
    for role in ("blue", "green", "red", "nir", "swir1", "swir2"):
        planes[role] = np.where(
            planes["water"], planes[role] * (0.85 + 0.3 * yy / 600), planes[role]
        ).astype(np.float32)
    chip = read_chip(write_true_colour(tmp_path / "big.tif", planes))
    labels = BACKEND.segment(chip, AutomaticPrompt()).labels
    inside = labels[planes["water"]]
    values, counts = np.unique(inside, return_counts=True)
    assert counts.max() / inside.size > 0.97
    assert iou(labels == values[counts.argmax()], planes["water"]) > 0.95


def test_small_contrasted_objects_survive_and_texture_does_not_fragment(tmp_path):
    # A field with crop rows (every 6 pixels, +-10 %) and noise, and small roofs on it.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:300, 0:300]
    rows = np.sin((xx * np.cos(0.3) + yy * np.sin(0.3)) * 2 * np.pi / 6)
    field = 0.12 * (1 + 0.1 * rows + 0.03 * rng.standard_normal((300, 300)))
    field = field.astype(np.float32)
    roofs = np.zeros((300, 300), bool)
    for y, x in [(40, 40), (40, 200), (150, 120), (240, 60), (230, 230)]:
        roofs[y : y + 14, x : x + 14] = True
    planes = {
        role: field * scale
        for role, scale in zip(
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            (0.8, 1.2, 0.7, 2.5, 1.5, 1.0),
            strict=True,
        )
    }
    for role, value in {"red": 0.25, "green": 0.12, "blue": 0.1}.items():
        planes[role][roofs] = value
    chip = read_chip(write_true_colour(tmp_path / "field.tif", planes))
    labels = BACKEND.segment(chip, AutomaticPrompt()).labels
    roof_regions = {int(labels[y + 7, x + 7]) for y, x in [(40, 40), (40, 200), (150, 120)]}
    assert len(roof_regions) == 3
    for y, x in [(40, 40), (40, 200), (150, 120), (240, 60), (230, 230)]:
        roof = np.zeros_like(roofs)
        roof[y : y + 14, x : x + 14] = True
        assert iou(_region_at(labels, y + 7, x + 7), roof) > 0.8
    field_region = _region_at(labels, 120, 20)
    assert iou(field_region, ~roofs) > 0.97


def test_every_region_is_one_connected_piece_and_covers_valid_pixels(tmp_path):
    planes = landscape()
    chip = read_chip(write_multispectral(tmp_path / "scene.tif", planes, nodata_border=25))
    result = BACKEND.segment(chip, AutomaticPrompt())
    labels = result.labels
    assert not (labels[~chip.valid] > 0).any()
    assert (labels[chip.valid] > 0).all()
    present = np.unique(labels[labels > 0])
    assert len(present) >= 3
    for value in present:
        assert is_single_piece(labels == value), f"region {value} is in pieces"
    # Distinctness scores are in [0, 1].
    assert np.all((result.scores[present] >= 0) & (result.scores[present] <= 1))


def test_min_size_and_max_size_filter_regions(tmp_path):
    planes = landscape()
    # A roof on the soil: a region smaller than the lake (the landscape alone is now
    # exactly three regions, lake, forest and soil, all at least the lake's size).
    for role, value in {"red": 0.25, "green": 0.12, "blue": 0.1}.items():
        planes[role][200:214, 20:34] = value
    path = write_true_colour(tmp_path / "scene.tif", planes)
    lake_pixels = int(planes["water"].sum())
    everything = segment_raster(path, AutomaticPrompt(), BACKEND)
    sizes = np.bincount(everything.labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    assert sizes.min() < lake_pixels < sizes.max()
    only_big = segment_raster(
        path, AutomaticPrompt(), BACKEND, output=OutputOptions(min_size=lake_pixels - 50)
    )
    kept = np.bincount(only_big.labels.ravel())[1:]
    assert kept[kept > 0].min() >= lake_pixels - 50
    assert len(only_big.features.geometries) < len(everything.features.geometries)
    only_small = segment_raster(
        path, AutomaticPrompt(), BACKEND, output=OutputOptions(max_size=lake_pixels + 50)
    )
    kept = np.bincount(only_small.labels.ravel())[1:]
    assert kept[kept > 0].max() <= lake_pixels + 50


def test_a_crop_segments_like_the_same_area_of_the_whole_image(tmp_path):
    planes = landscape()
    chip = read_chip(write_true_colour(tmp_path / "scene.tif", planes))
    whole = BACKEND.segment(chip, AutomaticPrompt()).labels
    crop_planes = {k: v[30:200, 20:300] for k, v in planes.items()}
    crop_chip = read_chip(write_true_colour(tmp_path / "crop.tif", crop_planes))
    crop = BACKEND.segment(crop_chip, AutomaticPrompt()).labels
    lake_whole = _region_at(whole, 84, 96)[30:200, 20:300]
    lake_crop = _region_at(crop, 84 - 30, 96 - 20)
    assert iou(lake_whole, lake_crop) > 0.97


def test_felzenszwalb_merging_on_a_small_graph():
    # A chain 0-1-2-3 of unit-area nodes: weak edges merge, the strong one separates.
    u = np.array([0, 1, 2])
    v = np.array([1, 2, 3])
    weights = np.array([1.0, 10.0, 1.5])
    sizes = np.array([1.0, 1.0, 1.0, 1.0])
    root = felzenszwalb_merge(u, v, weights, sizes, k=3.0).root
    assert root[0] == root[1]
    assert root[2] == root[3]
    assert root[1] != root[2]
    # A larger scale merges everything; a minimum size merges the small pieces.
    root = felzenszwalb_merge(u, v, weights, sizes, k=30.0).root
    assert len(set(root.tolist())) == 1
    root = felzenszwalb_merge(u, v, weights, sizes, k=3.0, min_size=3).root
    assert len(set(root.tolist())) == 1


def test_adjacency_lists_each_touching_pair_once():
    labels = np.array(
        [
            [1, 1, 2, 2],
            [1, 1, 2, 2],
            [3, 3, 0, 4],
        ],
        dtype=np.int32,
    )
    u, v = adjacency(labels, 4)
    assert sorted(zip(u.tolist(), v.tolist(), strict=True)) == [(1, 2), (1, 3), (2, 4)]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 3), (6, 1), (9, 9)])
def test_tiny_rasters_are_covered(tmp_path, shape):
    rng = np.random.default_rng(1)
    planes = {
        role: rng.uniform(0.05, 0.3, shape).astype(np.float32) for role in ("red", "green", "blue")
    }
    chip = read_chip(write_true_colour(tmp_path / "tiny.tif", planes))
    labels = BACKEND.segment(chip, AutomaticPrompt()).labels
    assert labels.shape == shape
    assert (labels > 0).all()
