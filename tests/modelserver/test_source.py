"""``source`` instead of ``file``: an http(s) URL of a COG read by range requests, or a
local path under ``GEOLIBRE_ML_DATA_ROOTS``.

A real HTTP server on loopback serves GeoTIFFs written here, answers Range requests and
counts the bytes it sends; real model servers read them. Every answer is checked for
5xx, and the servers' TMPDIRs stay empty (nothing is copied for a source).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling

from support.range_server import FileServer, serve_folder
from support.rasters import UTM_TRANSFORM, scene
from support.servers import ServerProcess, run_server

from .helpers import LAKE_BOX, Images, checked_client, detail, segment

CLASSIC = {"model_version": "classic"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Iterator[FileServer]:
    """An HTTP server on loopback serving the RGB test GeoTIFF and a large tiled one."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "rgb.tif").write_bytes(images.rgb_tif.read_bytes())
    write_large_cog(folder / "large.tif")
    with serve_folder(folder) as server:
        yield server


LARGE = 2048


def write_large_cog(path: Path) -> None:
    """A 2048 x 2048 RGB uint8 GeoTIFF laid out as a COG: 256 px tiles, overviews,
    compressed. Noise keeps tiles from compressing to nothing, so that reading a few
    of them is a small part of the file."""
    planes = scene(LARGE, LARGE, seed=3)
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    noise = np.random.default_rng(0).normal(0, 0.02, rgb.shape)
    rgb8 = np.clip((rgb + noise) / 0.45 * 255, 0, 255).astype("uint8")
    profile = {
        "driver": "GTiff",
        "width": LARGE,
        "height": LARGE,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": UTM_TRANSFORM,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb8)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        dst.build_overviews([2, 4, 8], Resampling.average)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Path:
    """An allowed folder holding the RGB test image; beside it, a folder that is not."""
    base = tmp_path_factory.mktemp("data")
    root = base / "root"
    root.mkdir()
    (root / "rgb.tif").write_bytes(images.rgb_tif.read_bytes())
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.tif").write_bytes(images.rgb_tif.read_bytes())
    (root / "link.tif").symlink_to(outside / "secret.tif")
    return root


@pytest.fixture(scope="module")
def rooted_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rooted-tmp")


@pytest.fixture(scope="module")
def rooted_server(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path, rooted_tmpdir: Path
) -> Iterator[ServerProcess]:
    """A model server whose data root is ``data_root``."""
    log_path = tmp_path_factory.mktemp("rooted-log") / "model-server.log"
    env = {"TMPDIR": str(rooted_tmpdir), "GEOLIBRE_ML_DATA_ROOTS": f"/nonexistent:{data_root}"}
    with run_server(["model-server"], log_path=log_path, env=env) as process:
        yield process
        log = process.log()
    assert "Traceback" not in log, log
    assert "secret" not in log, log


@pytest.fixture
def rooted(rooted_server: ServerProcess, rooted_tmpdir: Path) -> Iterator[httpx.Client]:
    with checked_client(rooted_server.url, rooted_tmpdir) as http:
        yield http


def post_source(
    client: httpx.Client, mode: str, source: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """POST ``/segment/{mode}`` with ``source`` and no file (still a multipart form)."""
    return client.post(
        f"/segment/{mode}",
        data={"source": source, **CLASSIC, **(data or {})},
        files={"unused": ("", b"")},
    )


def features(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["features"]


def same_answer(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) > 0
    for fa, fb in zip(a, b, strict=True):
        assert fa["geometry"] == fb["geometry"]
        assert fa["properties"] == fb["properties"]


# -- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "data"),
    [("text", {"prompt": "water"}), ("automatic", {})],
)
def test_url_answers_like_the_upload(
    client: httpx.Client, files: FileServer, images: Images, mode: str, data: dict[str, Any]
) -> None:
    uploaded = features(segment(client, mode, images.rgb_tif, {**CLASSIC, **data}))
    files.served.reset()
    remote = features(post_source(client, mode, f"{files.url}/rgb.tif", data))
    same_answer(uploaded, remote)
    assert remote[0]["properties"]["source"] == "rgb.tif"
    # Read by range requests, never asked for whole.
    assert files.served.requests
    assert all("bytes=" in r for r in files.served.requests if r.startswith("GET")), (
        files.served.requests
    )


def test_a_box_on_a_large_cog_reads_a_small_part(client: httpx.Client, files: FileServer) -> None:
    size = (files.folder / "large.tif").stat().st_size
    files.served.reset()
    box = [100, 100, 100 + LAKE_BOX[2] - LAKE_BOX[0], 100 + LAKE_BOX[3] - LAKE_BOX[1]]
    response = post_source(
        client, "predict", f"{files.url}/large.tif", {"boxes": f"[{box}]", "box_mode": "object"}
    )
    assert response.status_code in (200, 404), response.text
    sent = files.served.bytes_sent.get("large.tif", 0)
    assert 0 < sent < size / 3, (sent, size)


def test_url_not_found(client: httpx.Client, files: FileServer) -> None:
    response = post_source(client, "automatic", f"{files.url}/missing.tif")
    assert response.status_code == 400
    message = detail(response)
    assert "404" in message
    assert "missing.tif" in message


def test_credentials_never_echoed(
    client: httpx.Client, server: ServerProcess, files: FileServer
) -> None:
    host = files.url.removeprefix("http://")
    for url in (
        f"http://alice:hunter2secret@{host}/missing.tif",  # the server answers 404
        "http://alice:hunter2secret@127.0.0.1:1/scene.tif",  # nobody listens
        "ftp://alice:hunter2secret@example.com/scene.tif",  # refused scheme
    ):
        response = post_source(client, "automatic", url)
        assert 400 <= response.status_code < 500, response.text
        assert "hunter2secret" not in response.text
        assert "alice" not in response.text
    assert "hunter2secret" not in server.log()


def test_credentials_are_sent(client: httpx.Client, files: FileServer, images: Images) -> None:
    host = files.url.removeprefix("http://")
    uploaded = features(segment(client, "text", images.rgb_tif, {**CLASSIC, "prompt": "water"}))
    remote = features(
        post_source(client, "text", f"http://bob:pw@{host}/rgb.tif", {"prompt": "water"})
    )
    same_answer(uploaded, remote)


def test_not_a_geotiff(client: httpx.Client, files: FileServer, images: Images) -> None:
    (files.folder / "scene.png").write_bytes(images.png.read_bytes())
    response = post_source(client, "automatic", f"{files.url}/scene.png")
    assert response.status_code == 400
    assert "not a GeoTIFF" in detail(response)


@pytest.mark.parametrize(
    "source", ["file:///etc/hosts", "ftp://example.com/x.tif", "/vsicurl/http://x/y.tif"]
)
def test_other_schemes_refused(client: httpx.Client, source: str) -> None:
    response = post_source(client, "automatic", source)
    assert response.status_code == 403
    assert "source" in detail(response)


def test_url_cache_key_follows_the_content(
    client: httpx.Client, files: FileServer, images: Images
) -> None:
    url = f"{files.url}/changing.tif"
    target = files.folder / "changing.tif"
    target.write_bytes(images.rgb_tif.read_bytes())
    first = post_source(client, "text", url, {"prompt": "water"})
    again = post_source(client, "text", url, {"prompt": "water"})
    assert first.headers["X-GeoLibre-Cache"] == "miss"
    assert again.headers["X-GeoLibre-Cache"] == "hit"
    # New content, new ETag: prepared again.
    with rasterio.open(images.rgb_tif) as src:
        flipped = src.read()[:, ::-1, :]
        profile = src.profile
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(flipped)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = post_source(client, "text", url, {"prompt": "water"})
    assert changed.headers["X-GeoLibre-Cache"] == "miss"
    assert features(changed)[0]["geometry"] != features(first)[0]["geometry"]


# -- local paths -------------------------------------------------------------------------


def test_no_roots_no_paths(client: httpx.Client, images: Images) -> None:
    response = post_source(client, "automatic", str(images.rgb_tif))
    assert response.status_code == 403
    assert "GEOLIBRE_ML_DATA_ROOTS" in detail(response)


def test_path_inside_the_root(rooted: httpx.Client, data_root: Path, images: Images) -> None:
    uploaded = features(segment(rooted, "text", images.rgb_tif, {**CLASSIC, "prompt": "water"}))
    local = features(post_source(rooted, "text", str(data_root / "rgb.tif"), {"prompt": "water"}))
    same_answer(uploaded, local)
    # The same file by another spelling that stays inside the root.
    dotted = str(data_root / "sub" / ".." / "rgb.tif")
    same_answer(local, features(post_source(rooted, "text", dotted, {"prompt": "water"})))


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink"])
def test_paths_out_of_the_root_refused(rooted: httpx.Client, data_root: Path, where: str) -> None:
    secret = data_root.parent / "outside" / "secret.tif"
    source = {
        "outside": str(secret),
        "dotdot": f"{data_root}/../outside/secret.tif",
        "symlink": str(data_root / "link.tif"),
    }[where]
    response = post_source(rooted, "automatic", source)
    assert response.status_code == 403
    message = detail(response)
    assert "GEOLIBRE_ML_DATA_ROOTS" in message
    assert "secret" not in message  # neither the path given nor where it leads


def test_missing_file_in_the_root(rooted: httpx.Client, data_root: Path) -> None:
    response = post_source(rooted, "automatic", str(data_root / "nope.tif"))
    assert response.status_code == 400
    assert "does not exist" in detail(response)


def test_relative_path(rooted: httpx.Client) -> None:
    response = post_source(rooted, "automatic", "rgb.tif")
    assert response.status_code == 400
    assert "absolute" in detail(response)


def test_path_cache_key_follows_the_content(
    rooted: httpx.Client, data_root: Path, images: Images
) -> None:
    target = data_root / "edited.tif"
    target.write_bytes(images.rgb_tif.read_bytes())
    first = post_source(rooted, "text", str(target), {"prompt": "water"})
    again = post_source(rooted, "text", str(target), {"prompt": "water"})
    assert (first.headers["X-GeoLibre-Cache"], again.headers["X-GeoLibre-Cache"]) == (
        "miss",
        "hit",
    )
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = post_source(rooted, "text", str(target), {"prompt": "water"})
    assert touched.headers["X-GeoLibre-Cache"] == "miss"


# -- file and source ----------------------------------------------------------------------


def test_file_and_source_together(client: httpx.Client, images: Images, files: FileServer) -> None:
    response = client.post(
        "/segment/automatic",
        files={"file": ("rgb.tif", images.rgb_tif.read_bytes())},
        data={"source": f"{files.url}/rgb.tif", **CLASSIC},
    )
    assert response.status_code == 400
    message = detail(response)
    assert "file" in message and "source" in message and "not file and source" in message


def test_neither_file_nor_source(client: httpx.Client) -> None:
    response = client.post("/segment/automatic", data=CLASSIC)
    assert response.status_code == 422
    assert "file is required" in detail(response)
