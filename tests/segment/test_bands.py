"""Which band is red, green, blue, NIR and SWIR: from names, wavelengths, sensors, colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from geolibre_ml.segment.errors import InvalidRequest
from geolibre_ml.segment.raster import RasterInfo, RasterSource
from support.rasters import write_raster

S2_NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
S2_ROLES = {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir1": 12, "swir2": 13}
OLI_ROLES = {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir1": 6, "swir2": 7}
TM_ROLES = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 7}
CI = ColorInterp


def inspect(
    tmp_path: Path, count: int, *, dtype: str = "uint16", bands=None, **kwargs
) -> RasterInfo:
    """Write a small ``count``-band raster with the given metadata and open it."""
    data = (np.arange(count * 64).reshape(count, 8, 8) % 200 + 10).astype(dtype)
    path = write_raster(tmp_path / "bands.tif", data, **kwargs)
    with RasterSource(path, bands=bands) as src:
        return src.info


# -- sensor band names ----------------------------------------------------------------


def test_sentinel2_names_identify_every_role(tmp_path: Path) -> None:
    info = inspect(tmp_path, 13, descriptions=S2_NAMES)
    assert info.spectral_bands == S2_ROLES
    assert info.rgb_bands == (4, 3, 2)


def test_zero_padded_sentinel2_names_of_an_l2a_stack(tmp_path: Path) -> None:
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    info = inspect(tmp_path, 12, descriptions=names)
    assert info.spectral_bands == {
        "blue": 2,
        "green": 3,
        "red": 4,
        "nir": 8,
        "swir1": 11,
        "swir2": 12,
    }


def test_sentinel2_names_as_gdal_sentinel2_driver_writes_them(tmp_path: Path) -> None:
    names = [
        "B8, central wavelength 842 nm",
        "B4, central wavelength 665 nm",
        "B3, central wavelength 560 nm",
        "B2, central wavelength 490 nm",
    ]
    info = inspect(tmp_path, 4, descriptions=names)
    assert info.spectral_bands == {"blue": 4, "green": 3, "red": 2, "nir": 1}
    assert info.rgb_bands == (2, 3, 4)


def test_landsat_8_collection_2_surface_reflectance(tmp_path: Path) -> None:
    names = [f"SR_B{i}" for i in range(1, 8)] + ["ST_B10", "QA_PIXEL"]
    info = inspect(tmp_path, 9, descriptions=names)
    assert info.spectral_bands == OLI_ROLES
    assert info.rgb_bands == (4, 3, 2)


def test_landsat_5_collection_2_surface_reflectance(tmp_path: Path) -> None:
    names = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7"]
    info = inspect(tmp_path, 7, descriptions=names)
    assert info.spectral_bands == TM_ROLES
    assert info.rgb_bands == (3, 2, 1)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"SPACECRAFT_ID": "LANDSAT_5"}, TM_ROLES),
        ({"SPACECRAFT_ID": "LANDSAT_7", "SENSOR_ID": "ETM"}, TM_ROLES),
        ({"SPACECRAFT_ID": "LANDSAT_8"}, OLI_ROLES),
        ({"LANDSAT_PRODUCT_ID": "LC09_L2SP_044034_20220111_20220113_02_T1"}, OLI_ROLES),
        ({"LANDSAT_SCENE_ID": "LT50440342011100PAC01"}, TM_ROLES),
        # Landsat 1-5 MSS numbers its bands differently again: no role at all.
        ({"SPACECRAFT_ID": "LANDSAT_5", "SENSOR_ID": "MSS"}, {}),
        ({}, {}),
    ],
)
def test_plain_landsat_names_follow_the_sensor_named_in_the_metadata(
    tmp_path: Path, tags: dict[str, str], expected: dict[str, int]
) -> None:
    info = inspect(tmp_path, 7, descriptions=[f"B{i}" for i in range(1, 8)], tags=tags)
    assert info.spectral_bands == expected


def test_names_shared_by_sensors_count_only_where_the_sensors_agree(tmp_path: Path) -> None:
    # B1-B11 without metadata: Sentinel-2 or Landsat 8 (B9-B11 rule out TM). Both
    # say B2-B4 are blue, green, red; they disagree on B5-B8 and B11.
    info = inspect(tmp_path, 11, descriptions=[f"B{i}" for i in range(1, 12)])
    assert info.spectral_bands == {"blue": 2, "green": 3, "red": 4}


def test_a_common_four_band_export_is_ambiguous_without_metadata(tmp_path: Path) -> None:
    # B2, B3, B4, B8 is Sentinel-2 blue, green, red, NIR, but Landsat 7's green,
    # red, NIR and panchromatic: no role is assigned and the bands are shown in order.
    names = ["B2", "B3", "B4", "B8"]
    info = inspect(tmp_path, 4, descriptions=names)
    assert info.spectral_bands == {}
    assert info.rgb_bands == (1, 2, 3)
    named = inspect(tmp_path, 4, descriptions=names, tags={"SPACECRAFT_NAME": "Sentinel-2B"})
    assert named.spectral_bands == {"blue": 1, "green": 2, "red": 3, "nir": 4}
    assert named.rgb_bands == (3, 2, 1)


def test_generic_band_numbers_are_not_sensor_names(tmp_path: Path) -> None:
    info = inspect(tmp_path, 4, descriptions=["Band 1", "Band 2", "Band 3", "Band 4"])
    assert info.spectral_bands == {}
    assert info.rgb_bands == (1, 2, 3)


# -- common names and wavelengths ------------------------------------------------------------


def test_stac_common_names(tmp_path: Path) -> None:
    names = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir11"]
    info = inspect(tmp_path, 8, descriptions=names)
    assert info.spectral_bands == OLI_ROLES
    assert info.rgb_bands == (4, 3, 2)


def test_everyday_names_in_any_case(tmp_path: Path) -> None:
    names = ["Near Infrared", "Red", "GREEN", "Blue (450-510 nm)", "SWIR_1"]
    info = inspect(tmp_path, 5, descriptions=names)
    assert info.spectral_bands == {"blue": 4, "green": 3, "red": 2, "nir": 1, "swir1": 5}


def test_red_edge_is_not_red(tmp_path: Path) -> None:
    # Even in a file whose colour interpretation says red, green, blue.
    names = ["Red Edge 1", "rededge", "red-edge 3"]
    info = inspect(tmp_path, 3, dtype="uint8", photometric="RGB", descriptions=names)
    assert info.spectral_bands == {}
    assert info.rgb_bands == (1, 2, 3)


def test_central_wavelengths_in_the_imagery_domain(tmp_path: Path) -> None:
    micrometres = [0.842, 0.705, 0.665, 0.56, 0.49, 0.443, 1.61, 2.19]
    band_tags = {
        i: {"ns": "IMAGERY", "CENTRAL_WAVELENGTH_UM": str(um)}
        for i, um in enumerate(micrometres, start=1)
    }
    info = inspect(tmp_path, 8, band_tags=band_tags)
    assert info.spectral_bands == {
        "blue": 5,
        "green": 4,
        "red": 3,
        "nir": 1,
        "swir1": 7,
        "swir2": 8,
    }
    assert info.rgb_bands == (3, 4, 5)


def test_wavelength_band_tags_in_nanometres(tmp_path: Path) -> None:
    band_tags = {
        1: {"WAVELENGTH": "665", "WAVELENGTH_UNIT": "nm"},
        2: {"WAVELENGTH": "560", "WAVELENGTH_UNIT": "nm"},
        3: {"WAVELENGTH": "490", "WAVELENGTH_UNIT": "nm"},
        4: {"WAVELENGTH": "865", "WAVELENGTH_UNIT": "nm"},
    }
    info = inspect(tmp_path, 4, band_tags=band_tags)
    assert info.spectral_bands == {"blue": 3, "green": 2, "red": 1, "nir": 4}


def test_a_hyperspectral_cube_uses_the_band_nearest_each_reference(tmp_path: Path) -> None:
    micrometres = np.round(np.arange(0.40, 2.45, 0.01), 3)
    band_tags = {
        i: {"ns": "IMAGERY", "CENTRAL_WAVELENGTH_UM": f"{um:.3f}"}
        for i, um in enumerate(micrometres, start=1)
    }
    info = inspect(tmp_path, len(micrometres), band_tags=band_tags)
    chosen = {role: float(micrometres[band - 1]) for role, band in info.spectral_bands.items()}
    assert chosen == pytest.approx(
        {"blue": 0.49, "green": 0.56, "red": 0.665, "nir": 0.85, "swir1": 1.61, "swir2": 2.2},
        abs=0.006,
    )


# -- colour interpretation and conventions -----------------------------------------------


def test_colour_interpretation_in_any_order(tmp_path: Path) -> None:
    info = inspect(tmp_path, 3, colorinterp=[CI.blue, CI.green, CI.red])
    assert info.spectral_bands == {"blue": 1, "green": 2, "red": 3}
    assert info.rgb_bands == (3, 2, 1)


def test_gdal_nir_colour_interpretation(tmp_path: Path) -> None:
    info = inspect(tmp_path, 4, colorinterp=[CI.red, CI.green, CI.blue, CI.nir])
    assert info.spectral_bands["nir"] == 4


def test_naip_four_bands_are_red_green_blue_nir(tmp_path: Path) -> None:
    info = inspect(tmp_path, 4, dtype="uint8", photometric="RGB")
    assert info.spectral_bands == {"blue": 3, "green": 2, "red": 1, "nir": 4}
    assert info.rgb_bands == (1, 2, 3)


def test_rgba_has_no_nir(tmp_path: Path) -> None:
    info = inspect(tmp_path, 4, dtype="uint8", colorinterp=[CI.red, CI.green, CI.blue, CI.alpha])
    assert info.spectral_bands == {"blue": 3, "green": 2, "red": 1}
    assert info.rgb_bands == (1, 2, 3)


def test_four_unlabelled_bands_have_no_roles(tmp_path: Path) -> None:
    info = inspect(tmp_path, 4, photometric="MINISBLACK")
    assert info.spectral_bands == {}
    assert info.rgb_bands == (1, 2, 3)


@pytest.mark.parametrize(("count", "expected"), [(1, (1, 1, 1)), (2, (1, 1, 1)), (6, (1, 2, 3))])
def test_without_metadata_the_first_bands_are_shown(
    tmp_path: Path, count: int, expected: tuple[int, int, int]
) -> None:
    info = inspect(tmp_path, count, photometric="MINISBLACK")
    assert info.spectral_bands == {}
    assert info.rgb_bands == expected


def test_grey_and_alpha_shows_the_grey_band(tmp_path: Path) -> None:
    info = inspect(tmp_path, 2, dtype="uint8", colorinterp=[CI.gray, CI.alpha])
    assert info.rgb_bands == (1, 1, 1)


# -- false colour and explicit bands ---------------------------------------------------------


def test_a_false_colour_composite_is_shown_in_true_colour(tmp_path: Path) -> None:
    # Stored as a colour-infrared picture (photometric RGB = NIR, red, green) but
    # described band by band: the descriptions win over the colour interpretation.
    info = inspect(
        tmp_path, 4, dtype="uint8", photometric="RGB", descriptions=["nir", "red", "green", "blue"]
    )
    assert info.spectral_bands == {"blue": 4, "green": 3, "red": 2, "nir": 1}
    assert info.rgb_bands == (2, 3, 4)


def test_a_false_colour_composite_without_blue_is_shown_as_stored(tmp_path: Path) -> None:
    info = inspect(
        tmp_path, 3, dtype="uint8", photometric="RGB", descriptions=["nir", "red", "green"]
    )
    assert info.spectral_bands == {"green": 3, "red": 2, "nir": 1}
    assert info.rgb_bands == (1, 2, 3)


def test_nir_reaches_the_backends_whatever_is_displayed(tmp_path: Path) -> None:
    data = np.stack([np.full((8, 8), v, dtype=np.uint16) for v in (4000, 800, 900, 700)])
    path = write_raster(tmp_path / "cir.tif", data, descriptions=["nir", "red", "green", "blue"])
    for bands in (None, (3, 3, 3), (1, 2, 3)):
        with RasterSource(path, bands=bands) as src:
            chip = src.read_chip()
        assert np.all(chip.spectral["nir"] == 4000)
        assert np.all(chip.spectral["red"] == 800)


def test_explicit_bands_choose_the_display_only(tmp_path: Path) -> None:
    info = inspect(tmp_path, 13, descriptions=S2_NAMES, bands=(8, 4, 3))
    assert info.rgb_bands == (8, 4, 3)
    assert info.spectral_bands == S2_ROLES
    assert inspect(tmp_path, 4, bands=(2,)).rgb_bands == (2, 2, 2)


@pytest.mark.parametrize(
    ("bands", "says"),
    [
        ((), "1 band (shown as grey) or 3 bands"),
        ((1, 2), "got 2: [1, 2]"),
        ((1, 2, 3, 4), "got 4"),
        ((0, 1, 2), "bands [0] do not exist: this raster has 4 band(s), numbered 1 to 4"),
        ((4, 5, 6), "bands [5, 6] do not exist"),
        ((-1,), "bands [-1] do not exist"),
        ((1.5, 2, 3), "whole band numbers"),
    ],
)
def test_explicit_bands_are_checked(tmp_path: Path, bands: tuple, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inspect(tmp_path, 4, bands=bands)
    assert says in caught.value.detail
