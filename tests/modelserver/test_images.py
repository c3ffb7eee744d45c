"""``/images``: an image uploaded once, then prompted by its ``image_id``."""

from __future__ import annotations

from pathlib import Path

import httpx

from geolibre_ml.modelserver.images import ImageStore

from .helpers import Images, detail, segment


def keep(client: httpx.Client, path: Path) -> dict:
    response = client.post("/images", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()


def test_an_image_kept_once_is_described_and_prompted_without_its_pixels(
    client: httpx.Client, images: Images
) -> None:
    kept = keep(client, images.multispectral)
    assert kept["width"] > 0 and kept["height"] > 0 and kept["count"] == 4
    assert kept["crs"] == "EPSG:32633"
    west, south, east, north = kept["bounds_4326"]
    assert 14 < west < east < 16 and 35 < south < north < 37  # UTM 33N, near 15 E 36 N
    assert client.get(f"/images/{kept['image_id']}").json() == kept

    by_file = segment(client, "text", images.multispectral, {"prompt": "water"})
    data = {"prompt": "water", "image_id": kept["image_id"]}
    first = client.post("/segment/text", data=data)
    second = client.post("/segment/text", data=data)
    assert first.status_code == second.status_code == 200, first.text
    # The image's tiles were prepared once, by the first prompt that named it.
    assert second.headers["X-GeoLibre-Cache"] == "hit"
    assert first.json()["features"] == by_file.json()["features"]
    assert second.json()["features"] == by_file.json()["features"]

    job = client.post("/jobs/segment/text", data=data)
    assert job.status_code == 202, job.text

    assert client.delete(f"/images/{kept['image_id']}").status_code == 200
    gone = client.post("/segment/text", data=data)
    assert gone.status_code == 404 and "POST /images" in detail(gone)
    assert client.get(f"/images/{kept['image_id']}").status_code == 404
    client.delete(job.json()["status_url"])


def test_one_input_at_a_time(client: httpx.Client, images: Images) -> None:
    kept = keep(client, images.rgb_tif)
    response = client.post(
        "/segment/automatic",
        files={"file": ("a.tif", images.rgb_tif.read_bytes())},
        data={"image_id": kept["image_id"]},
    )
    assert response.status_code == 400
    assert "file and image_id" in detail(response)
    assert client.post("/images").status_code == 422  # neither file nor source
    assert client.delete(f"/images/{kept['image_id']}").status_code == 200
    assert client.delete(f"/images/{kept['image_id']}").status_code == 404


def test_an_idle_image_is_forgotten_with_its_file_and_cached_state(tmp_path: Path) -> None:
    now = [0.0]
    forgotten: list[str] = []
    store = ImageStore(10.0, forget=forgotten.append, clock=lambda: now[0])
    folder = tmp_path / "image-a"
    folder.mkdir()
    (folder / "a.tif").write_bytes(b"x")
    a = store.add(folder / "a.tif", "a.tif", "key-a", {}, folder)
    b = store.add("/data/b.tif", "b.tif", "key-b", {})
    c = store.add("/data/b.tif", "b.tif", "key-b", {})  # the same source, kept twice
    now[0] = 8.0
    assert store.get(b.image_id) is b  # used: its idle time starts again
    now[0] = 15.0
    store.sweep()
    assert store.get(a.image_id) is None and not folder.exists()
    assert forgotten == ["key-a"]
    assert store.get(b.image_id) is b and store.get(c.image_id) is None
    assert forgotten == ["key-a"]  # b still names the source: its tiles stay cached
    store.close()
    assert forgotten == ["key-a", "key-b"]
