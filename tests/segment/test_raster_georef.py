"""Georeferencing of chips: north-up, south-up, rotated, GCPs, and none at all."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.control import GroundControlPoint
from rasterio.windows import Window

from geolibre_ml.segment.errors import UnreadableImage
from geolibre_ml.segment.raster import RasterSource
from support.rasters import UTM_TRANSFORM, write_raster

DATA = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)


def open_info(path: Path):
    with RasterSource(path) as src:
        return src.info, src.read_chip(Window(4, 6, 10, 5))


def test_north_up(tmp_path: Path) -> None:
    info, chip = open_info(write_raster(tmp_path / "n.tif", DATA))
    assert info.georeferencing == "geotransform" and info.crs == CRS.from_epsg(32633)
    assert info.transform == UTM_TRANSFORM
    assert chip.transform == Affine(10, 0, 500_040, 0, -10, 3_999_940)
    assert chip.crs == CRS.from_epsg(32633)
    assert info.pixel_size_m == pytest.approx(10.0)


def test_south_up(tmp_path: Path) -> None:
    transform = Affine(10, 0, 500_000, 0, 10, 3_000_000)  # rows run north
    info, chip = open_info(write_raster(tmp_path / "s.tif", DATA, transform=transform))
    assert info.transform == transform
    assert chip.transform == Affine(10, 0, 500_040, 0, 10, 3_000_060)
    assert info.pixel_size_m == pytest.approx(10.0)


def test_rotated(tmp_path: Path) -> None:
    transform = Affine.translation(500_000, 4_000_000) @ Affine.rotation(30) @ Affine.scale(2, -2)
    info, chip = open_info(write_raster(tmp_path / "r.tif", DATA, transform=transform))
    assert info.transform.almost_equals(transform)
    expected = transform @ Affine.translation(4, 6)
    assert chip.transform.almost_equals(expected)
    # The chip's corner pixel lands where the full raster puts that pixel.
    assert chip.transform @ (0, 0) == pytest.approx(transform @ (4, 6))
    assert info.pixel_size_m == pytest.approx(2.0)


def test_a_geotransform_without_a_crs(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 100, 0, -0.5, 200)
    info, chip = open_info(
        write_raster(tmp_path / "local.tif", DATA, crs=None, transform=transform)
    )
    assert info.crs is None and info.georeferenced and info.georeferencing == "geotransform"
    assert chip.transform == Affine(0.5, 0, 102, 0, -0.5, 197)
    assert info.pixel_size_m is None


def test_a_png_without_georeferencing_is_in_pixel_coordinates(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "p.png", DATA.astype(np.uint8), driver="PNG", crs=None, transform=None
    )
    info, chip = open_info(path)
    assert info.crs is None and not info.georeferenced and info.georeferencing == "none"
    assert info.transform == Affine.identity()
    assert chip.transform == Affine.translation(4, 6)
    assert info.pixel_size_m is None


def test_a_geographic_crs_gives_pixel_size_in_metres(tmp_path: Path) -> None:
    transform = Affine(0.0001, 0, 10.0, 0, -0.0001, 60.001)  # centre near 60 N
    info, _ = open_info(
        write_raster(tmp_path / "g.tif", DATA, crs="EPSG:4326", transform=transform)
    )
    metres_per_degree = math.pi * 6_371_008.8 / 180
    expected = math.sqrt(0.0001**2 * math.cos(math.radians(60.0))) * metres_per_degree
    assert info.pixel_size_m == pytest.approx(expected, rel=1e-3)


def test_a_crs_in_feet_gives_pixel_size_in_metres(tmp_path: Path) -> None:
    transform = Affine(3, 0, 980_000, 0, -3, 200_000)
    info, _ = open_info(
        write_raster(tmp_path / "ft.tif", DATA, crs="EPSG:2263", transform=transform)
    )
    assert info.pixel_size_m == pytest.approx(3 * 0.3048006, rel=1e-5)


def gcp_raster(path: Path, gcps: list[GroundControlPoint], crs: str | None = "EPSG:32633") -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=30, height=20, count=3, dtype="uint16"
    ) as dst:
        dst.write(DATA)
        dst.gcps = (gcps, rasterio.crs.CRS.from_user_input(crs) if crs else None)
    return path


def corner_gcps(transform: Affine, corners=((0, 0), (30, 0), (0, 20), (30, 20))) -> list:
    points = []
    for col, row in corners:
        x, y = transform @ (col, row)
        points.append(GroundControlPoint(row=row, col=col, x=x, y=y))
    return points


def test_gcps_only_give_the_affine_fitted_to_them(tmp_path: Path) -> None:
    truth = Affine.translation(500_000, 4_000_000) @ Affine.rotation(10) @ Affine.scale(5, -5)
    path = gcp_raster(tmp_path / "gcp.tif", corner_gcps(truth))
    with rasterio.open(path) as ds:
        assert ds.transform.is_identity and len(ds.gcps[0]) == 4
    info, chip = open_info(path)
    assert info.georeferencing == "gcps" and info.crs == CRS.from_epsg(32633)
    assert info.transform.almost_equals(truth, precision=1e-6)
    assert chip.transform.almost_equals(truth @ Affine.translation(4, 6), precision=1e-6)
    assert info.pixel_size_m == pytest.approx(5.0)


def test_gcps_no_affine_fits_are_refused(tmp_path: Path) -> None:
    truth = Affine(5, 0, 500_000, 0, -5, 4_000_000)
    points = corner_gcps(truth)
    bent = points[3]
    points[3] = GroundControlPoint(row=bent.row, col=bent.col, x=bent.x + 40, y=bent.y)
    path = gcp_raster(tmp_path / "bent.tif", points)
    with pytest.raises(UnreadableImage, match=r"misses by up to .* pixels.*gdalwarp"):
        RasterSource(path)


def test_gcps_in_a_line_are_refused(tmp_path: Path) -> None:
    truth = Affine(5, 0, 500_000, 0, -5, 4_000_000)
    path = gcp_raster(tmp_path / "line.tif", corner_gcps(truth, ((0, 0), (10, 10), (20, 20))))
    with pytest.raises(UnreadableImage, match="at least 3, not in a line"):
        RasterSource(path)


def test_a_degenerate_geotransform_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "flat.tif", DATA, transform=Affine(10, 0, 0, 0, 0, 0))
    with pytest.raises(UnreadableImage, match=r"degenerate geotransform.*gdal_edit"):
        RasterSource(path)
