"""Bad input is answered with a library error that says what is wrong, never a crash."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geolibre_ml.segment.errors import ImageTooLarge, SegmentError, UnreadableImage
from geolibre_ml.segment.raster import DEFAULT_MAX_PIXELS, RasterSource, max_pixels_from_env
from support.rasters import write_raster


def refused(path: Path, error: type[SegmentError], **kwargs) -> str:
    """Open and read ``path``; return the error's detail, checked free of server paths."""
    with pytest.raises(error) as caught, RasterSource(path, **kwargs) as src:
        src.read_chip()
    detail = caught.value.detail
    assert str(path.parent) not in detail and "/tmp" not in detail
    assert repr(path.name) in detail or repr(kwargs.get("name")) in detail
    return detail


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    assert "is empty (0 bytes)" in refused(path, UnreadableImage)


def test_a_missing_file(tmp_path: Path) -> None:
    assert "Cannot read" in refused(tmp_path / "gone.tif", UnreadableImage)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    assert "not a GeoTIFF, PNG, JPEG or WebP image" in refused(path, UnreadableImage)


def test_random_bytes_behind_a_tiff_signature(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"II*\x00" + np.random.default_rng(4).bytes(4096))
    detail = refused(path, UnreadableImage)
    assert "complete and uncorrupted" in detail and "GDAL said" in detail


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.tif", b"These are my field notes, not an image.\n"),
        ("archive.tif", b"PK\x03\x04" + bytes(100)),
        ("scene.tfw", b"10.0\n0.0\n0.0\n-10.0\n500005.0\n3999995.0\n"),
    ],
)
def test_files_that_are_not_images(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    detail = refused(path, UnreadableImage)
    assert "not a GeoTIFF, PNG, JPEG or WebP image" in detail and "archive" in detail


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_a_truncated_geotiff_fails_on_read(tmp_path: Path, dtype: str) -> None:
    # The header is intact (the file opens), the pixel data is cut short. 16-bit
    # data fails while measuring the stretch, 8-bit data when the chip is read.
    data = np.random.default_rng(5).integers(1, 250, (3, 200, 200)).astype(dtype)
    full = write_raster(tmp_path / "full.tif", data)
    path = tmp_path / "cut.tif"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with rasterio.open(path) as ds:
        assert ds.shape == (200, 200)
    detail = refused(path, UnreadableImage, name="scene.tif")
    assert "'scene.tif' cannot be read: the file is truncated or corrupt" in detail
    assert "GDAL said:" in detail and "cut.tif" not in detail


def test_a_huge_header_on_a_tiny_sparse_file_is_refused_before_any_allocation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=100_000,
        height=100_000,
        count=3,
        dtype="uint16",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        SPARSE_OK=True,
    ):
        pass  # no pixel written: tile offsets only
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as caught:
            RasterSource(path, name="huge.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    detail = caught.value.detail
    assert "100,000 x 100,000 pixels" in detail and "GEOLIBRE_ML_MAX_PIXELS" in detail


def test_a_huge_png_header_is_refused(tmp_path: Path) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
    path = tmp_path / "huge.png"
    path.write_bytes(png + chunk(b"IEND", b""))
    assert "100,000 x 100,000 pixels" in refused(path, ImageTooLarge)


def test_the_pixel_cap_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_raster(tmp_path / "small.tif", np.ones((1, 100, 100), np.uint8))
    assert "at most 0 megapixels" in refused(path, ImageTooLarge, max_pixels=9_999)
    monkeypatch.setenv("GEOLIBRE_ML_MAX_PIXELS", "9999")
    assert max_pixels_from_env() == 9_999
    refused(path, ImageTooLarge)
    monkeypatch.setenv("GEOLIBRE_ML_MAX_PIXELS", "lots")
    assert max_pixels_from_env() == DEFAULT_MAX_PIXELS


def test_complex_data(tmp_path: Path) -> None:
    data = (np.ones((1, 8, 8)) * (1 + 2j)).astype(np.complex64)
    path = write_raster(tmp_path / "slc.tif", data)
    assert "complex numbers" in refused(path, UnreadableImage)


def test_gdal_messages_lose_the_server_paths() -> None:
    from geolibre_ml.segment.errors import gdal_message

    upload = Path("/srv/tmp/upload-1234/upload.tif")
    said = "/srv/tmp/upload-1234/upload.tif, band 1: read 1/2 of /var/cache/x.ovr; upload.tif"
    paths = [str(upload), upload.name]
    assert gdal_message(RuntimeError(said), paths=paths, name="scene.tif") == (
        "scene.tif, band 1: read 1/2 of x.ovr; scene.tif"
    )


def test_a_truncated_png_is_refused(tmp_path: Path) -> None:
    # GDAL reads a cut PNG as zeros without an error: the library must notice.
    rng = np.random.default_rng(0)
    png = write_raster(
        tmp_path / "whole.png",
        rng.integers(0, 255, (3, 200, 200), dtype=np.uint8),
        crs=None,
        transform=None,
        driver="PNG",
    )
    data = png.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated PNG"):
        RasterSource(cut)
    # The whole file, and one with bytes after its end chunk, still read.
    (tmp_path / "trailing.png").write_bytes(data + b"\0" * 100)
    for path in (png, tmp_path / "trailing.png"):
        with RasterSource(path) as src:
            assert src.read_chip().rgb.shape == (200, 200, 3)
