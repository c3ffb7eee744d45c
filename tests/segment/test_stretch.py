"""Display stretch: 8-bit passed through, other types stretched on valid pixels only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from geolibre_ml.segment.raster import RasterSource
from geolibre_ml.segment.stretch import Stretch, measure_stretch, stats_shape
from support.rasters import write_raster


def test_uint8_is_passed_through_unchanged() -> None:
    plane = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert Stretch().to_uint8(1, plane) is plane


def test_percentile_limits_map_to_0_and_255() -> None:
    plane = np.arange(10_000, 20_001, dtype=np.uint16).reshape(1, -1)
    stretch = measure_stretch({1: plane}, {1: np.ones(plane.shape, bool)})
    low, high = stretch.limits[1]
    assert low == pytest.approx(10_200)
    assert high == pytest.approx(19_800)
    out = stretch.to_uint8(1, np.array([10_000, 10_200, 15_000, 19_800, 20_000], np.uint16))
    assert out.tolist() == [0, 0, 128, 255, 255]


def test_invalid_pixels_never_enter_the_statistics() -> None:
    plane = np.full((10, 10), 65_535, dtype=np.uint16)
    plane[:5] = np.arange(1000, 1050).reshape(5, 10)
    valid = np.zeros(plane.shape, bool)
    valid[:5] = True
    low, high = measure_stretch({1: plane}, {1: valid}).limits[1]
    assert 1000 <= low < high <= 1049


def test_a_constant_band_is_mid_grey_without_dividing_by_zero() -> None:
    plane = np.full((4, 4), 0.25, dtype=np.float32)
    with np.errstate(all="raise"):
        stretch = measure_stretch({1: plane}, {1: np.ones(plane.shape, bool)})
        out = stretch.to_uint8(1, plane)
    assert stretch.limits[1] == (-0.25, 0.75)
    assert np.all(out == 128)


def test_a_band_without_valid_pixels_gets_a_harmless_stretch() -> None:
    plane = np.full((4, 4), np.nan, dtype=np.float32)
    stretch = measure_stretch({1: plane}, {1: np.ones(plane.shape, bool)})
    assert stretch.limits[1] == (0.0, 1.0)
    assert np.all(stretch.to_uint8(1, plane) == 0)


def test_a_sparse_band_falls_back_to_its_full_range() -> None:
    plane = np.zeros((100, 100), dtype=np.uint16)
    plane[0, :10] = 500  # 0.1 % of the pixels: both percentiles are 0
    stretch = measure_stretch({1: plane}, {1: np.ones(plane.shape, bool)})
    assert stretch.limits[1] == (0.0, 500.0)


def test_nan_and_infinities_become_black_and_white() -> None:
    stretch = Stretch({1: (0.0, 1.0)})
    plane = np.array([np.nan, -np.inf, np.inf, 0.5, -3e38, 3e38], dtype=np.float32)
    with np.errstate(all="raise"):
        assert stretch.to_uint8(1, plane).tolist() == [0, 0, 255, 128, 0, 255]


def test_float64_keeps_its_precision() -> None:
    # Elevations in millimetres: a float32 stretch would band these values.
    base = 6_000_000_000.0
    stretch = Stretch({1: (base, base + 255.0)})
    plane = base + np.arange(256, dtype=np.float64)
    assert stretch.to_uint8(1, plane).tolist() == list(range(256))


def test_low_bit_depth_bands_are_scaled_up() -> None:
    stretch = Stretch(bit_depths={1: 1, 2: 4})
    assert stretch.to_uint8(1, np.array([0, 1], np.uint8)).tolist() == [0, 255]
    assert stretch.to_uint8(2, np.array([0, 8, 15], np.uint8)).tolist() == [0, 136, 255]


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (10, 20, (10, 20)),
        (1024, 1024, (1024, 1024)),
        (1025, 300, (512, 150)),
        (5000, 20, (1000, 4)),
    ],
)
def test_statistics_read_a_decimated_raster(height: int, width: int, expected: tuple) -> None:
    assert stats_shape(height, width, size=1024) == expected


# -- through RasterSource -----------------------------------------------------------


def test_two_windows_of_one_raster_share_one_stretch(tmp_path: Path) -> None:
    # A west-east ramp: the west half alone is dark, the east half bright. Each
    # window must keep the whole raster's stretch, not brighten its own range.
    ramp = np.tile(np.linspace(1000, 3000, 200), (60, 1)).astype(np.uint16)
    path = write_raster(tmp_path / "ramp.tif", np.stack([ramp] * 3))
    with RasterSource(path) as src:
        west = src.read_chip(Window(0, 0, 100, 60))
        east = src.read_chip(Window(100, 0, 100, 60))
        overlap = src.read_chip(Window(50, 10, 100, 20))
        whole = src.read_chip()
    assert west.rgb.max() < 135 and east.rgb.min() > 120
    assert west.rgb[:, :, 0].min() == 0 and east.rgb[:, :, 0].max() == 255
    np.testing.assert_array_equal(overlap.rgb, whole.rgb[10:30, 50:150])
    np.testing.assert_array_equal(west.rgb, whole.rgb[:, :100])


def test_a_nodata_collar_does_not_shift_the_stretch(tmp_path: Path) -> None:
    # A Landsat-like scene: 16-bit reflectance in a tilted footprint, 0 around it.
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:120, 0:160]
    footprint = (np.abs(cols - 80 - (rows - 60) * 0.3) < 45) & (np.abs(rows - 60) < 50)
    scene = rng.integers(7000, 12000, size=(3, 120, 160)).astype(np.uint16)
    scene[:, ~footprint] = 0
    path = write_raster(tmp_path / "collar.tif", scene, nodata=0)
    with RasterSource(path) as src:
        low, high = src.stretch.limits[1]
        chip = src.read_chip()
    assert footprint.mean() < 0.6
    assert 7000 <= low < 7300 and 11700 < high <= 12000
    np.testing.assert_array_equal(chip.valid, footprint)
    inside = chip.rgb[footprint]
    assert inside.min() == 0 and inside.max() == 255 and 100 < inside.mean() < 155


def test_pixels_hidden_by_alpha_do_not_shift_the_stretch(tmp_path: Path) -> None:
    data = np.full((4, 40, 40), 65_535, dtype=np.uint16)
    data[:3, :20] = np.arange(20 * 40, dtype=np.uint16).reshape(20, 40) + 2000
    data[3] = 0
    data[3, :20] = 65_535
    path = write_raster(
        tmp_path / "rgba16.tif",
        data,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )
    with RasterSource(path) as src:
        low, high = src.stretch.limits[1]
        chip = src.read_chip()
    assert 2000 <= low < high < 2800
    assert chip.valid[:20].all() and not chip.valid[20:].any()
    assert (chip.rgb[20:] == 0).all()


def test_nan_and_infinities_do_not_shift_the_stretch(tmp_path: Path) -> None:
    data = np.tile(np.linspace(0.1, 0.3, 50, dtype=np.float32), (50, 1))
    data[:5] = np.nan
    data[5:10] = np.inf
    data[10:15] = -np.inf
    path = write_raster(tmp_path / "inf.tif", data)
    with RasterSource(path) as src:
        low, high = src.stretch.limits[1]
        chip = src.read_chip()
    assert 0.1 <= low < 0.11 and 0.29 < high <= 0.3
    assert not chip.valid[:15].any() and chip.valid[15:].all()


def test_every_band_used_decides_what_counts_for_the_stretch(tmp_path: Path) -> None:
    # NaN in the (undisplayed) NIR band makes those pixels invalid; their bright
    # red values must then stay out of the red band's statistics.
    red = np.full((20, 20), 0.1, dtype=np.float32)
    red[:, :10] = np.linspace(0.05, 0.15, 200, dtype=np.float32).reshape(20, 10)
    red[:, 10:] = 0.9
    nir = np.full((20, 20), 0.4, dtype=np.float32)
    nir[:, 10:] = np.nan
    data = np.stack([red, red, red, nir])
    path = write_raster(tmp_path / "rgbn.tif", data, descriptions=["red", "green", "blue", "nir"])
    with RasterSource(path) as src:
        _, high = src.stretch.limits[1]
        chip = src.read_chip()
    assert high < 0.16
    assert chip.valid[:, :10].all() and not chip.valid[:, 10:].any()
