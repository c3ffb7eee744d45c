"""Error details stay short and true, whatever the client sent (issue 7, items 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from geolibre_ml.modelserver.uploads import display_name
from geolibre_ml.segment.errors import quoted
from support.rasters import write_raster

from .helpers import Images, detail, segment

#: No detail, vocabulary lists included, needs more than this to say what to fix.
SHORT = 1200


def test_quoted_keeps_short_values_and_cuts_long_ones() -> None:
    assert quoted("water") == "'water'"
    assert quoted(12) == "12"
    long = quoted("x" * 900_000)
    assert long == f"{'x' * 60!r}… (900,000 characters)"
    assert len(quoted("\x00" * 1000)) < 300  # escapes are bounded too
    assert quoted(list(range(1000))).endswith("…")
    assert len(quoted(list(range(1000)))) == 61


def test_a_huge_unknown_prompt_is_quoted_shortly(client: httpx.Client, images: Images) -> None:
    prompt = "submarine" + "e" * 900_000
    response = segment(client, "text", images.rgb_tif, {"prompt": prompt})
    assert response.status_code == 422
    message = detail(response)
    assert len(message) < SHORT
    assert "'submarineeee" in message and "…" in message
    assert "900,009 characters" in message
    assert "water" in message and "sam3" in message  # still says what to do


def test_a_file_name_over_4_kb_is_too_long_not_malformed(
    client: httpx.Client, images: Images
) -> None:
    response = segment(
        client, "text", images.png, {"prompt": "water"}, filename="a" * 5000 + ".png"
    )
    assert response.status_code == 400
    message = detail(response)
    assert "file name is too long" in message and "rename" in message.lower()
    assert "malformed" not in message
    assert len(message) < SHORT


def test_a_long_file_name_is_shortened_in_messages(client: httpx.Client) -> None:
    response = segment(client, "text", b"not an image", {"prompt": "water"}, filename="b" * 3000)
    assert response.status_code == 400
    message = detail(response)
    assert "bbbb" in message and "…" in message
    assert len(message) < SHORT


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("min_size", 422),
        ("confidence_threshold", 422),
        ("model_version", 400),
        ("model_id", 400),
        ("output_format", 400),
        ("output_crs", 400),
    ],
)
def test_huge_field_values_are_not_echoed_whole(
    client: httpx.Client, images: Images, field: str, status: int
) -> None:
    data = {"prompt": "water", field: "z" * 200_000}
    if field == "model_id":
        data["model_version"] = "classic"
    response = segment(client, "text", images.rgb_tif, data)
    assert response.status_code == status
    message = detail(response)
    assert field in message
    assert "zzzz" in message and "…" in message
    assert len(message) < SHORT


ENGINEERING_WKT = (
    'ENGCRS["Site grid of the quarry",EDATUM["Quarry datum"],CS[Cartesian,2],'
    'AXIS["easting (X)",east,ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["northing (Y)",north,ORDER[2],LENGTHUNIT["metre",1]]]'
)


def test_output_crs_for_a_raster_whose_own_crs_cannot_be_transformed(
    client: httpx.Client, tmp_path: Path
) -> None:
    data = np.zeros((3, 60, 80), np.uint8)
    data[:, 10:40, 10:50] = 200
    path = write_raster(tmp_path / "site.tif", data, crs=ENGINEERING_WKT)
    response = segment(
        client, "automatic", path, {"model_version": "classic", "output_crs": "EPSG:4326"}
    )
    assert response.status_code == 400
    message = detail(response)
    assert "raster's own CRS" in message and "cannot be transformed" in message
    assert "output_crs empty" in message and "standard CRS" in message
    assert "such as EPSG:4326" not in message
    # Without output_crs the same raster is answered in its own CRS.
    plain = segment(client, "automatic", path, {"model_version": "classic"})
    assert plain.status_code == 200


def test_display_name_keeps_real_names_and_shortens_impossible_ones() -> None:
    assert display_name("C:\\data\\scene.tif") == "scene.tif"
    real = "s" * 251 + ".tif"
    assert display_name(real) == real
    shortened = display_name("a" * 3000 + "-end.tif")
    assert len(shortened) == 255
    assert shortened.startswith("aaaa") and shortened.endswith("a-end.tif") and "…" in shortened
