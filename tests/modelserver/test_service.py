"""/health, /models and the OpenAPI page."""

from __future__ import annotations

import httpx

from geolibre_ml import __version__

from .helpers import Images, segment


def test_health_answers_status_and_version(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


def test_models_lists_versions_ids_and_readiness(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"models", "loaded", "ready"}
    assert body["models"]["classic"] == ["default"]
    assert body["models"]["sam3"] == ["facebook/sam3"]
    assert body["ready"] == {"sam3": False, "classic": True}
    assert isinstance(body["loaded"], list)


def test_models_are_loaded_on_first_use_and_cleared(client: httpx.Client, images: Images) -> None:
    cleared = client.delete("/models")
    assert cleared.status_code == 200
    assert cleared.json() == {"status": "cleared"}
    assert client.get("/models").json()["loaded"] == []

    ran = segment(client, "automatic", images.rgb_tif, {"model_version": "classic"})
    assert ran.status_code == 200
    assert client.get("/models").json()["loaded"] == [["classic", "default"]]

    assert client.delete("/models").json() == {"status": "cleared"}
    assert client.get("/models").json()["loaded"] == []
    # A cleared model is loaded again on the next request.
    assert segment(client, "automatic", images.rgb_tif).status_code == 200
    assert client.get("/models").json()["loaded"] == [["classic", "default"]]


def test_a_second_prompt_on_the_same_image_reuses_its_prepared_state(
    client: httpx.Client, images: Images
) -> None:
    client.delete("/models")  # the cache goes with the models
    first = segment(client, "automatic", images.rgb_tif)
    second = segment(client, "text", images.rgb_tif, {"prompt": "water"})
    third = segment(client, "predict", images.rgb_tif, {"boxes": "[[5, 5, 40, 40]]"})
    assert first.status_code == 200
    assert first.headers["X-GeoLibre-Cache"] == "miss"
    assert second.headers["X-GeoLibre-Cache"] == "hit"
    assert third.headers["X-GeoLibre-Cache"] == "hit"
    # Other bytes, other bands or a cleared server: prepared again.
    other = segment(client, "automatic", images.multispectral)
    banded = segment(client, "automatic", images.rgb_tif, {"bands": "3,2,1"})
    assert other.headers["X-GeoLibre-Cache"] == banded.headers["X-GeoLibre-Cache"] == "miss"
    client.delete("/models")
    assert segment(client, "automatic", images.rgb_tif).headers["X-GeoLibre-Cache"] == "miss"


def test_openapi_documents_every_endpoint_and_field(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/health", "/models", "/segment/text", "/segment/automatic", "/segment/predict"} <= set(
        spec["paths"]
    )
    assert set(spec["paths"]["/models"]) == {"get", "delete"}
    common = {
        "file", "source", "image_id", "model_version", "model_id", "output_format", "min_size",
        "max_size", "output_crs", "bands", "tile_size", "tile_overlap", "simplify_tolerance",
    }  # fmt: skip
    expected = {
        "text": common
        | {"prompt", "confidence_threshold", "backend", "prompts", "boxes", "box_labels"}
        | {"point_crs"},
        "automatic": common
        | {"foreground", "unique", "points_per_side", "pred_iou_thresh", "stability_score_thresh"},
        "predict": common
        | {"point_coords", "point_labels", "boxes", "point_crs", "multimask_output", "box_mode"},
    }
    schemas = spec["components"]["schemas"]
    for mode, fields in expected.items():
        body = spec["paths"][f"/segment/{mode}"]["post"]["requestBody"]
        ref = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        properties = schemas[ref]["properties"]
        assert set(properties) == fields, mode
        # prompt may be left out when prompts names the concepts (422 when both are);
        # file when source names the raster (422 "file is required" when both are).
        assert schemas[ref].get("required", []) == []
        for name, prop in properties.items():
            assert prop.get("description"), f"{mode}.{name} has no description"
    # Typed answers for the JSON service endpoints.
    models_schema = spec["paths"]["/models"]["get"]["responses"]["200"]["content"]
    assert models_schema["application/json"]["schema"]["$ref"].endswith("/ModelCatalog")


def test_unknown_path_and_method_are_clean_errors(client: httpx.Client) -> None:
    missing = client.get("/segment/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong = client.get("/segment/text")
    assert wrong.status_code == 405
