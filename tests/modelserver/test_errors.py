"""The error layers, in-process: GDAL/PROJ errors on a file are 400s, a bug is a bare 500."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pyproj.exceptions import CRSError
from rasterio._err import CPLE_AppDefinedError
from rasterio.errors import RasterioIOError

from geolibre_ml.modelserver import runs
from geolibre_ml.modelserver.app import create_app
from geolibre_ml.modelserver.errors import INTERNAL_ERROR, as_segment_error
from geolibre_ml.modelserver.uploads import DEFAULT_MAX_UPLOAD_MB, max_upload_bytes_from_env
from geolibre_ml.segment.errors import ImageTooLarge, UnreadableImage, gdal_message

from .helpers import Images


@pytest.fixture
def png(images: Images) -> bytes:
    return images.png.read_bytes()


def post(client: TestClient, png: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/segment/text", files={"file": ("scene.png", png)}, data={"prompt": "water"}
    )


def test_a_bug_is_a_500_with_a_generic_detail_and_a_logged_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, png: bytes
) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("internal state")

    monkeypatch.setattr(runs, "segment_raster", broken)
    with caplog.at_level(logging.ERROR, logger="geolibre_ml.modelserver"):
        client = TestClient(create_app(), raise_server_exceptions=False)
        response = post(client, png)
    assert response.status_code == 500
    assert response.json() == {"detail": INTERNAL_ERROR}
    assert "internal state" not in response.text
    (record,) = [r for r in caplog.records if r.message.startswith("Unhandled error")]
    assert record.message == "Unhandled error on POST /segment/text"
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    # The server goes on.
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "error",
    [
        CPLE_AppDefinedError(1, 4, "/tmp/geolibre-ml-x/scene.png: TIFFReadDirectory: bad tag"),
        RasterioIOError("Read failed."),
        CRSError("Invalid projection: unknown datum"),
    ],
)
def test_gdal_and_proj_errors_on_the_file_are_400(
    monkeypatch: pytest.MonkeyPatch, png: bytes, error: Exception
) -> None:
    def raising(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(runs, "segment_raster", raising)
    client = TestClient(create_app(), raise_server_exceptions=False)
    response = post(client, png)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "'scene.png'" in detail
    assert "/tmp/" not in detail


def test_memory_errors_are_413(monkeypatch: pytest.MonkeyPatch, png: bytes) -> None:
    def raising(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise MemoryError

    monkeypatch.setattr(runs, "segment_raster", raising)
    client = TestClient(create_app(), raise_server_exceptions=False)
    response = post(client, png)
    assert response.status_code == 413
    assert "more memory than this server has free" in response.json()["detail"]


def test_as_segment_error_leaves_bugs_alone() -> None:
    assert as_segment_error(KeyError("x"), "a.tif") is None
    assert as_segment_error(ZeroDivisionError(), "a.tif") is None
    assert isinstance(as_segment_error(MemoryError(), "a.tif"), ImageTooLarge)
    assert isinstance(as_segment_error(RasterioIOError("x"), "a.tif"), UnreadableImage)


def test_gdal_message_drops_server_paths_and_follows_causes() -> None:
    assert gdal_message(RuntimeError("/tmp/geolibre-ml-1/a.tif: not a TIFF")) == "not a TIFF"
    try:
        try:
            raise CPLE_AppDefinedError(1, 1, "TIFFReadEncodedStrip() failed.")
        except CPLE_AppDefinedError as inner:
            raise RasterioIOError("Read failed. See previous exception for details.") from inner
    except RasterioIOError as outer:
        assert gdal_message(outer) == "TIFFReadEncodedStrip() failed."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("100", 100 * 1024 * 1024),
        ("0.5", 512 * 1024),
        ("", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("lots", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("0", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("-5", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("inf", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        ("nan", DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
    ],
)
def test_max_upload_from_env(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int
) -> None:
    if value is None:
        monkeypatch.delenv("GEOLIBRE_ML_MAX_UPLOAD_MB", raising=False)
    else:
        monkeypatch.setenv("GEOLIBRE_ML_MAX_UPLOAD_MB", value)
    assert max_upload_bytes_from_env() == expected
