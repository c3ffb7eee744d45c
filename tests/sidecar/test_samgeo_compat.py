"""segment-geospatial's real ``samgeo-api`` app behind the sidecar, unchanged.

segment-geospatial 1.4.2 is installed once (``pip install --no-deps --target``, a 160 kB
wheel, into pytest's cache folder, by the ``samgeo_dir`` fixture of
``tests/support/samgeo_fixtures.py``) because its dependencies (torch, SAM) cannot be: see
``tests/support/samgeo_harness.py`` for the two stand-ins this needs. Set
``GEOLIBRE_ML_TEST_SAMGEO_DIR`` to a folder holding such an install to run offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.rasters import UTM_TRANSFORM
from support.samgeo import SAMGEO_VERSION
from support.servers import ServerProcess

from .helpers import (
    HEIGHT,
    WIDTH,
    ml_segment_form,
    run_sidecar,
    sidecar_env,
)

VERSION = SAMGEO_VERSION
BOUNDS = (
    UTM_TRANSFORM.c,
    UTM_TRANSFORM.f + HEIGHT * UTM_TRANSFORM.e,
    UTM_TRANSFORM.c + WIDTH * UTM_TRANSFORM.a,
    UTM_TRANSFORM.f,
)


@pytest.fixture(scope="module")
def sidecar(
    samgeo_api: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("samgeo-sidecar")
    env = sidecar_env(base, GEOLIBRE_ML_SAMGEO_URL=samgeo_api.url)
    with run_sidecar(base / "sidecar.log", env) as server:
        yield server


def test_it_is_samgeo_api_behind(samgeo_api: ServerProcess) -> None:
    schema = httpx.get(f"{samgeo_api.url}/openapi.json").json()
    assert schema["info"]["title"] == "samgeo API"
    assert schema["info"]["version"] == VERSION


def test_status_and_models_pass_through(sidecar: ServerProcess, samgeo_api: ServerProcess) -> None:
    direct = httpx.get(f"{samgeo_api.url}/models").json()
    assert "ready" not in direct
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is True
    assert status["version"] == VERSION
    assert status["url"] == samgeo_api.url
    assert status["models"] == direct["models"]
    assert "facebook/sam3" in status["models"]["sam3"]
    assert status["default_model"] == "sam3"  # no "ready": samgeo-api serves SAM models
    assert httpx.get(f"{sidecar.url}/ml/models").json() == direct


@pytest.mark.parametrize(
    ("mode", "fields"),
    [
        ("text", {"prompt": "water", "confidence_threshold": 0.4}),
        ("automatic", {}),
        ("predict", {"boxes": [[500100, 3999600, 500500, 3999900]], "point_crs": "EPSG:32633"}),
        ("predict", {"point_coords": [[30, 40]], "point_labels": [1]}),
    ],
)
def test_geolibre_requests_pass_through(
    sidecar: ServerProcess, samgeo_api: ServerProcess, scene_tif: Path, mode: str, fields: dict
) -> None:
    form = ml_segment_form(mode, scene_tif.read_bytes(), "scene.tif", **fields)
    via = httpx.post(f"{sidecar.url}/ml/segment/{mode}", files=form, timeout=60)
    direct = httpx.post(f"{samgeo_api.url}/segment/{mode}", files=form, timeout=60)
    assert via.status_code == direct.status_code == 200, via.text
    assert via.headers["content-type"] == direct.headers["content-type"] == "application/json"
    assert via.content == direct.content
    collection = via.json()
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert collection["features"]
    xmin, ymin, xmax, ymax = BOUNDS
    for feature in collection["features"]:
        assert feature["properties"] == {"value": 1, "score": 0.9}
        for ring in feature["geometry"]["coordinates"]:
            assert all(xmin <= x <= xmax and ymin <= y <= ymax for x, y in ring)


def test_a_mask_file_passes_through_with_its_name(
    sidecar: ServerProcess, samgeo_api: ServerProcess, scene_tif: Path
) -> None:
    form = ml_segment_form(
        "predict",
        scene_tif.read_bytes(),
        "scene.tif",
        boxes=[[10, 10, 60, 50]],
        output_format="geotiff",
    )
    via = httpx.post(f"{sidecar.url}/ml/segment/predict", files=form, timeout=60)
    direct = httpx.post(f"{samgeo_api.url}/segment/predict", files=form, timeout=60)
    assert via.status_code == 200
    assert via.headers["content-type"] == "image/tiff"
    assert via.headers["content-disposition"] == direct.headers["content-disposition"]
    assert 'filename="mask.tif"' in via.headers["content-disposition"]
    assert via.content == direct.content


def test_samgeo_errors_and_missing_jobs_pass_through(
    sidecar: ServerProcess, samgeo_api: ServerProcess, scene_tif: Path
) -> None:
    form = ml_segment_form("predict", scene_tif.read_bytes(), "scene.tif")  # no prompt at all
    via = httpx.post(f"{sidecar.url}/ml/segment/predict", files=form)
    assert via.status_code == 400
    assert via.json()["detail"] == "At least one of point_coords or boxes must be provided."
    jobs = httpx.post(f"{sidecar.url}/ml/jobs/segment/text", files=form)
    assert jobs.status_code == 404  # samgeo-api has no jobs: clients fall back to /segment
    assert httpx.get(f"{sidecar.url}/ml/jobs/abc").status_code == 404
