"""The committed example image is what examples/README.md says, and segments as shown there."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
import rasterio
from pyproj import CRS

from geolibre_ml import cli

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample.tif"


def test_the_sample_is_a_small_four_band_utm_geotiff() -> None:
    assert SAMPLE.stat().st_size < 1024 * 1024
    with rasterio.open(SAMPLE) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (512, 512, 4, "uint8")
        assert ds.crs.to_epsg() == 32632
        assert ds.res == (1.0, 1.0)
        assert ds.descriptions == ("red", "green", "blue", "nir")
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue", "undefined"]
        assert ds.compression.name == "deflate"
        assert "Synthetic" in ds.tags()["TIFFTAG_IMAGEDESCRIPTION"]
        red, nir = ds.read(1).astype(float), ds.read(4).astype(float)
    # Plausible spectra: the lake centre absorbs NIR, the forest in the north-west reflects it.
    assert nir[128, 100] < 15 and nir[128, 100] < red[128, 100] + 5
    assert nir[10:60, 10:60].mean() > 2 * red[10:60, 10:60].mean()


@pytest.mark.parametrize(
    "options",
    [
        ["--prompt", "water"],
        ["--boxes", "[[431550, 5362640, 431620, 5362740]]", "--point-crs", "EPSG:32632"],
    ],
)
def test_the_readme_commands_find_objects(tmp_path: Path, options: list[str]) -> None:
    out = tmp_path / "out.gpkg"
    assert cli.main(["segment", str(SAMPLE), *options, "-o", str(out), "-q"]) == 0
    info = pyogrio.read_info(out)
    assert info["features"] > 0
    assert CRS.from_user_input(info["crs"]) == CRS.from_epsg(32632)
