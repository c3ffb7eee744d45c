"""Classic text prompts: water and vegetation on multispectral, true- and false-colour rasters."""

from __future__ import annotations

import numpy as np
import pytest
from classic_scenes import (
    graded_lake,
    iou,
    landscape,
    read_chip,
    write_false_colour,
    write_multispectral,
    write_true_colour,
)

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.classic.indices import membership
from geolibre_ml.segment.classic.vocabulary import resolve_class
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import TextPrompt
from support.rasters import write_raster

BACKEND = ClassicBackend("default")

WRITERS = {
    "multispectral": write_multispectral,
    "true colour": write_true_colour,
    "false colour": lambda path, planes: write_false_colour(path, planes, described=True),
}
#: The rule each rendering must be read with.
METHODS = {
    ("water", "multispectral"): "MNDWI and NDWI (green, swir1, nir)",
    ("water", "true colour"): "colour (blue or cyan, smooth)",
    ("water", "false colour"): "NDWI (green, nir)",
    ("vegetation", "multispectral"): "NDVI (NIR, red)",
    ("vegetation", "true colour"): "colour (ExG - ExR)",
    ("vegetation", "false colour"): "NDVI (NIR, red)",
}


@pytest.mark.parametrize("rendering", list(WRITERS))
@pytest.mark.parametrize("word", ["water", "vegetation"])
def test_classes_match_the_truth(tmp_path, word, rendering):
    planes = landscape()
    chip = read_chip(WRITERS[rendering](tmp_path / "scene.tif", planes))
    result = BACKEND.segment(chip, TextPrompt(word, 0.5))
    assert membership(chip, resolve_class(word)).method == METHODS[word, rendering]
    assert iou(result.labels > 0, planes[word]) > 0.85
    # Every object scores at least the threshold, and scores are probabilities.
    present = np.unique(result.labels[result.labels > 0])
    assert np.all(result.scores[present] >= 0.5)
    assert np.all(result.scores[present] <= 1.0)


@pytest.mark.parametrize("word", ["trees", "forest", "grass", "Vegetation "])
def test_aliases_find_vegetation(tmp_path, word):
    planes = landscape()
    chip = read_chip(write_multispectral(tmp_path / "scene.tif", planes))
    result = BACKEND.segment(chip, TextPrompt(word, 0.5))
    assert iou(result.labels > 0, planes["vegetation"]) > 0.85


@pytest.mark.parametrize("rendering", list(WRITERS))
def test_a_scene_without_water_has_no_water(tmp_path, rendering):
    planes = landscape(lake=False)
    chip = read_chip(WRITERS[rendering](tmp_path / "dry.tif", planes))
    result = BACKEND.segment(chip, TextPrompt("water", 0.5))
    assert not (result.labels > 0).any()
    # Even the most permissive threshold finds nothing that looks like water.
    loose = BACKEND.segment(chip, TextPrompt("water", 0.2))
    assert (loose.labels > 0).sum() < 0.001 * loose.labels.size


def test_a_scene_without_vegetation_has_no_vegetation(tmp_path):
    planes = landscape()
    for role in planes:
        if role not in ("water", "vegetation"):
            planes[role][planes["vegetation"]] = planes[role][0, 0]
    chip = read_chip(write_multispectral(tmp_path / "bare.tif", planes))
    result = BACKEND.segment(chip, TextPrompt("vegetation", 0.5))
    assert not (result.labels > 0).any()


@pytest.mark.parametrize("rendering", ["multispectral", "true colour"])
def test_a_higher_threshold_never_adds_a_pixel(tmp_path, rendering):
    planes = graded_lake()
    chip = read_chip(WRITERS[rendering](tmp_path / "graded.tif", planes))
    areas, counts = [], []
    previous = None
    for threshold in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        result = BACKEND.segment(chip, TextPrompt("water", threshold))
        found = result.labels > 0
        if previous is not None:
            assert not (found & ~previous).any(), f"threshold {threshold} added pixels"
        present = np.unique(result.labels[found])
        assert np.all(result.scores[present] >= threshold)
        areas.append(int(found.sum()))
        counts.append(len(present))
        previous = found
    # The graded lake really is graded: the answers differ along the way.
    assert areas[0] > areas[3] > 0
    assert areas[-1] < areas[3]


def test_score_is_the_mean_membership_of_the_object(tmp_path):
    planes = graded_lake()
    chip = read_chip(write_multispectral(tmp_path / "graded.tif", planes))
    values = membership(chip, resolve_class("water")).values
    result = BACKEND.segment(chip, TextPrompt("water", 0.5))
    assert result.count == 1
    lake = result.labels == 1
    core = lake & (values > 0.5)  # the filled holes (none here) would not count
    assert result.scores[1] == pytest.approx(values[core].mean(), abs=1e-4)


def test_membership_is_half_at_the_published_threshold(tmp_path):
    # NDWI = 0 (McFeeters' threshold) is membership 0.5; more water, more membership.
    planes = graded_lake()
    data = np.stack([planes["green"], planes["nir"]]) * 10000
    path = write_raster(tmp_path / "gn.tif", data.astype(np.uint16), descriptions=["green", "nir"])
    chip = read_chip(path)
    evidence = membership(chip, resolve_class("water"))
    assert evidence.method == "NDWI (green, nir)"
    values = evidence.values
    green, nir = chip.spectral["green"], chip.spectral["nir"]
    ndwi = (green - nir) / (green + nir)
    near_zero = np.abs(ndwi) < 0.003
    assert near_zero.any()
    assert np.all(np.abs(values[near_zero] - 0.5) < 0.05)
    assert values[ndwi > 0.3].min() > 0.95
    assert values[ndwi < -0.3].max() < 0.05


def test_nodata_is_never_an_object(tmp_path):
    planes = landscape()
    path = write_multispectral(tmp_path / "collar.tif", planes, nodata_border=40)
    chip = read_chip(path)
    assert not chip.valid[:40].any()
    for word in ("water", "vegetation"):
        for threshold in (0.0, 0.5):
            result = BACKEND.segment(chip, TextPrompt(word, threshold))
            assert not (result.labels[~chip.valid] > 0).any()
    # Through the whole pipeline too (the lake is cut by the collar, and is still found).
    result = segment_raster(path, TextPrompt("water", 0.5), BACKEND)
    assert not (result.labels[:40] > 0).any()
    assert len(result.features.geometries) >= 1


def test_undescribed_false_colour_is_read_as_true_colour(tmp_path):
    # Without band descriptions nothing says band 1 is near-infrared: the composite
    # is taken at face value, and vegetation (bright red on screen) is not green.
    planes = landscape()
    chip = read_chip(write_false_colour(tmp_path / "fc.tif", planes, described=False))
    assert "nir" not in chip.spectral
    result = BACKEND.segment(chip, TextPrompt("vegetation", 0.5))
    assert iou(result.labels > 0, planes["vegetation"]) < 0.2


def test_a_band_missing_at_a_pixel_gives_no_evidence(tmp_path):
    # A reader marks a band's own nodata as NaN while the pixel stays valid (the
    # other bands hold data): the index there is undefined, not 0 (membership 0.5).
    planes = landscape()
    chip = read_chip(write_multispectral(tmp_path / "scene.tif", planes))
    chip.spectral["nir"][:, :50] = np.nan
    for word in ("water", "vegetation"):
        values = membership(chip, resolve_class(word)).values
        assert np.all(values[:, :50] == 0)
        result = BACKEND.segment(chip, TextPrompt(word, 0.0))
        assert not (result.labels[:, :50] > 0).any()
