"""Text prompts with several concepts and exemplar boxes, and predict's box_mode, in the
library: the dataclasses, their parsers, coordinates, and what a run does with them."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

from geolibre_ml.segment.backends import Backend
from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.errors import InvalidRequest, UnsupportedPrompt
from geolibre_ml.segment.masks import ObjectSet, Origin
from geolibre_ml.segment.pipeline import _window_prompt, segment_raster
from geolibre_ml.segment.prompts import (
    MAX_CONCEPTS,
    PointBoxPrompt,
    Prompt,
    TextPrompt,
    parse_box_labels,
    parse_box_mode,
    parse_prompts,
    point_box_prompt,
    prompt_to_pixels,
    text_prompt,
)
from geolibre_ml.segment.raster import RasterSource
from support.rasters import scene as landscape
from support.rasters import write_raster

GRID = from_origin(500000.0, 4000000.0, 10.0, 10.0)  # UTM 33N, 10 m pixels


def scene(tmp_path: Path, *, crs: str | None = "EPSG:32633") -> Path:
    data = np.random.default_rng(5).integers(100, 3000, (3, 60, 80)).astype("uint16")
    return write_raster(tmp_path / "scene.tif", data, crs=crs, transform=GRID if crs else None)


def lonlat_box(col0: float, row0: float, col1: float, row1: float) -> list[float]:
    """A pixel box of ``GRID`` written in EPSG:4326, corners exactly on the pixel box."""
    # In EPSG:4326 the box is a little larger than the pixel box once back in UTM
    # (meridians converge): its corners' bounding box, a thousandth of a pixel here.
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0 = GRID.c + GRID.a * col0, GRID.f + GRID.e * row1
    x1, y1 = GRID.c + GRID.a * col1, GRID.f + GRID.e * row0
    (lon0, lon1), (lat0, lat1) = to_lonlat.transform([x0, x1], [y0, y1])
    return [lon0, lat0, lon1, lat1]


# -- the dataclass and its parsers ---------------------------------------------------


def test_concepts_are_text_then_others_without_duplicates() -> None:
    prompt = TextPrompt("water", others=("trees", "water", "grass", "trees"))
    assert prompt.concepts == ("water", "trees", "grass")
    assert TextPrompt("water").concepts == ("water",)


def test_box_labels_must_be_one_per_box() -> None:
    with pytest.raises(InvalidRequest, match="box_labels has 1 value") as caught:
        TextPrompt("water", boxes=((0, 0, 5, 5), (5, 5, 9, 9)), box_labels=(1,))
    assert caught.value.fields == ("box_labels", "boxes")
    # No labels: every box is positive.
    assert TextPrompt("water", boxes=((0, 0, 5, 5),)).box_labels == ()


def test_text_prompt_assembles_and_checks_the_fields() -> None:
    prompt = text_prompt(
        "  open   water ", 0.3, others=("trees", "open water"), boxes=((1, 2, 3, 4),)
    )
    assert prompt == TextPrompt(
        "open water", 0.3, others=("trees",), boxes=((1, 2, 3, 4),), box_labels=(1,)
    )
    assert text_prompt(None, others=("trees",)).concepts == ("trees",)
    with pytest.raises(InvalidRequest, match="prompt is empty"):
        text_prompt("  ")
    with pytest.raises(InvalidRequest, match=f"at most {MAX_CONCEPTS}"):
        text_prompt("a", others=tuple(f"c{i}" for i in range(MAX_CONCEPTS)))
    assert len(text_prompt("a", others=tuple(f"c{i}" for i in range(31))).concepts) == 32
    with pytest.raises(InvalidRequest, match="no boxes were given"):
        text_prompt("water", box_labels=(1,))
    with pytest.raises(InvalidRequest, match="empty or inverted"):
        text_prompt("water", boxes=((5, 5, 1, 9),))


def test_parse_prompts() -> None:
    assert parse_prompts(None) == parse_prompts("  ") == ()
    assert parse_prompts('["trees", "  tall\\n grass "]') == ("trees", "tall grass")
    for bad, words in (
        ("trees", "not valid JSON"),
        ('{"a": 1}', "JSON list of strings"),
        ('[["trees"]]', "JSON list of strings"),
        ('[""]', "blank concept"),
        ("[" * 20 + "]" * 20, "nested too deeply"),
    ):
        with pytest.raises(InvalidRequest, match=words) as caught:
            parse_prompts(bad)
        assert caught.value.fields == ("prompts",)


def test_parse_box_labels_and_box_mode() -> None:
    assert parse_box_labels("[1, 0, 1]") == (1, 0, 1)
    assert parse_box_labels("") == ()
    with pytest.raises(InvalidRequest, match="box_labels must be") as caught:
        parse_box_labels("[1, true]")
    assert caught.value.fields == ("box_labels",)
    assert parse_box_mode(None) is parse_box_mode(" ") is None
    assert parse_box_mode(" SIMILAR ") == "similar"
    assert parse_box_mode("object") == "object"
    with pytest.raises(InvalidRequest, match="Unknown box_mode 'all'"):
        parse_box_mode("all")


def test_point_box_prompt_carries_box_mode() -> None:
    prompt = point_box_prompt((), (), ((0, 0, 4, 4),), box_mode="similar")
    assert prompt.box_mode == "similar"
    assert point_box_prompt(((1, 1),), (), ()).box_mode is None
    # object on points alone changes nothing (each prompt is one object); similar cannot be.
    assert point_box_prompt(((1, 1),), (), (), box_mode="object").box_mode == "object"
    with pytest.raises(InvalidRequest, match="has no boxes"):
        point_box_prompt(((1, 1),), (), (), box_mode="similar")


# -- coordinates -----------------------------------------------------------------------


def test_exemplar_boxes_in_a_crs_become_pixels_like_predict_boxes(tmp_path: Path) -> None:
    box = lonlat_box(10, 5, 30, 25)
    with RasterSource(scene(tmp_path)) as src:
        info = src.info
    wgs84 = CRS.from_user_input("EPSG:4326")
    text = prompt_to_pixels(TextPrompt("water", boxes=(tuple(box),)), wgs84, info)
    predict = prompt_to_pixels(PointBoxPrompt(boxes=(tuple(box),)), wgs84, info)
    assert isinstance(text, TextPrompt)
    assert text.boxes == predict.boxes
    assert np.allclose(text.boxes[0], (10, 5, 30, 25), atol=1e-2)
    # Pixel boxes are clipped to the image; one wholly outside is refused.
    clipped = prompt_to_pixels(TextPrompt("w", boxes=((-5, -5, 10, 10),)), None, info)
    assert clipped.boxes == ((0.0, 0.0, 10.0, 10.0),)
    with pytest.raises(InvalidRequest, match="lies outside the image"):
        prompt_to_pixels(TextPrompt("w", boxes=((100, 100, 120, 120),)), None, info)


def test_exemplar_boxes_in_a_crs_need_a_georeferenced_image(tmp_path: Path) -> None:
    with RasterSource(scene(tmp_path, crs=None)) as src:
        info = src.info
    prompt = TextPrompt("water", boxes=((1, 1, 5, 5),))
    with pytest.raises(InvalidRequest, match="this image has no CRS"):
        prompt_to_pixels(prompt, CRS.from_user_input("EPSG:4326"), info)
    assert prompt_to_pixels(prompt, None, info) == prompt


def test_window_prompt_moves_exemplar_boxes() -> None:
    prompt = TextPrompt("water", others=("trees",), boxes=((10, 20, 30, 40),), box_labels=(0,))
    moved = _window_prompt(prompt, 5, 10)
    assert moved == TextPrompt(
        "water", others=("trees",), boxes=((5, 10, 25, 30),), box_labels=(0,)
    )
    assert _window_prompt(TextPrompt("water"), 5, 10) == TextPrompt("water")
    box = PointBoxPrompt(points=((12, 14),), labels=(1,), boxes=((10, 20, 30, 40),))
    assert _window_prompt(box, 5, 10) == PointBoxPrompt(
        points=((7, 4),), labels=(1,), boxes=((5, 10, 25, 30),)
    )


# -- a run -----------------------------------------------------------------------------


class PerConcept(Backend):
    """One square per concept, at its own place, its origin the concept; records prompts."""

    version: ClassVar[str] = "per-concept"
    model_ids: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(self, model_id: str = "test", device: str | None = None) -> None:
        super().__init__(model_id, device)
        self.prompts: list[Prompt] = []

    def run(self, prepared, prompt: Prompt) -> ObjectSet:
        self.prompts.append(prompt)
        assert isinstance(prompt, TextPrompt)
        shape = prepared.shape
        masks, scores, origins = [], [], []
        for i, concept in enumerate(prompt.concepts):
            mask = np.zeros(shape, dtype=bool)
            mask[5 + 10 * i : 12 + 10 * i, 5:15] = True
            masks.append(mask)
            scores.append(0.9 - 0.1 * i)
            origins.append(Origin(prompt=concept))
        return ObjectSet.from_masks(masks, scores, origins, shape=shape)


def test_a_run_converts_exemplar_boxes_and_labels_each_feature_with_its_concept(
    tmp_path: Path,
) -> None:
    model = PerConcept()
    prompt = text_prompt(
        "water", others=("trees", "roads"), boxes=(tuple(lonlat_box(10, 5, 30, 25)),)
    )
    result = segment_raster(scene(tmp_path), prompt, model, prompt_crs="EPSG:4326")
    (seen,) = model.prompts
    assert isinstance(seen, TextPrompt)
    assert np.allclose(seen.boxes[0], (10, 5, 30, 25), atol=1e-2)
    assert seen.box_labels == (1,) and seen.concepts == ("water", "trees", "roads")
    assert [p["prompt"] for p in result.features.properties] == ["water", "trees", "roads"]
    assert result.base_properties["prompt"] == "water"
    assert result.concepts == ("water", "trees", "roads") and result.several_concepts


# -- classic ---------------------------------------------------------------------------


def test_classic_refuses_what_it_cannot_answer() -> None:
    classic = ClassicBackend("default")
    with pytest.raises(UnsupportedPrompt, match="does not take exemplar boxes") as caught:
        classic.check_prompt(TextPrompt("water", boxes=((0, 0, 4, 4),)))
    assert caught.value.fields[0] == "boxes"
    with pytest.raises(UnsupportedPrompt, match="use box_mode=object or model_version=sam3"):
        classic.check_prompt(PointBoxPrompt(boxes=((0, 0, 4, 4),), box_mode="similar"))
    classic.check_prompt(PointBoxPrompt(boxes=((0, 0, 4, 4),), box_mode="object"))
    # Every concept must be a word classic knows, not only the first.
    with pytest.raises(UnsupportedPrompt, match="does not know 'cars'"):
        classic.check_prompt(TextPrompt("water", others=("cars",)))


def test_classic_concepts_are_joined_as_cropped_objects(tmp_path: Path) -> None:
    planes = landscape(60, 80, seed=2)
    bands = np.stack([planes[b] for b in ("blue", "green", "red", "nir")])
    path = write_raster(
        tmp_path / "two.tif",
        (bands * 10000).astype("uint16"),
        transform=GRID,
        descriptions=["blue", "green", "red", "nir"],
    )
    result = segment_raster(path, TextPrompt("water", others=("trees",)), ClassicBackend("default"))
    prompts = {p["prompt"] for p in result.features.properties}
    assert prompts == {"water", "trees"}, result.features.properties
    # Not one coverage: water and trees may share pixels, so each is simplified alone.
    assert not result.objects.layered.any()
    values = [o.value for o in result.objects]
    assert len(values) == len(set(values))


def test_cropped_turns_layer_objects_into_masks_with_the_same_pixels() -> None:
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[2:8, 3:9] = 1
    labels[10:18, 12:25] = 2
    layered = ObjectSet.from_labels(labels, [np.nan, 0.7, 0.4], origin=Origin(prompt="water"))
    cropped = layered.cropped()
    assert cropped.layers == [] and cropped.shape == layered.shape
    assert all(o.layer is None and o.mask is not None for o in cropped)
    assert [o.origin.prompt for o in cropped] == ["water", "water"]
    assert np.array_equal(cropped.labels, layered.labels)
    assert cropped.cropped() is cropped
