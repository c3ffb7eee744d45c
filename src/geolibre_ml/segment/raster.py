"""Reading rasters into image chips: drivers, size limits, bands, stretch and validity.

A :class:`RasterSource` opens a GeoTIFF, PNG or JPEG once, checks it can be
processed, decides which bands play which role (see :mod:`.bands`), computes the
display stretch from the whole raster (see :mod:`.stretch`), and then reads any
window as an :class:`~.chip.ImageChip`. Nothing reads the whole raster at once
unless the caller asks for the full window.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from . import bands as band_roles
from .chip import ImageChip
from .crs import to_pyproj
from .errors import ImageTooLarge, UnreadableImage
from .stretch import Stretch, compute_stretch

# Formats accepted as input, recognised by their first bytes. Opening each with its
# own GDAL driver (never letting GDAL guess) keeps an uploaded VRT or other
# container from making the server read files it was not sent.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "GTiff"),
    (b"MM\x00*", "GTiff"),
    (b"II+\x00", "GTiff"),  # BigTIFF
    (b"MM\x00+", "GTiff"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)


def sniff_driver(path: Path) -> str | None:
    """The GDAL driver for a GeoTIFF, PNG, JPEG or WebP file, from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(16)
    for signature, driver in _SIGNATURES:
        if head.startswith(signature):
            return driver
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


#: Default cap on width x height for one request; GEOLIBRE_ML_MAX_PIXELS overrides.
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels_from_env() -> int:
    """The configured pixel cap (``GEOLIBRE_ML_MAX_PIXELS``), or the default."""
    raw = os.environ.get("GEOLIBRE_ML_MAX_PIXELS", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_MAX_PIXELS
    return value if value > 0 else DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class RasterInfo:
    """What is known about an opened raster before any pixel is read.

    Attributes:
        name: file name shown to users (the upload's name, not a temp path).
        driver: GDAL driver short name.
        width, height, count: size in pixels and number of bands.
        dtype: data type of the first band (e.g. ``uint16``).
        crs: CRS, or None.
        transform: geotransform of the full raster (identity without georeferencing).
        rgb_bands: 1-based bands shown as red, green and blue.
        spectral_bands: 1-based band per spectral role the metadata identifies.
        pixel_size_m: ground size of a pixel in metres (sqrt of its area), or None.
    """

    name: str
    driver: str
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    rgb_bands: tuple[int, int, int]
    spectral_bands: dict[str, int]
    pixel_size_m: float | None

    @property
    def georeferenced(self) -> bool:
        """True when coordinates go through a real geotransform (with or without a CRS)."""
        return self.crs is not None or not self.transform.is_identity


class RasterSource:
    """An opened raster, ready to be read window by window.

    Use as a context manager::

        with RasterSource("scene.tif") as src:
            chip = src.read_chip()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        bands: tuple[int, ...] | None = None,
        max_pixels: int | None = None,
    ) -> None:
        path = Path(path)
        self.path = path
        display_name = name or path.name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UnreadableImage(f"Cannot read {display_name!r}: {exc.strerror}.") from exc
        if size == 0:
            raise UnreadableImage(
                f"{display_name!r} is empty (0 bytes). Send the image file itself: a GeoTIFF, "
                "PNG or JPEG."
            )
        driver = sniff_driver(path)
        if driver is None:
            raise UnreadableImage(
                f"{display_name!r} is not a GeoTIFF, PNG, JPEG or WebP image (its first bytes "
                "match none of them). Send the raster itself, not an archive or a sidecar file."
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(path, driver=driver)
        except (RasterioIOError, RasterioError) as exc:
            raise UnreadableImage(
                f"{display_name!r} is not an image this server can read: it must be a GeoTIFF, "
                f"PNG or JPEG, complete and uncorrupted (GDAL said: {_gdal_message(exc)})."
            ) from exc
        try:
            self.info = self._inspect(display_name, bands, max_pixels or max_pixels_from_env())
            self.stretch: Stretch = compute_stretch(self._ds, self._used_bands())
        except BaseException:
            self._ds.close()
            raise

    # -- opening -----------------------------------------------------------------

    def _inspect(self, name: str, bands: tuple[int, ...] | None, max_pixels: int) -> RasterInfo:
        ds = self._ds
        pixels = ds.width * ds.height
        if pixels > max_pixels:
            raise ImageTooLarge(
                f"{name!r} is {ds.width:,} x {ds.height:,} pixels "
                f"({pixels / 1e6:,.0f} megapixels); "
                f"this server processes at most {max_pixels / 1e6:,.0f} megapixels per image. "
                "Crop or downsample it (e.g. gdal_translate -srcwin or -outsize), or raise "
                "GEOLIBRE_ML_MAX_PIXELS on the server."
            )
        if ds.count < 1:
            raise UnreadableImage(f"{name!r} has no raster bands.")
        rgb = band_roles.rgb_bands(ds, bands)
        crs = to_pyproj(ds.crs) if ds.crs else None
        transform = ds.transform
        return RasterInfo(
            name=name,
            driver=ds.driver,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            crs=crs,
            transform=transform,
            rgb_bands=rgb,
            spectral_bands=band_roles.spectral_bands(ds),
            pixel_size_m=_pixel_size_m(crs, transform, ds.width, ds.height),
        )

    def _used_bands(self) -> tuple[int, ...]:
        used = list(dict.fromkeys(self.info.rgb_bands))
        used += [b for b in self.info.spectral_bands.values() if b not in used]
        return tuple(used)

    # -- reading -------------------------------------------------------------------

    @property
    def full_window(self) -> Window:
        """The window covering the whole raster."""
        return Window(0, 0, self.info.width, self.info.height)

    def read_chip(self, window: Window | None = None) -> ImageChip:
        """Read one window (the whole raster by default) as an image chip.

        Raises:
            UnreadableImage: when the pixel data is truncated or corrupt.
        """
        ds = self._ds
        window = window or self.full_window
        used = self._used_bands()
        try:
            data = ds.read(list(used), window=window)
            masks = ds.read_masks(list(used), window=window)
        except (RasterioIOError, RasterioError) as exc:
            raise UnreadableImage(
                f"The pixels of {self.info.name!r} cannot be read: the file is truncated or "
                f"corrupt (GDAL said: {_gdal_message(exc)}). Re-export or re-download it."
            ) from exc
        index = {band: i for i, band in enumerate(used)}
        valid = np.all(masks > 0, axis=0)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.all(np.isfinite(data), axis=0)
        if band_roles.is_palette(ds, self.info.rgb_bands):
            rgb = band_roles.apply_palette(ds, data[index[self.info.rgb_bands[0]]])
        else:
            rgb = np.dstack([self.stretch.to_uint8(b, data[index[b]]) for b in self.info.rgb_bands])
        spectral = {
            role: band_roles.physical(ds, band, data[index[band]])
            for role, band in self.info.spectral_bands.items()
        }
        transform = ds.window_transform(window)
        return ImageChip(
            rgb=rgb,
            valid=valid,
            window=window,
            transform=transform,
            crs=self.info.crs,
            spectral=spectral,
            pixel_size_m=self.info.pixel_size_m,
        )

    def close(self) -> None:
        """Close the underlying dataset."""
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gdal_message(exc: Exception) -> str:
    # GDAL messages carry the temp path of the upload, which means nothing to a client.
    text = str(exc).strip() or type(exc).__name__
    return text.split(": ", 1)[-1] if "/" in text.split(": ", 1)[0] else text


def _pixel_size_m(crs: CRS | None, transform: Affine, width: int, height: int) -> float | None:
    if crs is None:
        return None
    area = abs(transform.determinant)
    if crs.is_geographic:
        # Degrees to metres at the raster's centre latitude (mean Earth radius).
        _, lat = transform * (width / 2, height / 2)
        metres_per_degree = math.pi * 6_371_008.8 / 180
        return math.sqrt(area * math.cos(math.radians(lat))) * metres_per_degree
    axes = crs.axis_info
    factor = axes[0].unit_conversion_factor if axes else None
    if not factor:
        return None
    return math.sqrt(area) * factor
