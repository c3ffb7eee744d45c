"""Reading rasters into chips: data types, band counts, validity, formats and windows."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from geolibre_ml.segment.errors import ImageTooLarge, UnreadableImage
from geolibre_ml.segment.raster import RasterSource, sniff_driver
from support.rasters import UTM_TRANSFORM, write_raster

CI = ColorInterp
with rasterio.Env() as _env:
    HAS_WEBP = "WEBP" in _env.drivers()
RGBA = [CI.red, CI.green, CI.blue, CI.alpha]


def ramp(dtype: str, low: float, high: float, bands: int = 3) -> np.ndarray:
    """``bands`` identical west-east ramps from ``low`` to ``high`` (40 x 100 pixels)."""
    plane = np.tile(np.linspace(low, high, 100), (40, 1)).astype(dtype)
    return np.stack([plane] * bands)


# -- data types and band counts ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [
        ("uint16", 0, 65_535),
        ("int16", -3000, 1500),
        ("int32", -2_000_000, 2_000_000),
        ("uint32", 0, 4_000_000_000),
        ("float32", -0.2, 0.6),
        ("float64", 1e9, 1e9 + 50),
        ("int8", -100, 100),
    ],
)
def test_every_data_type_becomes_a_full_range_8_bit_image(
    tmp_path: Path, dtype: str, low: float, high: float
) -> None:
    path = write_raster(tmp_path / f"{dtype}.tif", ramp(dtype, low, high))
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.dtype == dtype
    assert chip.rgb.dtype == np.uint8 and chip.rgb.shape == (40, 100, 3)
    row = chip.rgb[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)  # the stretch keeps the order of values
    assert chip.valid.all()


def test_uint8_values_are_shown_as_stored(tmp_path: Path) -> None:
    data = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 120, 250)])
    path = write_raster(tmp_path / "rgb.tif", data, photometric="RGB")
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert chip.rgb[0, 0].tolist() == [10, 120, 250]


def test_one_band_is_shown_as_grey(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "grey.tif", ramp("uint16", 100, 900, bands=1))
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert (chip.rgb[..., 0] == chip.rgb[..., 1]).all() and (
        chip.rgb[..., 1] == chip.rgb[..., 2]
    ).all()
    assert chip.rgb[0, 0, 0] == 0 and chip.rgb[0, -1, 0] == 255


def test_a_seven_band_landsat_stack_gives_rgb_and_spectral_bands(tmp_path: Path) -> None:
    values = [9000, 9100, 9500, 9900, 21000, 15000, 12000]
    data = np.stack([np.full((10, 10), v, np.uint16) for v in values])
    data[:, :, :5] += np.arange(5, dtype=np.uint16) * 10  # some contrast
    path = write_raster(
        tmp_path / "landsat.tif",
        data,
        descriptions=[f"SR_B{i}" for i in range(1, 8)],
    )
    with rasterio.open(path, "r+") as dst:
        dst.scales = [2.75e-05] * 7
        dst.offsets = [-0.2] * 7
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.rgb_bands == (4, 3, 2)
    assert set(chip.spectral) == {"blue", "green", "red", "nir", "swir1", "swir2"}
    # Physical values: GDAL scale and offset applied (Collection 2 reflectance).
    assert chip.spectral["nir"][0, 9] == pytest.approx(21000 * 2.75e-05 - 0.2, abs=1e-6)
    assert chip.spectral["red"].dtype == np.float32


# -- validity ---------------------------------------------------------------------------


def test_nodata_pixels_are_invalid_and_spectral_values_nan(tmp_path: Path) -> None:
    data = ramp("uint16", 100, 900, bands=4)
    data[:, :10, :10] = 0
    path = write_raster(
        tmp_path / "nodata.tif", data, nodata=0, descriptions=["red", "green", "blue", "nir"]
    )
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert not chip.valid[:10, :10].any() and chip.valid.sum() == 40 * 100 - 100
    assert (chip.rgb[:10, :10] == 0).all()
    assert np.isnan(chip.spectral["nir"][:10, :10]).all()
    assert np.isfinite(chip.spectral["nir"][10:]).all()


def test_a_value_equal_to_nodata_in_one_band_only_is_data(tmp_path: Path) -> None:
    # 8-bit imagery with nodata 0 has dark pixels with one channel at 0: they are
    # data (GDAL's dataset mask), only pixels where every band is 0 are not.
    data = np.full((4, 6, 6), 50, dtype=np.uint8)
    data[2, 0, 0] = 0  # blue 0 in dark water
    data[:, 5, 5] = 0  # the collar
    data[3, 2, 2] = 0  # NIR missing here
    path = write_raster(
        tmp_path / "dark.tif", data, nodata=0, descriptions=["red", "green", "blue", "nir"]
    )
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert chip.valid[0, 0] and chip.valid[2, 2] and not chip.valid[5, 5]
    assert chip.rgb[0, 0].tolist() == [50, 50, 0]
    # ...but a band's own nodata is never handed on as a measurement.
    assert np.isnan(chip.spectral["nir"][2, 2]) and chip.spectral["red"][2, 2] == 50
    assert np.isnan(chip.spectral["blue"][0, 0])


def test_nan_nodata(tmp_path: Path) -> None:
    data = ramp("float32", 0.0, 1.0)
    data[:, 5:8, 5:8] = np.nan
    path = write_raster(tmp_path / "nan.tif", data, nodata=float("nan"))
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert not chip.valid[5:8, 5:8].any() and chip.valid.sum() == 4000 - 9


def test_nan_in_any_band_used_is_invalid(tmp_path: Path) -> None:
    data = ramp("float32", 0.0, 1.0, bands=4)
    data[1, 0, 0] = np.nan  # green
    data[3, 1, 1] = np.inf  # NIR, not displayed
    path = write_raster(tmp_path / "nan4.tif", data, descriptions=["red", "green", "blue", "nir"])
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert not chip.valid[0, 0] and not chip.valid[1, 1] and chip.valid.sum() == 4000 - 2


def test_alpha_band(tmp_path: Path) -> None:
    data = ramp("uint8", 0, 255, bands=4)
    data[3] = 255
    data[3, :, :30] = 0
    path = write_raster(tmp_path / "rgba.tif", data, colorinterp=RGBA)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.rgb_bands == (1, 2, 3)
    assert not chip.valid[:, :30].any() and chip.valid[:, 30:].all()


def test_internal_mask_band(tmp_path: Path) -> None:
    path = tmp_path / "masked.tif"
    mask = np.full((40, 100), 255, dtype=np.uint8)
    mask[:, 60:] = 0
    data = ramp("uint16", 10, 5000)
    data[:, :, 60:] = 60_000  # garbage under the mask: must not enter the stretch
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        write_raster(path, data)
        with rasterio.open(path, "r+") as dst:
            dst.write_mask(mask)
    assert not (tmp_path / "masked.tif.msk").exists()
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.stretch.limits[1][1] < 5000
    assert chip.valid[:, :60].all() and not chip.valid[:, 60:].any()


def test_png_with_alpha(tmp_path: Path) -> None:
    data = ramp("uint8", 0, 255, bands=4)
    data[3] = 255
    data[3, 20:] = 0
    path = write_raster(tmp_path / "a.png", data, driver="PNG", crs=None, transform=None)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.rgb_bands == (1, 2, 3) and "nir" not in src.info.spectral_bands
    assert chip.valid[:20].all() and not chip.valid[20:].any()


def test_grey_and_alpha_png(tmp_path: Path) -> None:
    data = ramp("uint8", 0, 255, bands=2)
    data[1] = 255
    data[1, :, :50] = 0
    path = write_raster(tmp_path / "la.png", data, driver="PNG", crs=None, transform=None)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.rgb_bands == (1, 1, 1)
    assert chip.valid[:, 50:].all() and not chip.valid[:, :50].any()
    assert chip.rgb[0, 99].tolist() == [255, 255, 255]


def test_a_png_transparent_colour_marks_only_that_colour(tmp_path: Path) -> None:
    # PNG tRNS for RGB names one colour: GDAL's NODATA_VALUES, all bands at once.
    pil = pytest.importorskip("PIL.Image")
    pixels = np.full((4, 4, 3), 10, dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30)
    pixels[1, 1] = (10, 0, 0)
    pixels[2, 2] = (10, 20, 31)
    pil.fromarray(pixels).save(tmp_path / "trns.png", transparency=(10, 20, 30))
    with RasterSource(tmp_path / "trns.png") as src:
        chip = src.read_chip()
    assert not chip.valid[0, 0] and chip.valid.sum() == 15


# -- formats ------------------------------------------------------------------------------


def palette_data() -> tuple[np.ndarray, dict[int, tuple[int, int, int, int]]]:
    index = np.zeros((10, 10), dtype=np.uint8)
    index[:, 3:6] = 1
    index[:, 6:9] = 2
    index[:, 9] = 3
    colours = {0: (0, 0, 0, 0), 1: (200, 30, 10, 255), 2: (20, 160, 40, 255), 3: (9, 9, 9, 0)}
    return index, colours


@pytest.mark.parametrize(("driver", "name"), [("GTiff", "pal.tif"), ("PNG", "pal.png")])
def test_palette_rasters_are_expanded_through_their_colour_table(
    tmp_path: Path, driver: str, name: str
) -> None:
    index, colours = palette_data()
    path = tmp_path / name
    with rasterio.open(
        path, "w", driver=driver, width=10, height=10, count=1, dtype="uint8", photometric="palette"
    ) as dst:
        dst.write(index, 1)
        dst.write_colormap(1, colours)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.stretch.limits == {}
    assert chip.rgb[0, 4].tolist() == [200, 30, 10]
    assert chip.rgb[0, 7].tolist() == [20, 160, 40]
    if driver == "PNG":
        # PNG keeps each colour's transparency: transparent entries are no data.
        assert not chip.valid[:, :3].any() and not chip.valid[:, 9].any()
        assert chip.valid[:, 3:9].all()


def test_16_bit_png_is_stretched(tmp_path: Path) -> None:
    data = ramp("uint16", 1000, 50_000)
    path = write_raster(tmp_path / "deep.png", data, driver="PNG", crs=None, transform=None)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.dtype == "uint16"
    assert chip.rgb[0, 0, 0] == 0 and chip.rgb[0, -1, 0] == 255


def test_jpeg(tmp_path: Path) -> None:
    data = np.zeros((3, 32, 48), dtype=np.uint8)
    data[0] = 220  # red
    path = write_raster(tmp_path / "photo.jpg", data, driver="JPEG", crs=None, transform=None)
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.driver == "JPEG" and src.info.rgb_bands == (1, 2, 3)
    assert chip.rgb.shape == (32, 48, 3)
    assert abs(int(chip.rgb[16, 24, 0]) - 220) < 6 and chip.rgb[16, 24, 1] < 8


def test_a_turned_jpeg_photo_is_read_upright(tmp_path: Path) -> None:
    # A camera held sideways stores the picture as is, with EXIF Orientation 6
    # ("rotate 90 degrees clockwise to view"); browsers show it upright.
    pil = pytest.importorskip("PIL.Image")
    stored = np.zeros((32, 48, 3), dtype=np.uint8)
    stored[:8, :8] = 255  # a white block in the stored top-left corner
    image = pil.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    with RasterSource(tmp_path / "turned.jpg") as src:
        chip = src.read_chip()
    assert chip.shape == (48, 32)
    assert chip.rgb[:8, -8:].mean() > 200  # now the top-right corner
    assert chip.rgb[-8:, :8].mean() < 40


@pytest.mark.skipif(
    "WEBP" not in rasterio.drivers.raster_driver_extensions().values(), reason="no WebP"
)
def test_webp_with_alpha(tmp_path: Path) -> None:
    data = ramp("uint8", 0, 255, bands=4)
    data[3] = 255
    data[3, :, 80:] = 0
    path = write_raster(
        tmp_path / "a.webp", data, driver="WEBP", crs=None, transform=None, LOSSLESS=True
    )
    assert sniff_driver(path) == "WEBP"
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert chip.valid[:, :80].all() and not chip.valid[:, 80:].any()
    assert chip.rgb[5, 50, 0] == data[0, 5, 50]


def test_a_one_bit_tiff_is_black_and_white(tmp_path: Path) -> None:
    data = np.zeros((1, 16, 16), dtype=np.uint8)
    data[0, :, 8:] = 1
    path = write_raster(tmp_path / "bits.tif", data, nbits=1)
    with RasterSource(path) as src:
        chip = src.read_chip()
    assert chip.rgb[0, 0, 0] == 0 and chip.rgb[0, 15, 0] == 255


# -- windows ------------------------------------------------------------------------------


def test_a_window_is_read_with_its_own_transform(tmp_path: Path) -> None:
    data = ramp("uint16", 0, 1000)
    path = write_raster(tmp_path / "w.tif", data)
    with RasterSource(path) as src:
        chip = src.read_chip(Window(30, 10, 20, 5))
        whole = src.read_chip()
    assert chip.shape == (5, 20)
    assert chip.window == Window(30, 10, 20, 5)
    assert chip.transform.c == UTM_TRANSFORM.c + 30 * 10 and chip.transform.f == 4e6 - 10 * 10
    assert (chip.transform.a, chip.transform.e) == (10.0, -10.0)
    np.testing.assert_array_equal(chip.rgb, whole.rgb[10:15, 30:50])


def test_a_window_overhanging_the_edge_is_padded_with_invalid_pixels(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "w.tif", ramp("uint8", 1, 255))
    with RasterSource(path) as src:
        chip = src.read_chip(Window(90, -5, 20, 10))
        outside = src.read_chip(Window(500, 500, 4, 4))
    assert chip.shape == (10, 20)
    assert chip.valid[5:, :10].all() and chip.valid.sum() == 50
    assert (chip.rgb[:5] == 0).all() and (chip.rgb[:, 10:] == 0).all()
    assert chip.transform.c == UTM_TRANSFORM.c + 900 and chip.transform.f == 4e6 + 50
    assert outside.shape == (4, 4) and not outside.valid.any()


def test_only_the_window_asked_for_is_read(tmp_path: Path) -> None:
    # Cut the file inside its last tiles: windows away from them still read
    # (nothing else was touched), the damaged window fails loudly.
    data = np.random.default_rng(0).integers(1, 255, (3, 256, 256), dtype=np.uint8)
    full = write_raster(tmp_path / "full.tif", data, tiled=True, blockxsize=64, blockysize=64)
    raw = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) - 4000])
    with RasterSource(cut) as src:
        chip = src.read_chip(Window(0, 0, 64, 64))
        np.testing.assert_array_equal(chip.rgb, data[:, :64, :64].transpose(1, 2, 0))
        with pytest.raises(UnreadableImage, match="truncated or corrupt"):
            src.read_chip()


def test_reading_a_window_allocates_for_that_window_only(tmp_path: Path) -> None:
    data = np.tile(np.arange(1500, dtype=np.uint16), (3, 1500, 1))  # 13.5 MB of pixels
    path = write_raster(tmp_path / "big.tif", data, tiled=True, compress="deflate")
    with RasterSource(path) as src:
        tracemalloc.start()
        try:
            chip = src.read_chip(Window(700, 700, 100, 100))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert chip.shape == (100, 100)
    assert peak < 1_000_000


def test_a_window_over_the_pixel_cap_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "w.tif", ramp("uint8", 1, 255))
    with RasterSource(path, max_pixels=10_000) as src, pytest.raises(ImageTooLarge):
        src.read_chip(Window(0, 0, 1000, 1000))


def test_a_described_nir_band_tagged_alpha_is_data_not_transparency(tmp_path: Path) -> None:
    # rasterio tags the 4th band of a 4-band 8-bit GeoTIFF as alpha by default;
    # an R, G, B, NIR stack described as such must not lose its dark-NIR pixels.
    data = ramp("uint8", 1, 255, bands=4)
    data[3, :, :10] = 0  # water: no near-infrared reflectance
    path = write_raster(tmp_path / "rgbn.tif", data, descriptions=["red", "green", "blue", "nir"])
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == CI.alpha
    with RasterSource(path) as src:
        chip = src.read_chip()
        assert src.info.spectral_bands["nir"] == 4
    assert chip.valid.all()
    assert (chip.spectral["nir"][:, :10] == 0).all()
