"""The fields issue 8 adds: ``prompts``, exemplar ``boxes``/``box_labels``/``point_crs`` on
``/segment/text`` and ``box_mode`` on ``/segment/predict``, answered by the classic model."""

from __future__ import annotations

import json

import httpx
import pytest
import shapely

from .helpers import LAKE_BOX, LAKE_CENTRE, Images, detail, geometries, pixel_to_map
from .helpers import segment as post


def segment(client: httpx.Client, mode: str, image, data: dict) -> httpx.Response:
    """POST to ``/segment/{mode}`` with the classic model, whatever the server's default."""
    return post(client, mode, image, {"model_version": "classic", **data})


def by_prompt(collection: dict) -> dict[str, list[dict]]:
    """The features of a GeoJSON answer grouped by their ``prompt`` property."""
    groups: dict[str, list[dict]] = {}
    for feature in collection["features"]:
        groups.setdefault(feature["properties"]["prompt"], []).append(feature)
    return groups


def test_several_concepts_each_feature_carries_the_concept_that_found_it(
    client: httpx.Client, images: Images
) -> None:
    both = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water", "prompts": json.dumps(["trees"])},
    )
    assert both.status_code == 200, both.text
    groups = by_prompt(both.json())
    assert set(groups) == {"water", "trees"}
    lake = shapely.Point(pixel_to_map(*LAKE_CENTRE))
    water = shapely.union_all(geometries({"features": groups["water"]}))
    trees = shapely.union_all(geometries({"features": groups["trees"]}))
    assert water.contains(lake) and not trees.contains(lake)
    # Each concept finds what it finds alone; values are unique across the concepts.
    for concept, features in groups.items():
        alone = segment(client, "text", images.multispectral, {"prompt": concept})
        assert alone.status_code == 200, alone.text
        assert len(alone.json()["features"]) == len(features), concept
        assert shapely.union_all(geometries(alone.json())).equals_exact(
            shapely.union_all(geometries({"features": features})), 1e-6
        )
    values = [f["properties"]["value"] for f in both.json()["features"]]
    assert len(values) == len(set(values))


def test_prompts_alone_duplicates_and_blanks_collapse(client: httpx.Client, images: Images) -> None:
    answer = segment(
        client,
        "text",
        images.multispectral,
        {"prompts": json.dumps(["  water ", "water", "trees"]), "prompt": ""},
    )
    assert answer.status_code == 200, answer.text
    groups = by_prompt(answer.json())
    assert set(groups) == {"water", "trees"}
    single = segment(client, "text", images.multispectral, {"prompt": "water"})
    assert len(groups["water"]) == len(single.json()["features"])


@pytest.mark.parametrize("output_format", ["json", "detections"])
def test_box_answers_say_which_concept_found_each_object(
    client: httpx.Client, images: Images, output_format: str
) -> None:
    answer = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water", "prompts": '["trees"]', "output_format": output_format},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    items = (
        body["detections"]
        if output_format == "json"
        else [f["properties"] for f in body["features"]]
    )
    assert {item["prompt"] for item in items} == {"water", "trees"}


def test_one_concept_answers_as_before(client: httpx.Client, images: Images) -> None:
    # samgeo-api's json format has no per-detection prompt; a single concept adds none.
    answer = segment(
        client, "text", images.multispectral, {"prompt": "water", "output_format": "json"}
    )
    assert answer.status_code == 200
    assert all("prompt" not in item for item in answer.json()["detections"])


@pytest.mark.parametrize(
    ("prompts", "words"),
    [
        ('["trees", ', "prompts is not valid JSON"),
        ('"trees"', "prompts must be a JSON list of strings"),
        ('["trees", 3]', "prompts must be a JSON list of strings"),
        ('["trees", "  "]', "blank concept"),
        (json.dumps([f"class {i}" for i in range(33)]), "at most 32"),
    ],
)
def test_bad_prompts_is_a_400_that_says_what_to_send(
    client: httpx.Client, images: Images, prompts: str, words: str
) -> None:
    answer = segment(client, "text", images.rgb_tif, {"prompt": "water", "prompts": prompts})
    assert answer.status_code == 400, answer.text
    assert words in detail(answer)
    assert '["trees", "water"]' in detail(answer) or "at most 32" in detail(answer)


def test_neither_prompt_nor_prompts_is_a_missing_field(
    client: httpx.Client, images: Images
) -> None:
    answer = segment(client, "text", images.rgb_tif, {"confidence_threshold": "0.5"})
    assert answer.status_code == 422
    assert "prompt is required" in detail(answer) and "prompts" in detail(answer)
    blank = segment(client, "text", images.rgb_tif, {"prompt": "   ", "prompts": "[]"})
    assert blank.status_code == 400
    assert "prompt is empty" in detail(blank)


def test_exemplar_boxes_on_classic_are_refused_with_the_way_out(
    client: httpx.Client, images: Images
) -> None:
    answer = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water", "boxes": json.dumps([LAKE_BOX])},
    )
    assert answer.status_code == 422
    assert detail(answer) == (
        "the classic backend does not take exemplar boxes; use model_version=sam3 or drop boxes."
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"boxes": "[[1, 2, 3]]"}, "boxes must be a JSON list of 4-number lists"),
        ({"boxes": "[[10, 10, 20, 20]]", "box_labels": "[1, 0]"}, "give one label per box"),
        ({"boxes": "[[10, 10, 20, 20]]", "box_labels": "[2]"}, "box_labels must be a JSON list"),
        ({"box_labels": "[1]"}, "no boxes were given"),
        ({"boxes": "[[30, 30, 10, 10]]"}, "empty or inverted"),
        ({"point_crs": "EPSG:4326"}, "point_crs gives the CRS of exemplar boxes"),
    ],
)
def test_bad_exemplar_fields_are_400s_before_the_model_is_asked(
    client: httpx.Client, images: Images, fields: dict, words: str
) -> None:
    answer = segment(client, "text", images.multispectral, {"prompt": "water", **fields})
    assert answer.status_code == 400, answer.text
    assert words in detail(answer)


def test_box_mode_unknown_value_is_a_400(client: httpx.Client, images: Images) -> None:
    answer = segment(
        client,
        "predict",
        images.multispectral,
        {"boxes": json.dumps([LAKE_BOX]), "box_mode": "everything"},
    )
    assert answer.status_code == 400
    assert "Unknown box_mode 'everything'" in detail(answer)
    assert "similar" in detail(answer) and "object" in detail(answer)


def test_box_mode_similar_on_classic_is_refused_object_is_todays_answer(
    client: httpx.Client, images: Images
) -> None:
    form = {"boxes": json.dumps([LAKE_BOX])}
    similar = segment(client, "predict", images.multispectral, {**form, "box_mode": "similar"})
    assert similar.status_code == 422
    assert "box_mode=object or model_version=sam3" in detail(similar)
    default = segment(client, "predict", images.multispectral, form)
    explicit = segment(client, "predict", images.multispectral, {**form, "box_mode": "Object"})
    assert default.status_code == explicit.status_code == 200
    assert default.json()["features"] == explicit.json()["features"]


def test_box_mode_similar_needs_boxes(client: httpx.Client, images: Images) -> None:
    answer = segment(
        client,
        "predict",
        images.multispectral,
        {"point_coords": json.dumps([list(LAKE_CENTRE)]), "box_mode": "similar"},
    )
    assert answer.status_code == 400
    assert "has no boxes" in detail(answer)
