"""``geolibre-ml segment URL``: http(s) URLs of GeoTIFFs read by range requests (the
same ``/vsicurl/`` opening as the model server's ``source``), served by a real HTTP
server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from cli_rasters import write_scene

from support.range_server import serve_folder


def test_a_url_is_segmented_like_the_file(cli, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    scene = write_scene(served / "scene.tif")
    local = cli(scene, "--prompt", "water", "-o", "local.geojson")
    assert local.returncode == 0, local.stderr
    with serve_folder(served) as files:
        url = f"{files.url}/scene.tif"
        remote = cli(url, "--prompt", "water", "-o", "remote.geojson")
        gets = [r for r in files.served.requests if r.startswith("GET")]
    assert remote.returncode == 0, remote.stderr
    assert "Traceback" not in remote.stderr
    assert f"{url}: " in remote.stdout
    assert gets and all("bytes=" in r for r in gets), gets
    a = json.loads((tmp_path / "local.geojson").read_text())["features"]
    b = json.loads((tmp_path / "remote.geojson").read_text())["features"]
    assert len(a) == len(b) > 0
    assert [f["geometry"] for f in a] == [f["geometry"] for f in b]
    assert {f["properties"]["source"] for f in b} == {"scene.tif"}


def test_a_missing_url_exits_2_without_credentials(cli, tmp_path: Path) -> None:
    with serve_folder(tmp_path) as files:
        host = files.url.removeprefix("http://")
        result = cli(f"http://ann:s3cret@{host}/nope.tif", "--prompt", "water", "-o", "o.geojson")
    assert result.returncode == 2, result.stderr
    assert "404" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "o.geojson").exists()


def test_other_schemes_exit_2(cli, tmp_path: Path) -> None:
    result = cli("ftp://example.com/scene.tif", "--prompt", "water", "-o", "o.geojson")
    assert result.returncode == 2
    assert "only http:// and https:// URLs" in result.stderr
