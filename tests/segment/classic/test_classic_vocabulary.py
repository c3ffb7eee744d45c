"""The classic vocabulary: accepted words, and the refusal of everything else."""

from __future__ import annotations

import pytest
from classic_scenes import landscape, write_true_colour

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.classic.vocabulary import CLASSES, resolve_class, vocabulary
from geolibre_ml.segment.errors import UnsupportedPrompt
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import TextPrompt


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("water", "water"),
        ("Water", "water"),
        ("  water body ", "water"),
        ("vegetation", "vegetation"),
        ("trees", "vegetation"),
        ("tree", "vegetation"),
        ("forest", "vegetation"),
        ("forests", "vegetation"),
        ("grass", "vegetation"),
        ("grasses", "vegetation"),
        ("Green_Vegetation", "vegetation"),
    ],
)
def test_words_name_classes(prompt, name):
    assert resolve_class(prompt).name == name


@pytest.mark.parametrize("prompt", ["buildings", "car", "wat", "", "water and trees"])
def test_other_words_are_refused_with_the_vocabulary_and_a_pointer_to_sam3(prompt):
    with pytest.raises(UnsupportedPrompt) as caught:
        resolve_class(prompt)
    detail = caught.value.detail
    for word in ("water", "vegetation", "tree", "forest", "grass"):
        assert word in detail
    assert "sam3" in detail.lower()
    assert "SAM 3 handles open vocabulary" in detail


def test_the_vocabulary_lists_every_word_of_every_class():
    words = vocabulary()
    assert words == sorted(words)
    for cls in CLASSES:
        assert set(cls.words) <= set(words)
        assert cls.name in cls.words


def test_an_unknown_word_fails_before_any_pixel_is_read(tmp_path):
    path = write_true_colour(tmp_path / "scene.tif", landscape())
    backend = ClassicBackend("default")
    with pytest.raises(UnsupportedPrompt, match="buildings"):
        backend.check_prompt(TextPrompt("buildings"))
    with pytest.raises(UnsupportedPrompt, match="water"):
        segment_raster(path, TextPrompt("buildings"), backend)
