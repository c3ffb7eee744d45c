"""Bad input: a 4xx whose detail says what is wrong, never a 5xx, no file left behind.

Each case is its own test; the ``client`` fixture fails any 500 and checks the
server's TMPDIR is empty afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from support.rasters import write_raster
from support.servers import ServerProcess

from .helpers import LAKE_BOX, Images, detail, segment

BOX = json.dumps([LAKE_BOX])


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# -- the upload itself ----------------------------------------------------------------


def test_random_bytes(client: httpx.Client) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    response = segment(client, "automatic", noise, filename="noise.tif")
    assert response.status_code == 400
    assert "'noise.tif' is not a GeoTIFF, PNG, JPEG" in detail(response)


def test_zero_size_file(client: httpx.Client) -> None:
    response = segment(client, "text", b"", {"prompt": "water"}, filename="empty.tif")
    assert response.status_code == 400
    assert "'empty.tif' is empty (0 bytes)" in detail(response)


def test_geotiff_truncated_in_its_header(client: httpx.Client, images: Images) -> None:
    head = images.rgb_tif.read_bytes()[:64]
    response = segment(client, "automatic", head, filename="cut.tif")
    assert response.status_code == 400
    message = detail(response)
    assert "cut.tif" in message and "GDAL said" in message
    assert "/tmp" not in message  # no server-side path


def test_geotiff_truncated_in_its_pixels(client: httpx.Client, images: Images) -> None:
    data = images.rgb_tif.read_bytes()
    response = segment(client, "automatic", data[: len(data) * 2 // 3], filename="cut.tif")
    assert response.status_code == 400
    assert "truncated or corrupt" in detail(response)


def test_truncated_16_bit_geotiff_fails_while_measuring_the_stretch(
    client: httpx.Client, images: Images, tmp_path: Path
) -> None:
    # GDAL's CreateCopy puts the directory first, so a cut file still opens; its 16-bit
    # data is then read for statistics when the file is opened, before any window, and
    # GDAL's read error there reaches the server unmapped by the library.
    copy = tmp_path / "ifd-first.tif"
    rasterio.shutil.copy(images.multispectral, copy, driver="GTiff")
    data = copy.read_bytes()
    response = segment(client, "automatic", data[: len(data) // 2], filename="cut16.tif")
    assert response.status_code == 400
    message = detail(response)
    assert "'cut16.tif' cannot be read" in message
    assert "GDAL said" in message and "See previous exception" not in message


def test_truncated_jpeg(client: httpx.Client, images: Images) -> None:
    data = images.jpeg.read_bytes()
    response = segment(client, "automatic", data[: len(data) // 2], filename="cut.jpg")
    assert response.status_code == 400
    assert "cut.jpg" in detail(response)


def test_truncated_png(client: httpx.Client, images: Images) -> None:
    data = images.png.read_bytes()
    response = segment(client, "automatic", data[: len(data) // 2], filename="cut.png")
    assert response.status_code == 400
    assert "cut.png" in detail(response)
    assert "truncated" in detail(response)


def test_huge_header_on_a_tiny_file_is_refused_without_allocating(
    client: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    path = tmp_path / "huge.tif"
    profile = {
        "driver": "GTiff",
        "width": 100_000,
        "height": 100_000,
        "count": 3,
        "dtype": "uint8",
        "tiled": True,
        "compress": "deflate",
        "sparse_ok": True,
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 4000000, 1, 1),
    }
    with rasterio.open(path, "w", **profile):
        pass  # no pixel written: only the header and an empty tile index
    assert path.stat().st_size < 2_000_000
    before = peak_rss_mib(server.process.pid)
    response = segment(client, "automatic", path)
    assert response.status_code == 413
    message = detail(response)
    assert "100,000 x 100,000 pixels" in message
    assert "GEOLIBRE_ML_MAX_PIXELS" in message
    # 30 GB of pixels were never allocated.
    assert peak_rss_mib(server.process.pid) - before < 200


def test_file_is_required(client: httpx.Client) -> None:
    response = client.post("/segment/automatic", data={"model_version": "classic"})
    assert response.status_code == 422
    assert "file is required" in detail(response)


def test_file_sent_as_a_text_field(client: httpx.Client) -> None:
    response = client.post("/segment/automatic", data={"file": "scene.tif"})
    assert response.status_code == 422
    assert "file must be an uploaded file" in detail(response)


def test_json_body_instead_of_a_form(client: httpx.Client) -> None:
    response = client.post("/segment/text", json={"prompt": "water"})
    assert response.status_code == 422
    assert "multipart/form-data" in detail(response)


def test_malformed_multipart_body(client: httpx.Client) -> None:
    response = client.post(
        "/segment/automatic",
        content=b"garbage",
        headers={"content-type": "multipart/form-data"},
    )
    assert response.status_code == 400
    assert "could not be read as multipart/form-data" in detail(response)


# -- prompts --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["boxes", "point_coords"])
def test_malformed_json_in_prompt_fields(client: httpx.Client, images: Images, field: str) -> None:
    response = segment(client, "predict", images.rgb_tif, {field: "[[10, 10, 50"})
    assert response.status_code == 400
    message = detail(response)
    assert f"{field} is not valid JSON" in message
    assert "[[x" in message


@pytest.mark.parametrize("field", ["boxes", "point_coords", "point_labels"])
def test_json_nested_a_thousand_deep(client: httpx.Client, images: Images, field: str) -> None:
    data = {field: "[" * 1000 + "]" * 1000}
    if field == "point_labels":
        data["point_coords"] = "[[10, 10]]"
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    assert field in detail(response) and "nested too deeply" in detail(response)


@pytest.mark.parametrize("digits", [310, 5000])
@pytest.mark.parametrize("field", ["boxes", "point_coords", "point_labels"])
def test_integers_of_hundreds_of_digits(
    client: httpx.Client, images: Images, field: str, digits: int
) -> None:
    huge = "9" * digits
    values = {"boxes": f"[[0, 0, {huge}, 10]]", "point_coords": f"[[{huge}, 1]]"}
    data = {"point_labels": f"[{huge}]", "point_coords": "[[10, 10]]"}
    if field != "point_labels":
        data = {field: values[field]}
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    message = detail(response)
    assert field in message and "too large" in message
    assert huge not in message and len(message) < 400


def test_malformed_json_in_point_labels(client: httpx.Client, images: Images) -> None:
    data = {"point_coords": "[[10, 10]]", "point_labels": "[1"}
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    assert "point_labels is not valid JSON" in detail(response)


def test_boxes_of_the_wrong_shape(client: httpx.Client, images: Images) -> None:
    response = segment(client, "predict", images.rgb_tif, {"boxes": "[[1, 2, 3]]"})
    assert response.status_code == 400
    assert "boxes must be a JSON list of 4-number lists" in detail(response)


def test_inverted_box(client: httpx.Client, images: Images) -> None:
    response = segment(client, "predict", images.rgb_tif, {"boxes": "[[50, 50, 10, 10]]"})
    assert response.status_code == 400
    assert "empty or inverted" in detail(response)


def test_box_outside_the_image(client: httpx.Client, images: Images) -> None:
    response = segment(client, "predict", images.rgb_tif, {"boxes": "[[1000, 1000, 1050, 1050]]"})
    assert response.status_code == 400
    message = detail(response)
    assert "lies outside the image" in message
    assert "point_crs" in message  # the hint about pixel versus map coordinates


def test_box_in_point_crs_outside_the_image(client: httpx.Client, images: Images) -> None:
    data = {"boxes": "[[2.0, 48.0, 2.1, 48.1]]", "point_crs": "EPSG:4326"}
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    assert "lies outside the image" in detail(response)


def test_point_outside_the_image(client: httpx.Client, images: Images) -> None:
    response = segment(client, "predict", images.rgb_tif, {"point_coords": "[[500, 500]]"})
    assert response.status_code == 400
    assert "point [500.0, 500.0] lies outside the image" in detail(response)


def test_labels_that_do_not_match_the_points(client: httpx.Client, images: Images) -> None:
    data = {"point_coords": "[[10, 10]]", "point_labels": "[1, 0]"}
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    assert "one label per point" in detail(response)


def test_predict_with_no_prompt(client: httpx.Client, images: Images) -> None:
    response = segment(client, "predict", images.rgb_tif, {"model_version": "classic"})
    assert response.status_code == 400
    message = detail(response)
    assert "predict needs a prompt" in message and "boxes" in message


def test_blank_text_prompt(client: httpx.Client, images: Images) -> None:
    response = segment(client, "text", images.rgb_tif, {"prompt": "   "})
    assert response.status_code == 400
    assert "prompt is empty" in detail(response)


def test_word_outside_the_classic_vocabulary(client: httpx.Client, images: Images) -> None:
    response = segment(client, "text", images.rgb_tif, {"prompt": "submarine"})
    assert response.status_code == 422
    message = detail(response)
    assert "'submarine'" in message and "water" in message and "sam3" in message


# -- models and formats ---------------------------------------------------------------


def test_unknown_output_format(client: httpx.Client, images: Images) -> None:
    response = segment(client, "automatic", images.rgb_tif, {"output_format": "shapefile"})
    assert response.status_code == 400
    message = detail(response)
    assert "Unknown output_format 'shapefile'" in message
    assert "geojson, geotiff, png, json, detections" in message


def test_unknown_model_version(client: httpx.Client, images: Images) -> None:
    response = segment(client, "automatic", images.rgb_tif, {"model_version": "sam2"})
    assert response.status_code == 400
    assert "Unknown model_version 'sam2'. Known versions: sam3, classic." in detail(response)


# -- options --------------------------------------------------------------------------


def test_unknown_output_crs(client: httpx.Client, images: Images) -> None:
    response = segment(client, "automatic", images.rgb_tif, {"output_crs": "EPSG:99999"})
    assert response.status_code == 400
    assert "output_crs 'EPSG:99999' is not a coordinate reference system" in detail(response)


def test_output_crs_for_an_image_without_one(client: httpx.Client, images: Images) -> None:
    response = segment(client, "automatic", images.png, {"output_crs": "EPSG:4326"})
    assert response.status_code == 400
    assert "output_crs needs a georeferenced raster" in detail(response)


def test_point_crs_for_an_image_without_one(client: httpx.Client, images: Images) -> None:
    data = {"boxes": "[[1, 1, 5, 5]]", "point_crs": "EPSG:4326"}
    response = segment(client, "predict", images.png, data)
    assert response.status_code == 400
    assert "this image has no CRS" in detail(response)


def test_unknown_point_crs(client: httpx.Client, images: Images) -> None:
    data = {"boxes": BOX, "point_crs": "nonsense"}
    response = segment(client, "predict", images.rgb_tif, data)
    assert response.status_code == 400
    assert "point_crs 'nonsense'" in detail(response)


@pytest.mark.parametrize(
    ("bands", "expected"),
    [
        ("7", "bands [7] do not exist: this raster has 3 band(s)"),
        ("red,green,blue", "must be 1-based band numbers"),
        ("1,2", "bands '1,2' lists 2 band(s)"),
        ("0,1,2", "band numbers start at 1"),
    ],
)
def test_bad_bands(client: httpx.Client, images: Images, bands: str, expected: str) -> None:
    response = segment(client, "automatic", images.rgb_tif, {"bands": bands})
    assert response.status_code == 400
    assert expected in detail(response)


def test_tile_overlap_not_smaller_than_tile_size(client: httpx.Client, images: Images) -> None:
    data = {"tile_size": "64", "tile_overlap": "64"}
    response = segment(client, "automatic", images.rgb_tif, data)
    assert response.status_code == 400
    assert "tile_overlap (64) must be smaller than tile_size (64)" in detail(response)


def test_max_size_below_min_size(client: httpx.Client, images: Images) -> None:
    data = {"min_size": "50", "max_size": "10"}
    response = segment(client, "automatic", images.rgb_tif, data)
    assert response.status_code == 400
    assert "max_size (10) is smaller than min_size (50)" in detail(response)


# -- wrong types (FastAPI's validation, as one readable sentence) ----------------------


@pytest.mark.parametrize(
    ("mode", "field", "value", "expected"),
    [
        ("text", "confidence_threshold", "high", "valid number"),
        ("text", "confidence_threshold", "1.5", "less than or equal to 1"),
        ("text", "confidence_threshold", "nan", "finite number"),
        ("automatic", "min_size", "abc", "valid integer"),
        ("automatic", "min_size", "-3", "greater than or equal to 0"),
        ("automatic", "foreground", "maybe", "valid boolean"),
        ("automatic", "points_per_side", "0", "greater than or equal to 1"),
        ("automatic", "tile_size", "big", "valid integer"),
        ("automatic", "simplify_tolerance", "-1", "greater than or equal to 0"),
        ("predict", "multimask_output", "perhaps", "valid boolean"),
    ],
)
def test_wrong_types_are_422_naming_the_field(
    client: httpx.Client, images: Images, mode: str, field: str, value: str, expected: str
) -> None:
    base = {"text": {"prompt": "water"}, "automatic": {}, "predict": {"boxes": BOX}}[mode]
    response = segment(client, mode, images.rgb_tif, {**base, field: value})
    assert response.status_code == 422
    message = detail(response)
    assert message.startswith(f"Invalid request: {field}: ")
    assert expected in message
    assert repr(value) in message


# -- no objects -----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["geojson", "json", "geotiff"])
def test_no_objects_found_is_404_as_in_samgeo(
    client: httpx.Client, images: Images, output_format: str
) -> None:
    data = {"min_size": str(10**7), "output_format": output_format}
    response = segment(client, "automatic", images.rgb_tif, data)
    assert response.status_code == 404
    assert detail(response).startswith("No objects found for automatic segmentation.")


def test_no_water_in_a_uniform_grey_image(client: httpx.Client, tmp_path: Path) -> None:
    grey = write_raster(tmp_path / "grey.tif", np.full((3, 40, 40), 128, dtype=np.uint8))
    response = segment(client, "text", grey, {"prompt": "water"})
    assert response.status_code == 404
    assert detail(response).startswith("No objects found for the given prompt.")
