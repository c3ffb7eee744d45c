"""The sidecar's OpenAPI: every ``/ml/segment/*`` form field from the protocol's table, typed
answers for ``/ml/status`` and ``/ml/start``, and descriptions that state the real limits."""

from __future__ import annotations

import warnings

import httpx
import pytest

from geolibre_ml.protocol import MODES
from geolibre_ml.sidecar.app import create_app
from geolibre_ml.sidecar.config import MIB, Settings
from support.servers import ServerProcess

#: Fields of each mode besides the common ones, written out (not read from the table).
OWN_FIELDS = {
    "text": {
        "prompt",
        "confidence_threshold",
        "backend",
        "prompts",
        "boxes",
        "box_labels",
        "point_crs",
    },
    "automatic": {
        "foreground",
        "unique",
        "points_per_side",
        "pred_iou_thresh",
        "stability_score_thresh",
    },
    "predict": {
        "point_coords",
        "point_labels",
        "boxes",
        "point_crs",
        "multimask_output",
        "box_mode",
    },
}
COMMON = {
    "file",
    "source",
    "image_id",
    "model_version",
    "model_id",
    "output_format",
    "min_size",
    "max_size",
    "output_crs",
    "bands",
    "tile_size",
    "tile_overlap",
    "simplify_tolerance",
}


@pytest.fixture(scope="module")
def openapi(proxied: ServerProcess) -> dict:
    answer = httpx.get(f"{proxied.url}/openapi.json")
    assert answer.status_code == 200
    return answer.json()


@pytest.mark.parametrize("mode", ["text", "automatic", "predict"])
def test_each_segment_route_documents_its_form(openapi: dict, mode: str) -> None:
    operation = openapi["paths"][f"/ml/segment/{mode}"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(schema["properties"]) == COMMON | OWN_FIELDS[mode]
    assert schema["properties"]["file"]["format"] == "binary"
    # file, or source instead; text: prompt, or prompts instead.
    assert schema["required"] == []
    for name, field in schema["properties"].items():
        assert field["type"] in ("string", "integer", "number", "boolean"), name
        assert field["description"], name
    assert schema["properties"]["output_format"]["default"] == "geojson"
    assert "1008" in schema["properties"]["tile_size"]["description"]
    assert "tile_size" in schema["properties"]["tile_overlap"]["description"]
    assert operation["summary"] == MODES[mode].summary
    assert f"/segment/{mode}" in operation["description"]
    assert {"413", "429", "502", "503", "504"} <= set(operation["responses"])


def test_status_and_start_have_typed_answers(openapi: dict) -> None:
    schemas = openapi["components"]["schemas"]
    for path, method, name in (("/ml/status", "get", "MlStatus"), ("/ml/start", "post", "MlStart")):
        answer = openapi["paths"][path][method]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith(name)
        properties = schemas[name]["properties"]
        assert {"available", "message", "default_model", "url", "version", "models"} <= set(
            properties
        )
        assert set(schemas[name]["required"]) == {"available", "message", "default_model"}
    assert "detail" in schemas["MlStart"]["properties"]
    assert "MlStart" in str(openapi["paths"]["/ml/start"]["post"]["responses"]["503"])


def test_descriptions_state_the_configured_limits() -> None:
    settings = Settings(
        path="/nonexistent", max_upload_bytes=5 * MIB // 2, max_segmentations=2, proxy_timeout=90
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicate operation ids, among others
        openapi = create_app(settings, web_dir=None).openapi()
    text = openapi["paths"]["/ml/segment/predict"]["post"]["description"]
    assert "2.5 MiB" in text and "2 segmentations" in text and "90 s" in text
    assert "100 MiB" not in str(openapi) and "a fifth" not in str(openapi)
    responses = openapi["paths"]["/ml/segment/text"]["post"]["responses"]
    assert "2.5 MiB" in responses["413"]["description"]
    assert "2 segmentations" in responses["429"]["description"]
