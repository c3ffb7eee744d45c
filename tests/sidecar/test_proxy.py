"""GeoLibre's requests through the sidecar to our model server: answers pass through unchanged.

Each request is made twice, through the sidecar and straight to the model server, and the
two answers must be the same bytes with the same status and content type.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support.rasters import UTM_TRANSFORM
from support.servers import ServerProcess

from .helpers import HEIGHT, WIDTH, ml_segment_form

#: The scene's bounds in EPSG:32633 (x min, y min, x max, y max).
BOUNDS = (
    UTM_TRANSFORM.c,
    UTM_TRANSFORM.f + HEIGHT * UTM_TRANSFORM.e,
    UTM_TRANSFORM.c + WIDTH * UTM_TRANSFORM.a,
    UTM_TRANSFORM.f,
)
LAKE = UTM_TRANSFORM @ (WIDTH * 0.3, HEIGHT * 0.35)


def both(
    proxied: ServerProcess, model_server: ServerProcess, mode: str, form: list
) -> tuple[httpx.Response, httpx.Response]:
    """The same request through the sidecar and straight to the model server."""
    via = httpx.post(f"{proxied.url}/ml/segment/{mode}", files=form, timeout=60)
    direct = httpx.post(f"{model_server.url}/segment/{mode}", files=form, timeout=60)
    return via, direct


def assert_same(via: httpx.Response, direct: httpx.Response) -> None:
    assert via.status_code == direct.status_code
    assert via.headers["content-type"] == direct.headers["content-type"]
    assert via.content == direct.content


def coordinates(feature: dict) -> list[tuple[float, float]]:
    geometry = feature["geometry"]
    rings = (
        geometry["coordinates"]
        if geometry["type"] == "Polygon"
        else [ring for polygon in geometry["coordinates"] for ring in polygon]
    )
    return [tuple(point) for ring in rings for point in ring]


def assert_in_scene(collection: dict) -> None:
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    xmin, ymin, xmax, ymax = BOUNDS
    for feature in collection["features"]:
        for x, y in coordinates(feature):
            assert xmin <= x <= xmax and ymin <= y <= ymax


@pytest.mark.parametrize(
    ("mode", "fields"),
    [
        ("text", {"prompt": "water", "confidence_threshold": 0.5}),
        ("automatic", {"min_size": 20}),
        (
            "predict",
            {
                "boxes": [[LAKE[0] - 250, LAKE[1] - 200, LAKE[0] + 250, LAKE[1] + 200]],
                "point_coords": [[LAKE[0], LAKE[1]]],
                "point_labels": [1],
                "point_crs": "EPSG:32633",
            },
        ),
    ],
)
def test_geolibre_ml_segment_fields_pass_through_for_every_mode(
    proxied: ServerProcess, model_server: ServerProcess, scene_tif: Path, mode: str, fields: dict
) -> None:
    form = ml_segment_form(
        mode, scene_tif.read_bytes(), "scene.tif", model_version="classic", **fields
    )
    via, direct = both(proxied, model_server, mode, form)
    assert via.status_code == 200, via.text
    assert_same(via, direct)
    collection = via.json()
    assert len(collection["features"]) >= 1
    assert_in_scene(collection)
    properties = collection["features"][0]["properties"]
    assert properties["mode"] == mode
    assert properties["model"] == "classic"
    assert properties["source"] == "scene.tif"
    if mode == "text":
        assert properties["prompt"] == "water"
        # The lake is found: one polygon's bounding box holds the lake's centre.
        boxes = [
            (min(x for x, _ in c), min(y for _, y in c), max(x for x, _ in c), max(y for _, y in c))
            for c in map(coordinates, collection["features"])
        ]
        assert any(b[0] <= LAKE[0] <= b[2] and b[1] <= LAKE[1] <= b[3] for b in boxes)


@pytest.mark.parametrize("mode", ["text", "automatic", "predict"])
def test_geolibre_default_fields_get_the_backend_answer_unchanged(
    proxied: ServerProcess, model_server: ServerProcess, scene_tif: Path, mode: str
) -> None:
    """``mlSegment`` with no parameters asks for ``sam3``, which our server cannot load yet."""
    fields = {"text": {"prompt": "trees"}, "predict": {"boxes": [[10, 10, 60, 50]]}}
    form = ml_segment_form(mode, scene_tif.read_bytes(), "scene.tif", **fields.get(mode, {}))
    via, direct = both(proxied, model_server, mode, form)
    assert_same(via, direct)
    assert via.status_code == direct.status_code == 503  # sam3 cannot load here
    assert via.json()["detail"] == direct.json()["detail"]


def test_binary_answers_pass_through_byte_for_byte(
    proxied: ServerProcess, model_server: ServerProcess, scene_tif: Path
) -> None:
    form = ml_segment_form(
        "text",
        scene_tif.read_bytes(),
        "scene.tif",
        model_version="classic",
        output_format="geotiff",
        prompt="water",
    )
    via, direct = both(proxied, model_server, "text", form)
    assert via.status_code == 200
    assert via.headers["content-type"] == "image/tiff"
    assert via.content[:4] in (b"II*\x00", b"MM\x00*")
    assert_same(via, direct)


def test_bad_input_answers_pass_through(
    proxied: ServerProcess, model_server: ServerProcess
) -> None:
    form = ml_segment_form("text", b"not an image", "notes.txt", model_version="classic")
    via, direct = both(proxied, model_server, "text", form)
    assert 400 <= via.status_code < 500
    assert_same(via, direct)


def test_models_is_the_backend_models(proxied: ServerProcess, model_server: ServerProcess) -> None:
    via = httpx.get(f"{proxied.url}/ml/models")
    direct = httpx.get(f"{model_server.url}/models")
    assert via.status_code == 200
    assert via.json() == direct.json()
    assert "classic" in via.json()["models"]


def test_status_reports_the_backend(proxied: ServerProcess, model_server: ServerProcess) -> None:
    status = httpx.get(f"{proxied.url}/ml/status").json()
    models = httpx.get(f"{model_server.url}/models").json()
    assert status["available"] is True
    assert status["url"] == model_server.url
    assert status["version"] == httpx.get(f"{model_server.url}/health").json()["version"]
    assert status["models"] == models["models"]
    # sam3 is not ready on this machine, so the UI defaults to classic.
    assert models["ready"]["sam3"] is False
    assert status["default_model"] == "classic"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/0123abcd"),
        ("GET", "/jobs/0123abcd/events?since=3"),
        ("GET", "/jobs/0123abcd/result?output_format=gpkg"),
        ("DELETE", "/jobs/0123abcd"),
    ],
)
def test_jobs_pass_through_and_relay_the_backend_404(
    proxied: ServerProcess, model_server: ServerProcess, method: str, path: str
) -> None:
    """An unknown job: the sidecar forwards, and relays the model server's 404 as is."""
    via = httpx.request(method, f"{proxied.url}/ml{path}")
    direct = httpx.request(method, f"{model_server.url}{path}")
    assert via.status_code == direct.status_code == 404
    assert via.json() == direct.json()


@pytest.mark.parametrize(("model_version", "status"), [("sam3", 503), ("classic", 202)])
def test_job_submission_passes_through(
    proxied: ServerProcess,
    model_server: ServerProcess,
    scene_tif: Path,
    model_version: str,
    status: int,
) -> None:
    """GeoLibre's form to ``/ml/jobs/segment/text``: the model server's answer, relayed
    (503 for sam3 on this machine, as ``/segment/text``; 202 and a job for classic)."""
    form = ml_segment_form(
        "text", scene_tif.read_bytes(), "scene.tif", prompt="water", model_version=model_version
    )
    via = httpx.post(f"{proxied.url}/ml/jobs/segment/text", files=form)
    direct = httpx.post(f"{model_server.url}/jobs/segment/text", files=form)
    assert via.status_code == direct.status_code == status
    if status == 202:
        assert (
            set(via.json())
            == set(direct.json())
            == {
                "job_id",
                "status_url",
                "events_url",
                "result_url",
            }
        )
        # Each answer's URLs are where its client is: the sidecar's under /ml.
        assert via.json()["status_url"] == f"/ml/jobs/{via.json()['job_id']}"
        assert direct.json()["status_url"] == f"/jobs/{direct.json()['job_id']}"
        assert httpx.delete(f"{proxied.url}{via.json()['status_url']}").status_code == 200
        assert httpx.delete(f"{model_server.url}{direct.json()['status_url']}").status_code == 200
    else:
        assert via.json() == direct.json()
