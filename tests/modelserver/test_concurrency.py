"""Concurrent requests: mixed modes at once answer exactly as one by one; one model load."""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from support.servers import ServerProcess

from .helpers import LAKE_BOX, Images, segment


def requests(images: Images) -> list[tuple[str, Any, dict[str, str]]]:
    """Eight requests: every mode, several formats, GeoTIFF and PNG, one bad input."""
    box = json.dumps([LAKE_BOX])
    return [
        ("text", images.multispectral, {"prompt": "water"}),
        ("automatic", images.rgb_tif, {"output_format": "geotiff"}),
        ("predict", images.multispectral, {"boxes": box, "output_format": "detections"}),
        ("text", images.png, {"prompt": "trees", "output_format": "json"}),
        ("automatic", images.png, {"output_format": "png", "min_size": "5"}),
        ("predict", images.rgb_tif, {"boxes": box, "output_crs": "EPSG:4326"}),
        ("text", images.multispectral, {"prompt": "water", "model_version": "sam3"}),
        ("predict", images.rgb_tif, {"boxes": "[[1000, 1000, 1001, 1001]]"}),
    ]


def comparable(response: httpx.Response) -> tuple[int, str, Any]:
    """Status, type and content of an answer, rasters decoded to arrays."""
    media = response.headers["content-type"]
    if media in ("image/tiff", "image/png"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(response.content) as memfile, memfile.open() as src:
                return response.status_code, media, src.read().tolist()
    return response.status_code, media, response.json()


def test_eight_mixed_requests_at_once_answer_as_one_by_one(
    server: ServerProcess, client: httpx.Client, images: Images
) -> None:
    batch = requests(images)
    one_by_one = [comparable(segment(client, *r)) for r in batch]
    assert [c[0] for c in one_by_one] == [200, 200, 200, 200, 200, 200, 503, 400]

    # Fresh start: the model must be loaded exactly once by the concurrent burst.
    assert client.delete("/models").status_code == 200
    loads_before = server.log().count("Loading model classic:default")

    def run(request: tuple[str, Any, dict[str, str]]) -> tuple[int, str, Any]:
        with httpx.Client(base_url=server.url, timeout=120) as own:
            return comparable(segment(own, *request))

    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        at_once = list(pool.map(run, batch))

    for (mode, _, data), expected, got in zip(batch, one_by_one, at_once, strict=True):
        assert got == expected, (mode, data)
    assert server.log().count("Loading model classic:default") == loads_before + 1
    assert client.get("/models").json()["loaded"] == [["classic", "default"]]


def test_same_file_name_at_once_shares_no_state(
    server: ServerProcess, client: httpx.Client, images: Images
) -> None:
    # Different images under one file name, at once: each answer is its own image's.
    data = {"prompt": "water"}
    uploads = [images.multispectral, images.png, images.rgb_tif] * 2
    expected = {
        path: segment(client, "text", path, data, filename="same.tif").json()
        for path in set(uploads)
    }
    assert len({json.dumps(v, sort_keys=True) for v in expected.values()}) == 3

    def run(path: Any) -> dict:
        with httpx.Client(base_url=server.url, timeout=120) as own:
            response = segment(own, "text", path, data, filename="same.tif")
            assert response.status_code == 200
            return response.json()

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        results = list(pool.map(run, uploads))
    for path, result in zip(uploads, results, strict=True):
        assert result == expected[path], path.name
