"""Helpers for the model server's HTTP tests: test images, requests, answer parsing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import shapely
from rasterio.enums import ColorInterp

from geolibre_ml.modelserver.uploads import LOCK_NAME, UPLOADS_FOLDER
from support.rasters import UTM_TRANSFORM, scene, write_raster

HEIGHT, WIDTH = 120, 160
PIXEL = 10.0  # metres, UTM_TRANSFORM's pixel size
#: The lake of ``support.rasters.scene`` in pixels: centre (col, row) and semi-axes.
LAKE_CENTRE = (WIDTH * 0.3, HEIGHT * 0.35)
LAKE_AXES = (WIDTH * 0.18, HEIGHT * 0.2)
#: A pixel box around the lake: [xmin, ymin, xmax, ymax].
LAKE_BOX = [
    LAKE_CENTRE[0] - LAKE_AXES[0] - 4,
    LAKE_CENTRE[1] - LAKE_AXES[1] - 4,
    LAKE_CENTRE[0] + LAKE_AXES[0] + 4,
    LAKE_CENTRE[1] + LAKE_AXES[1] + 4,
]


@dataclass(frozen=True)
class Images:
    """The test images: one scene written several ways."""

    multispectral: Path  # 4-band uint16 GeoTIFF (blue, green, red, nir), UTM 33N, 10 m
    rgb_tif: Path  # 3-band uint8 GeoTIFF, same grid
    png: Path  # the RGB as PNG, no georeferencing
    jpeg: Path  # the RGB as JPEG, no georeferencing


def write_images(folder: Path) -> Images:
    """Write the scene as a multispectral GeoTIFF, an RGB GeoTIFF, a PNG and a JPEG."""
    planes = scene(HEIGHT, WIDTH, seed=7)
    reflectance = np.stack([planes[b] for b in ("blue", "green", "red", "nir")])
    multispectral = write_raster(
        folder / "scene.tif",
        (reflectance * 10000).astype("uint16"),
        descriptions=["blue", "green", "red", "nir"],
    )
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    rgb8 = np.clip(rgb / 0.45 * 255, 0, 255).astype("uint8")
    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    rgb_tif = write_raster(folder / "rgb.tif", rgb8, colorinterp=interp)
    png = write_raster(folder / "scene.png", rgb8, driver="PNG", crs=None, transform=None)
    jpeg = write_raster(
        folder / "scene.jpg", rgb8, driver="JPEG", crs=None, transform=None, quality=95
    )
    return Images(multispectral, rgb_tif, png, jpeg)


def pixel_to_map(col: float, row: float) -> tuple[float, float]:
    """Map coordinates (UTM 33N) of a pixel-grid point of the test GeoTIFFs."""
    # Spelled out: affine 3 deprecates ``transform * (x, y)`` and affine 2 lacks ``@``.
    t = UTM_TRANSFORM
    return float(t.a * col + t.b * row + t.c), float(t.d * col + t.e * row + t.f)


def segment(
    client: httpx.Client,
    mode: str,
    image: Path | bytes,
    data: dict[str, Any] | None = None,
    *,
    filename: str | None = None,
) -> httpx.Response:
    """POST ``image`` to ``/segment/{mode}`` with form fields ``data``."""
    content = image.read_bytes() if isinstance(image, Path) else image
    name = filename or (image.name if isinstance(image, Path) else "upload.tif")
    return client.post(f"/segment/{mode}", files={"file": (name, content)}, data=data or {})


def geometries(collection: dict[str, Any]) -> np.ndarray:
    """The features' geometries as shapely objects."""
    return np.array(
        [shapely.geometry.shape(f["geometry"]) for f in collection["features"]], dtype=object
    )


def detail(response: httpx.Response) -> str:
    """The ``detail`` of an error answer (which must be a JSON string)."""
    body = response.json()
    assert isinstance(body.get("detail"), str), body
    return body["detail"]


def leftovers(folder: Path, timeout: float = 0.0) -> list[str]:
    """What requests left in the server's TMPDIR ``folder`` (relative paths); waits up to
    ``timeout`` s for there to be nothing.

    The servers' own structure does not count: the uploads folder, each live server's
    process folder in it and that folder's lock file. Everything else does, above all
    a request's directory.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(_request_leftovers(folder))
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _request_leftovers(folder: Path) -> list[str]:
    found = []
    for entry in folder.iterdir():
        if entry.name != UPLOADS_FOLDER or not entry.is_dir():
            found.append(entry.name)
            continue
        for process in entry.iterdir():
            if not (process.name.isdigit() and process.is_dir()):
                found.append(f"{entry.name}/{process.name}")
                continue
            found += [
                f"{entry.name}/{process.name}/{item.name}"
                for item in process.iterdir()
                if item.name != LOCK_NAME
            ]
    return found


def no_server_errors(response: httpx.Response) -> None:
    """Fail on any 5xx but 503 (the protocol's "model not available here")."""
    if response.status_code >= 500 and response.status_code != 503:
        response.read()
        raise AssertionError(f"{response.request.url}: {response.status_code} {response.text}")


@contextlib.contextmanager
def checked_client(url: str, tmpdir: Path) -> Iterator[httpx.Client]:
    """An HTTP client for a test's model server that fails on any 5xx but 503, and,
    afterwards, checks that the server's TMPDIR ``tmpdir`` is empty."""
    with httpx.Client(
        base_url=url, timeout=120, event_hooks={"response": [no_server_errors]}
    ) as http:
        yield http
    assert leftovers(tmpdir, timeout=5) == []
