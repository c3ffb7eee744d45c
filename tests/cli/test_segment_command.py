"""``geolibre-ml segment`` run as a real process: formats, batches, exit codes, CRS handling.

The classic algorithms evolve; these tests check structure, georeferencing, CRS
and counts, not the exact polygons an algorithm draws.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from cli_rasters import HEIGHT, WIDTH, lake_centre_map, write_scene
from pyogrio import raw
from pyproj import CRS, Transformer

from support.rasters import UTM_TRANSFORM

UTM = CRS.from_epsg(32633)
RASTER_BOUNDS = shapely.box(
    UTM_TRANSFORM.c, UTM_TRANSFORM.f - HEIGHT * 10, UTM_TRANSFORM.c + WIDTH * 10, UTM_TRANSFORM.f
)


def read_layer(path: Path) -> tuple[np.ndarray, list[dict], CRS | None, dict]:
    """Geometries, property rows, CRS and file metadata of any output format."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        geo = json.loads(table.schema.metadata[b"geo"])
        crs_json = geo["columns"]["geometry"]["crs"]
        geoms = shapely.from_wkb(table.column("geometry").to_pylist())
        rows = table.drop(["geometry"]).to_pylist()
        return geoms, rows, CRS.from_json_dict(crs_json) if crs_json else None, geo
    meta, _fids, geometry, fields = raw.read(path)
    geoms = shapely.from_wkb(geometry)
    names = list(meta["fields"])
    rows = [{n: col[i] for n, col in zip(names, fields, strict=True)} for i in range(len(geoms))]
    return geoms, rows, CRS.from_user_input(meta["crs"]) if meta["crs"] else None, meta


def assert_clean(result: subprocess.CompletedProcess) -> None:
    """No traceback, and no progress bar when stderr is not a terminal."""
    assert "Traceback" not in result.stderr
    assert "%|" not in result.stderr


@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".fgb", ".parquet", ".shp"])
def test_each_output_format(cli, scene_tif: Path, tmp_path: Path, ext: str) -> None:
    result = cli(scene_tif, "--prompt", "water", "-o", f"water{ext}")

    assert result.returncode == 0, result.stderr
    assert_clean(result)
    out = tmp_path / f"water{ext}"
    geoms, rows, crs, _meta = read_layer(out)
    assert crs == UTM
    assert len(geoms) > 0
    assert f"{scene_tif}: {len(geoms)} feature" in result.stdout
    assert f"-> water{ext}" in result.stdout
    # Georeferenced: the polygons lie on the raster and one covers the lake's centre.
    assert shapely.contains(RASTER_BOUNDS.buffer(1e-6), geoms).all()
    assert shapely.contains(geoms, shapely.Point(lake_centre_map())).any()
    assert {r["prompt"] for r in rows} == {"water"}
    assert {r["mode"] for r in rows} == {"text"}
    assert {r["model"] for r in rows} == {"classic"}
    assert {r["source"] for r in rows} == {"scene.tif"}
    areas = np.array([r["area_m2"] for r in rows], dtype=float)
    # UTM near its central meridian: ground area within 0.1 % of the planar area.
    np.testing.assert_allclose(areas, shapely.area(geoms), rtol=1e-3)
    if ext in (".gpkg", ".fgb"):
        assert pyogrio.read_info(out)["layer_name"] == "water"


def test_several_inputs_go_to_a_folder(cli, tmp_path: Path) -> None:
    write_scene(tmp_path / "north.tif", seed=1)
    write_scene(tmp_path / "south.tif", seed=2)

    result = cli("north.tif", "south.tif", "--prompt", "water", "-o", "out", "--format", "gpkg")

    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["north.gpkg", "south.gpkg"]
    for name in ("north", "south"):
        info = pyogrio.read_info(tmp_path / "out" / f"{name}.gpkg")
        assert info["features"] > 0
        assert CRS.from_user_input(info["crs"]) == UTM
        assert f"{name}.tif: {info['features']} feature" in result.stdout
    assert "2 of 2 inputs segmented" in result.stderr


def test_no_objects_found_is_success_with_an_empty_layer(cli, scene_tif: Path, tmp_path: Path):
    result = cli(scene_tif, "--prompt", "water", "--min-size", "100000000", "-o", "none.gpkg")

    assert result.returncode == 0, result.stderr
    assert_clean(result)
    # The model server's words (one message), with the command's flags.
    assert "No objects found for the given prompt ('water')" in result.stdout
    assert "lower --confidence" in result.stdout
    assert "wrote an empty layer -> none.gpkg" in result.stdout
    info = pyogrio.read_info(tmp_path / "none.gpkg")
    assert info["features"] == 0
    assert CRS.from_user_input(info["crs"]) == UTM
    assert list(info["fields"])[:3] == ["value", "score", "area_m2"]
    assert "prompt" in list(info["fields"])


def test_a_missing_input_exits_2(cli, tmp_path: Path) -> None:
    result = cli("nowhere.tif", "-o", "out.gpkg")
    assert result.returncode == 2
    assert_clean(result)
    assert "nowhere.tif: no such file or folder" in result.stderr
    assert not (tmp_path / "out.gpkg").exists()


def test_a_bad_file_in_a_batch_is_reported_and_the_rest_written(cli, scene_tif, tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 60)  # a TIFF header, no image

    result = cli("broken.tif", scene_tif, "--prompt", "water", "-o", "out/")

    assert result.returncode == 2
    assert_clean(result)
    assert "error: broken.tif:" in result.stderr
    assert "1 of 2 inputs segmented" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["scene.geojson"]
    doc = json.loads((tmp_path / "out" / "scene.geojson").read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert len(doc["features"]) > 0


def test_bad_usage_exits_2_with_the_usage(cli, scene_tif: Path) -> None:
    result = cli(scene_tif, "--confidence", "2", "-o", "out.gpkg")
    assert result.returncode == 2
    assert "usage: geolibre-ml segment" in result.stderr
    assert "--confidence: 2 is not between 0 and 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_cannot_load_exits_1_with_how_to(cli, scene_tif: Path, tmp_path: Path):
    env = {"GEOLIBRE_ML_SAM3_MODEL": str(tmp_path / "no-such-checkpoint")}
    result = cli(scene_tif, "--model", "sam3", "--prompt", "water", "-o", "out.gpkg", env=env)
    assert result.returncode == 1
    assert_clean(result)
    assert "error:" in result.stderr and "--model=classic" in result.stderr
    assert not (tmp_path / "out.gpkg").exists()


def test_output_crs_reprojects(cli, scene_tif: Path, tmp_path: Path) -> None:
    result = cli(scene_tif, "--prompt", "water", "--output-crs", "EPSG:4326", "-o", "w.geojson")

    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "w.geojson").read_text())
    # The member the model server answers with (one GeoJSON serializer for both).
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in doc["features"]])
    to_wgs84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(*lake_centre_map())
    assert shapely.contains(geoms, shapely.Point(lon, lat)).any()
    west, south, east, north = to_wgs84.transform_bounds(*RASTER_BOUNDS.bounds)
    x, y = shapely.get_coordinates(geoms).T
    assert (x >= west - 1e-9).all() and (x <= east + 1e-9).all()
    assert (y >= south - 1e-9).all() and (y <= north + 1e-9).all()
    assert 14.9 < lon < 15.1  # UTM 33N's central meridian: longitude first


def test_boxes_in_map_coordinates_match_the_same_boxes_in_pixels(cli, scene_tif, tmp_path):
    # A box on whole pixels around the lake, in pixels and in the raster's CRS.
    px = [16, 12, 88, 72]
    (x0, y1), (x1, y0) = UTM_TRANSFORM @ (px[0], px[1]), UTM_TRANSFORM @ (px[2], px[3])

    in_pixels = cli(scene_tif, "--boxes", json.dumps([px]), "-o", "pixels.gpkg")
    in_map = cli(
        scene_tif,
        "--boxes",
        json.dumps([[x0, y0, x1, y1]]),
        "--point-crs",
        "EPSG:32633",
        "-o",
        "map.gpkg",
    )

    assert in_pixels.returncode == 0, in_pixels.stderr
    assert in_map.returncode == 0, in_map.stderr
    a, rows_a, crs_a, _ = read_layer(tmp_path / "pixels.gpkg")
    b, _rows_b, crs_b, _ = read_layer(tmp_path / "map.gpkg")
    assert crs_a == crs_b == UTM
    assert len(a) == len(b) > 0
    assert shapely.equals(a, b).all()
    assert {r["mode"] for r in rows_a} == {"predict"}
    assert shapely.contains(shapely.box(x0, y0, x1, y1).buffer(1e-6), a).all()


def test_png_gives_pixel_coordinates_without_crs(cli, scene_png: Path, tmp_path: Path) -> None:
    result = cli(scene_png, "--prompt", "water", "-o", "lake.gpkg")

    assert result.returncode == 0, result.stderr
    geoms, rows, crs, meta = read_layer(tmp_path / "lake.gpkg")
    assert crs is None
    assert len(geoms) > 0
    assert "area_m2" not in list(meta["fields"])
    assert shapely.contains(shapely.box(0, 0, WIDTH, HEIGHT), geoms).all()
    # Pixel space is x right, y down: the lake is in the upper half (small y).
    assert shapely.contains(geoms, shapely.Point(WIDTH * 0.3, HEIGHT * 0.35)).any()
    assert {r["source"] for r in rows} == {"scene.png"}


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_progress_bar_is_shown_on_a_terminal(scene_tif: Path, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    command = [sys.executable, "-m", "geolibre_ml", "segment", str(scene_tif)]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run(
            [*command, "--prompt", "water", "-o", "w.fgb"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no more writers
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "segment: 100%" in terminal and "1/1" in terminal
    assert "w.fgb" in proc.stdout  # the result line stays on stdout
