"""Every /segment/* endpoint with ``model_version=sam3``, through the model server and
the sidecar, on the tiny SAM 3 planted in an offline Hugging Face cache as
``facebook/sam3``; and the answers without weights."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.servers import ServerProcess, run_server

from .helpers import Images, checked_client, detail, segment

pytest.importorskip("transformers")


def _env(hf_home: Path, tmpdir: Path) -> dict[str, str]:
    return {
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "GEOLIBRE_ML_SAM3_MODEL": "",
        "GEOLIBRE_ML_DEVICE": "cpu",
        "GEOLIBRE_ML_SAM3_DTYPE": "float32",
        "TMPDIR": str(tmpdir),
    }


@pytest.fixture(scope="module")
def sam3_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sam3-server-tmp")


@pytest.fixture(scope="module")
def sam3_server(
    sam3_hf_home: Path, sam3_tmp: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A model server that finds ``facebook/sam3`` (the tiny one) in its HF cache."""
    log = tmp_path_factory.mktemp("sam3-server-log") / "model-server.log"
    with run_server(["model-server"], log_path=log, env=_env(sam3_hf_home, sam3_tmp)) as server:
        yield server
        text = server.log()
    assert "Traceback" not in text, text


@pytest.fixture
def sam3(sam3_server: ServerProcess, sam3_tmp: Path) -> Iterator[httpx.Client]:
    with checked_client(sam3_server.url, sam3_tmp) as http:
        yield http


def _features(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert body["crs"]["properties"]["name"].startswith("urn:ogc:def:crs:EPSG::")
    assert body["features"]
    for feature in body["features"]:
        assert feature["properties"]["model"] == "sam3"
        assert feature["properties"]["model_id"] == "facebook/sam3"
        assert 0.0 <= feature["properties"]["score"] <= 1.0
    return body["features"]


def test_models_lists_sam3_ready_without_loading_it(sam3: httpx.Client) -> None:
    sam3.delete("/models")
    body = sam3.get("/models").json()
    assert body["ready"] == {"sam3": True, "classic": True}
    assert body["models"]["sam3"] == ["facebook/sam3"]
    assert body["loaded"] == []


def test_text_is_answered_by_sam3_by_default(sam3: httpx.Client, images: Images) -> None:
    response = segment(
        sam3, "text", images.rgb_tif, {"prompt": "water", "confidence_threshold": "0"}
    )
    features = _features(response)
    assert {f["properties"]["prompt"] for f in features} == {"water"}
    assert all(f["properties"]["area_m2"] > 0 for f in features)
    assert sam3.get("/models").json()["loaded"] == [["sam3", "facebook/sam3"]]


def test_a_second_prompt_on_the_same_upload_reuses_the_encoded_image(
    sam3: httpx.Client, images: Images
) -> None:
    fields = {"model_version": "sam3", "confidence_threshold": "0"}
    segment(sam3, "text", images.png, {**fields, "prompt": "trees"})
    again = segment(sam3, "text", images.png, {**fields, "prompt": "roads"})
    assert again.status_code == 200
    assert again.headers["X-GeoLibre-Cache"] == "hit"


def test_a_threshold_of_one_finds_nothing(sam3: httpx.Client, images: Images) -> None:
    response = segment(
        sam3,
        "text",
        images.rgb_tif,
        {"model_version": "sam3", "prompt": "water", "confidence_threshold": "1"},
    )
    assert response.status_code == 404
    assert detail(response).startswith("No objects found")


def test_predict_points_and_the_other_output_formats(sam3: httpx.Client, images: Images) -> None:
    fields = {
        "model_version": "sam3",
        "point_coords": json.dumps([[40, 30]]),
        "point_labels": json.dumps([1]),
        "multimask_output": "true",
    }
    features = _features(segment(sam3, "predict", images.rgb_tif, fields))
    assert all(f["properties"]["mode"] == "predict" for f in features)
    boxes = segment(sam3, "predict", images.rgb_tif, {**fields, "output_format": "json"})
    assert boxes.status_code == 200 and boxes.json()
    raster = segment(sam3, "predict", images.rgb_tif, {**fields, "output_format": "geotiff"})
    assert raster.status_code == 200 and raster.content[:4] in (b"II*\x00", b"MM\x00*")


def test_automatic_through_the_tracker_grid(sam3: httpx.Client, images: Images) -> None:
    fields = {
        "model_version": "sam3",
        "points_per_side": "4",
        "pred_iou_thresh": "0",
        "stability_score_thresh": "0",
    }
    features = _features(segment(sam3, "automatic", images.rgb_tif, fields))
    assert len(features) <= 3 * 4 * 4
    strict = segment(sam3, "automatic", images.rgb_tif, {**fields, "pred_iou_thresh": "1"})
    assert strict.status_code == 404


def test_a_model_id_outside_the_catalogue_is_refused(sam3: httpx.Client, images: Images) -> None:
    for model_id in ("/etc", "someone/else", "../../models"):
        response = segment(
            sam3,
            "text",
            images.rgb_tif,
            {"model_version": "sam3", "model_id": model_id, "prompt": "x"},
        )
        assert response.status_code == 400
        assert "Known ids: facebook/sam3" in detail(response)


def test_delete_models_frees_sam3(sam3: httpx.Client, images: Images) -> None:
    segment(sam3, "text", images.rgb_tif, {"prompt": "water", "confidence_threshold": "0"})
    assert sam3.get("/models").json()["loaded"] == [["sam3", "facebook/sam3"]]
    assert sam3.delete("/models").json() == {"status": "cleared"}
    assert sam3.get("/models").json()["loaded"] == []


def test_the_sidecar_defaults_to_sam3_and_passes_it_through(
    sam3_server: ServerProcess, images: Images, tmp_path: Path
) -> None:
    from sidecar.helpers import run_sidecar, sidecar_env

    env = sidecar_env(tmp_path, GEOLIBRE_ML_SAMGEO_URL=sam3_server.url)
    with run_sidecar(tmp_path / "sidecar.log", env) as sidecar:
        status = httpx.get(f"{sidecar.url}/ml/status", timeout=30).json()
        assert status["available"] is True
        assert status["default_model"] == "sam3"
        for mode, fields in (
            ("text", {"prompt": "water", "confidence_threshold": "0"}),
            ("predict", {"point_coords": "[[40, 30]]", "point_labels": "[1]"}),
            (
                "automatic",
                {"points_per_side": "4", "pred_iou_thresh": "0", "stability_score_thresh": "0"},
            ),
        ):
            response = httpx.post(
                f"{sidecar.url}/ml/segment/{mode}",
                files={"file": ("rgb.tif", images.rgb_tif.read_bytes())},
                data={"model_version": "sam3", **fields},
                timeout=120,
            )
            assert {f["properties"]["mode"] for f in _features(response)} == {mode}


def test_without_weights_sam3_answers_503_with_how_to_get_them(
    tmp_path: Path, images: Images
) -> None:
    empty = tmp_path / "hf"
    empty.mkdir()
    with (
        run_server(
            ["model-server"], log_path=tmp_path / "log", env=_env(empty, tmp_path)
        ) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert http.get("/models").json()["ready"]["sam3"] is False
        response = segment(
            http, "text", images.rgb_tif, {"model_version": "sam3", "prompt": "water"}
        )
        assert response.status_code == 503
        message = detail(response)
        assert "geolibre-ml download-model sam3" in message and "HF_TOKEN" in message
        fallback = segment(http, "text", images.rgb_tif, {"prompt": "water"})
        assert fallback.status_code == 200
        assert {f["properties"]["model"] for f in fallback.json()["features"]} == {"classic"}


def test_several_prompts_exemplar_boxes_in_map_units_and_box_mode(
    sam3: httpx.Client, images: Images
) -> None:
    from .helpers import pixel_to_map

    fields = {"model_version": "sam3", "confidence_threshold": "0"}
    several = segment(
        sam3, "text", images.rgb_tif, {**fields, "prompt": "water", "prompts": '["trees"]'}
    )
    concepts = {f["properties"]["prompt"] for f in _features(several)}
    assert concepts <= {"water", "trees"} and concepts
    x0, y0 = pixel_to_map(10, 10)
    x1, y1 = pixel_to_map(60, 50)
    box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    exemplar = segment(
        sam3,
        "text",
        images.rgb_tif,
        {**fields, "prompt": "water", "boxes": json.dumps([box]), "point_crs": "EPSG:32633"},
    )
    _features(exemplar)
    outside = segment(
        sam3,
        "text",
        images.rgb_tif,
        {**fields, "prompt": "water", "boxes": "[[1, 1, 2, 2]]", "point_crs": "EPSG:32633"},
    )
    assert outside.status_code == 400  # a box in metres far outside the image
    one = segment(
        sam3,
        "predict",
        images.rgb_tif,
        {"model_version": "sam3", "boxes": "[[10, 10, 60, 50]]", "box_mode": "object"},
    )
    assert len(_features(one)) == 1
