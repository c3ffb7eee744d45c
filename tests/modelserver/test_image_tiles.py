"""``/images/{id}/tiles/...`` and ``/images/{id}/preview.png``: the image as the model sees it."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from support.rasters import UTM_CRS, UTM_TRANSFORM, write_raster

from .helpers import detail

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
SIZE = 200  # pixels a side; 10 m pixels (the writers' UTM grid)


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit raster: west half 1000, east half 3000, the top 40 rows nodata (0)."""
    data = np.full((3, SIZE, SIZE), 1000, dtype=np.uint16)
    data[:, :, SIZE // 2 :] = 3000
    data[:, :40] = 0
    return write_raster(tmp_path_factory.mktemp("tiles") / "halves.tif", data, nodata=0)


def keep(client: httpx.Client, path: Path) -> dict:
    response = client.post("/images", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()


def rgba(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def pixel_of(col: float, row: float) -> tuple[float, float]:
    """Longitude and latitude of a raster pixel position (the writers' UTM grid)."""
    t = UTM_TRANSFORM
    x, y = t.c + col * t.a, t.f + row * t.e
    return Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True).transform(x, y)


def sample(client: httpx.Client, image_id: str, col: float, row: float, z: int) -> np.ndarray:
    """The RGBA value the map tile at zoom ``z`` shows at raster pixel ``(col, row)``."""
    lon, lat = pixel_of(col, row)
    tile = WEB_MERCATOR.tile(lon, lat, z)
    bounds = WEB_MERCATOR.xy_bounds(tile)
    x, y = WEB_MERCATOR.xy(lon, lat)
    i = int((x - bounds.left) / (bounds.right - bounds.left) * 256)
    j = int((bounds.top - y) / (bounds.top - bounds.bottom) * 256)
    picture = rgba(client.get(f"/images/{image_id}/tiles/{tile.z}/{tile.x}/{tile.y}.png"))
    assert picture.shape == (256, 256, 4)
    return picture[j, i]


def test_map_tiles_show_the_models_stretch_in_place_with_nodata_transparent(
    client: httpx.Client, halves: Path
) -> None:
    image_id = keep(client, halves)["image_id"]
    for z in (14, 17):  # the whole raster in a few tiles, and one tile inside it
        west = sample(client, image_id, 50, 120, z)
        east = sample(client, image_id, 150, 120, z)
        nodata = sample(client, image_id, 100, 15, z)
        # The whole raster's 2-98 % stretch: 1000 is its low end, 3000 its high end.
        assert west[3] == 255 and west[:3].max() <= 10, (z, west)
        assert east[3] == 255 and east[:3].min() >= 245, (z, east)
        assert nodata[3] == 0, (z, nodata)
    # Far from the raster: a transparent tile, not an error the map would log.
    far = rgba(client.get(f"/images/{image_id}/tiles/10/0/0.png"))
    assert far.shape == (256, 256, 4) and far[..., 3].max() == 0
    client.delete(f"/images/{image_id}")


def test_a_preview_keeps_pixel_space_and_a_picture_without_a_crs_has_no_map_tiles(
    client: httpx.Client, tmp_path: Path
) -> None:
    picture = np.zeros((3, 90, 160), dtype=np.uint8)
    picture[0, :30, :40] = 255  # red in the top-left corner
    png = write_raster(tmp_path / "photo.png", picture, crs=None, transform=None, driver="PNG")
    kept = keep(client, png)
    assert kept["crs"] is None and kept["bounds_4326"] is None
    image_id = kept["image_id"]

    whole = rgba(client.get(f"/images/{image_id}/preview.png"))
    assert whole.shape == (90, 160, 4)  # never enlarged
    assert tuple(whole[5, 5]) == (255, 0, 0, 255) and tuple(whole[80, 150]) == (0, 0, 0, 255)
    small = rgba(client.get(f"/images/{image_id}/preview.png", params={"max_size": 80}))
    assert small.shape == (45, 80, 4)
    assert tuple(small[3, 3]) == (255, 0, 0, 255)

    tiles = client.get(f"/images/{image_id}/tiles/0/0/0.png")
    assert tiles.status_code == 400 and "preview.png" in detail(tiles)
    client.delete(f"/images/{image_id}")


def test_tile_requests_that_cannot_be_answered_say_why(client: httpx.Client, halves: Path) -> None:
    image_id = keep(client, halves)["image_id"]
    bad = client.get(f"/images/{image_id}/tiles/3/8/0.png")
    assert bad.status_code == 400 and "0 to 7" in detail(bad)
    deep = client.get(f"/images/{image_id}/tiles/31/0/0.png")
    assert deep.status_code == 400 and "Zoom 31" in detail(deep)
    assert client.get(f"/images/{image_id}/preview.png?max_size=0").status_code == 422
    client.delete(f"/images/{image_id}")
    gone = client.get(f"/images/{image_id}/tiles/0/0/0.png")
    assert gone.status_code == 404 and "POST /images" in detail(gone)
