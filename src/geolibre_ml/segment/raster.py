"""Reading rasters into image chips: drivers, size limits, bands, stretch and validity.

A :class:`RasterSource` opens a GeoTIFF, PNG, JPEG or WebP once, checks it can be
processed, decides which bands play which role (see :mod:`.bands`), measures the
display stretch from a decimated read of the whole raster (see :mod:`.stretch`),
and then reads any window as an :class:`~.chip.ImageChip`. Only the window asked
for is ever read at full resolution, so rasters of any size can be processed
tile by tile through :meth:`RasterSource.read_chip`.

Validity (``ImageChip.valid``) combines every band used (the display bands and
the spectral bands): a pixel is invalid where an alpha band or a mask band
(internal or ``.msk``) says so, where any used band is NaN or infinite, and where
every used band that has a nodata value holds it. That last rule follows GDAL's
dataset masks: one dark channel equal to a nodata of 0 inside an 8-bit scene is
data, a collar where all bands are 0 is not. The spectral planes are NaN
wherever their own band is nodata, so a missing infrared value is never used.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio._err import CPLE_BaseError
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError
from rasterio.transform import from_gcps
from rasterio.windows import Window

from . import bands as band_roles
from . import remote
from .chip import ImageChip
from .crs import to_pyproj
from .errors import ImageTooLarge, InvalidRequest, UnreadableImage, gdal_message
from .readplan import ReadPlan
from .stretch import Stretch, measure_stretch, needs_stretch, stats_shape

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

#: Largest misfit, in pixels, between ground control points and the affine
#: transform fitted to them; beyond it the image must be warped first.
GCP_TOLERANCE_PX = 1.0


#: The PNG end chunk: zero length, type IEND, then its CRC.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _png_is_complete(path: Path) -> bool:
    """True when a PNG file ends with its IEND chunk (trailing bytes tolerated).

    GDAL's PNG driver reads a truncated file as zeros without reporting any error,
    so completeness is checked here, from the last few KiB of the file.
    """
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        return _PNG_IEND in handle.read()


def sniff_driver(path: Path) -> str | None:
    """The GDAL driver for a GeoTIFF, PNG, JPEG or WebP file, from its first bytes.

    A ``/vsicurl/`` path is a GeoTIFF: the only kind of URL source taken, its first
    bytes checked when the URL was probed (:func:`.remote.probe`).
    """
    if remote.is_remote(path):
        return "GTiff"
    with Path(path).open("rb") as handle:
        head = handle.read(16)
    for signature, driver in _SIGNATURES:
        if head.startswith(signature):
            return driver
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


#: Default cap on width x height for one request (50,000 x 50,000 px: tiles keep the
#: memory of a run to its tiles and its answer); GEOLIBRE_ML_MAX_PIXELS overrides.
DEFAULT_MAX_PIXELS = 2_500_000_000


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
        transform: affine transform of the full raster's pixel grid (pixel edges
            to CRS coordinates); the identity without georeferencing.
        rgb_bands: 1-based bands shown as red, green and blue.
        spectral_bands: 1-based band per spectral role the metadata identifies.
        pixel_size_m: ground size of a pixel in metres (sqrt of its area), or None.
        georeferencing: where ``transform`` comes from: ``"geotransform"``,
            ``"gcps"`` (an affine fitted to ground control points) or ``"none"``.
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
    georeferencing: str = "geotransform"

    @property
    def georeferenced(self) -> bool:
        """True when coordinates go through a real geotransform (with or without a CRS)."""
        return self.crs is not None or not self.transform.is_identity


class RasterSource:
    """An opened raster, ready to be read window by window.

    Use as a context manager::

        with RasterSource("scene.tif") as src:
            chip = src.read_chip()

    Args:
        path: the raster on local disk.
        name: the name to show in messages (an upload's own name); defaults to
            the file name. Messages never contain ``path`` itself.
        bands: 1-based bands to show as red, green and blue (1 or 3), or None to
            use what the file says (see :mod:`.bands`).
        max_pixels: largest width x height accepted; defaults to
            :func:`max_pixels_from_env`.

    Raises:
        UnreadableImage: empty, truncated, corrupt or unsupported files.
        ImageTooLarge: more pixels than ``max_pixels`` (checked from the header,
            before any pixel is read).
        InvalidRequest: ``bands`` malformed or naming bands the raster lacks.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        bands: tuple[int, ...] | None = None,
        max_pixels: int | None = None,
        plan: ReadPlan | None = None,
    ) -> None:
        # A /vsicurl/ path stays a str: Path would fold the URL's "//".
        path = path if remote.is_remote(path) else Path(path)
        self.path = path
        self._name = name or (
            remote.url_name(path.removeprefix(remote.VSICURL))
            if isinstance(path, str)
            else path.name
        )
        self._max_pixels = max_pixels or max_pixels_from_env()
        display_name = self._name
        try:
            size = 1 if isinstance(path, str) else path.stat().st_size
        except OSError as exc:
            raise UnreadableImage(f"Cannot read {display_name!r}: {exc.strerror}.") from exc
        if size == 0:
            raise UnreadableImage(
                f"{display_name!r} is empty (0 bytes). Send the image file itself: a GeoTIFF, "
                "PNG, JPEG or WebP."
            )
        driver = sniff_driver(path)
        if driver is None:
            raise UnreadableImage(
                f"{display_name!r} is not a GeoTIFF, PNG, JPEG or WebP image (its first bytes "
                "match none of them). Send the raster itself, not an archive, a world file or "
                "another sidecar file."
            )
        if driver == "PNG" and not _png_is_complete(path):
            raise UnreadableImage(
                f"{display_name!r} is a truncated PNG: the file ends before its image data does "
                "(no IEND chunk). Re-export or re-download it."
            )
        self._ds = self._open(driver)
        try:
            self.info = self._inspect(bands)
            if plan is not None:
                self._check_plan(plan)
                self.info = replace(
                    self.info, rgb_bands=plan.rgb_bands, spectral_bands=dict(plan.spectral_bands)
                )
            self.plan: ReadPlan = plan or self._make_plan()
            self._opaque = self._opaque_table()
        except BaseException:
            self._ds.close()
            raise

    # -- opening -----------------------------------------------------------------

    def _open(self, driver: str) -> rasterio.io.DatasetReader:
        if isinstance(self.path, str):
            remote.configure_gdal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(self.path, driver=driver)
                # Cameras store a turned photo as is, plus an EXIF Orientation tag
                # that browsers apply; apply it too, so pixel prompts drawn on the
                # picture land where they were drawn.
                orientation = ds.tags().get("EXIF_Orientation", "1").strip()
                if driver == "JPEG" and orientation not in ("", "1") and ds.transform.is_identity:
                    ds.close()
                    ds = rasterio.open(self.path, driver=driver, APPLY_ORIENTATION="YES")
        except (RasterioError, CPLE_BaseError) as exc:
            raise UnreadableImage(
                f"{self._name!r} is not an image this server can read: it must be a GeoTIFF, "
                f"PNG, JPEG or WebP, complete and uncorrupted ({self._gdal_said(exc)})."
            ) from exc
        return ds

    def _inspect(self, bands: tuple[int, ...] | None) -> RasterInfo:
        ds, name, max_pixels = self._ds, self._name, self._max_pixels
        pixels = ds.width * ds.height
        if pixels > max_pixels:
            raise ImageTooLarge(
                f"{name!r} is {ds.width:,} x {ds.height:,} pixels "
                f"({pixels / 1e6:,.0f} megapixels); "
                f"this server processes at most {max_pixels / 1e6:,.0f} megapixels per image. "
                "Crop or downsample it (e.g. gdal_translate -srcwin or -outsize), or raise "
                "GEOLIBRE_ML_MAX_PIXELS on the server."
            )
        if ds.count < 1 or ds.width < 1 or ds.height < 1:
            raise UnreadableImage(f"{name!r} has no pixels or no raster bands.")
        complex_types = sorted({d for d in ds.dtypes if np.dtype(d).kind == "c"})
        if complex_types:
            raise UnreadableImage(
                f"{name!r} holds complex numbers ({complex_types[0]}), e.g. SAR phase data, "
                "which cannot be shown as an image. Convert it to amplitude or intensity "
                "first (gdal_translate -ot Float32 with a Mod/Intensity VRT pixel function, "
                "or SNAP)."
            )
        crs, transform, georeferencing = self._georeferencing()
        with self._reading("band metadata"):
            rgb = band_roles.rgb_bands(ds, bands)
            spectral = band_roles.spectral_bands(ds)
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
            spectral_bands=spectral,
            pixel_size_m=_pixel_size_m(crs, transform, ds.width, ds.height),
            georeferencing=georeferencing,
        )

    def _georeferencing(self) -> tuple[CRS | None, Affine, str]:
        """The CRS, the full raster's transform and where the transform comes from.

        A geotransform is used as it is (north-up, south-up or rotated). A raster
        with ground control points and no geotransform gets the least-squares
        affine transform through its GCPs (``rasterio.transform.from_gcps``) and
        the GCPs' CRS, provided the GCPs fit it within :data:`GCP_TOLERANCE_PX`.
        Rational polynomial coefficients (RPCs) are not used: without a terrain
        model they do not place pixels, so such rasters are read in pixel
        coordinates. A CRS without a transform is dropped (pixels cannot be
        placed in it).
        """
        ds = self._ds
        transform = ds.transform
        if not transform.is_identity:
            if not _usable_transform(transform):
                raise UnreadableImage(
                    f"{self._name!r} has a degenerate geotransform {tuple(transform)[:6]} (its "
                    "pixels have no area). Fix its georeferencing (gdal_edit -a_ullr or "
                    "-a_gt) or remove it (gdal_edit -unsetgt) to work in pixel coordinates."
                )
            return self._pyproj(ds.crs), transform, "geotransform"
        gcps, gcp_crs = ds.gcps
        if gcps:
            return self._pyproj(gcp_crs), self._affine_from_gcps(gcps), "gcps"
        return None, Affine.identity(), "none"

    def _affine_from_gcps(self, gcps: list) -> Affine:
        pixel = np.array([[g.col, g.row] for g in gcps], dtype=np.float64)
        ground = np.array([[g.x, g.y] for g in gcps], dtype=np.float64)
        design = np.column_stack([pixel, np.ones(len(pixel))])
        if len(gcps) < 3 or np.linalg.matrix_rank(design) < 3 or not np.isfinite(ground).all():
            raise UnreadableImage(
                f"{self._name!r} is georeferenced by {len(gcps)} ground control point(s) that "
                "do not span the image (at least 3, not in a line, are needed). Add GCPs or "
                "warp it to a map grid first (gdalwarp -t_srs EPSG:...)."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            transform = from_gcps(gcps)
        if not _usable_transform(transform):
            raise UnreadableImage(
                f"{self._name!r} has ground control points no affine transform fits. Warp it "
                "to a map grid first (gdalwarp -t_srs EPSG:...)."
            )
        cols, rows = ~transform @ (ground[:, 0], ground[:, 1])
        misfit = float(np.max(np.hypot(cols - pixel[:, 0], rows - pixel[:, 1])))
        if misfit > GCP_TOLERANCE_PX:
            raise UnreadableImage(
                f"{self._name!r} is georeferenced by ground control points that an affine "
                f"transform misses by up to {misfit:.1f} pixels, so its objects could not be "
                "placed on the map accurately. Warp it to a map grid first, e.g. "
                "gdalwarp -tps -r bilinear input.tif warped.tif."
            )
        return transform

    def _pyproj(self, crs: object) -> CRS | None:
        if not crs:
            return None
        try:
            return to_pyproj(crs)
        except CRSError as exc:
            raise UnreadableImage(
                f"The coordinate reference system of {self._name!r} cannot be understood "
                f"({exc}). Assign a standard one (gdal_edit -a_srs EPSG:...)."
            ) from exc

    @property
    def stretch(self) -> Stretch:
        """The display stretch of the whole raster (part of :attr:`plan`)."""
        return self.plan.stretch

    def _make_plan(self) -> ReadPlan:
        """Decide which bands to read, how to tell valid pixels, and the stretch."""
        ds, info = self._ds, self.info
        used = list(dict.fromkeys(info.rgb_bands))
        used += [b for b in info.spectral_bands.values() if b not in used]
        palette = band_roles.is_palette(ds, info.rgb_bands)
        if palette:
            try:
                band_roles.palette_tables(ds, info.rgb_bands[0])
            except ValueError:  # tagged as palette but no colour table: show as grey
                palette = False
        # GDAL mask kinds per band: per-dataset masks (alpha, mask bands,
        # NODATA_VALUES) apply to every band alike and are read once; a band's own
        # nodata is read per band.
        dataset_mask_band: int | None = None
        nodata_bands: list[int] = []
        # An alpha band that is really a described spectral band masks nothing.
        alpha_is_data = not band_roles.alpha_bands(ds) and any(
            c.name == "alpha" for c in ds.colorinterp
        )
        for band in used:
            flags = ds.mask_flag_enums[band - 1]
            if MaskFlags.all_valid in flags:
                continue
            if alpha_is_data and set(flags) == {MaskFlags.per_dataset, MaskFlags.alpha}:
                continue
            if MaskFlags.per_dataset in flags:
                dataset_mask_band = dataset_mask_band or band
            else:
                nodata_bands.append(band)
        plan = ReadPlan(
            rgb_bands=info.rgb_bands,
            spectral_bands=dict(info.spectral_bands),
            used=tuple(used),
            palette=palette,
            dataset_mask_band=dataset_mask_band,
            nodata_bands=tuple(nodata_bands),
        )
        return replace(plan, stretch=self._measure_stretch(plan))

    def _check_plan(self, plan: ReadPlan) -> None:
        """Refuse a plan made for another raster (bands it does not have)."""
        missing = sorted({b for b in plan.used if not 1 <= b <= self.info.count})
        if missing:
            raise InvalidRequest(
                f"The read plan names band(s) {missing} but {self._name!r} has "
                f"{self.info.count} band(s): the plan was made for another raster."
            )

    def _opaque_table(self) -> np.ndarray | None:
        """Which palette entries are opaque, for a palette raster; else None."""
        if not self.plan.palette:
            return None
        return band_roles.palette_tables(self._ds, self.plan.rgb_bands[0])[1]

    @property
    def dataset(self) -> rasterio.io.DatasetReader:
        """The open rasterio dataset (for readers such as rio-tiler; do not close it)."""
        return self._ds

    # -- reading -------------------------------------------------------------------

    @property
    def full_window(self) -> Window:
        """The window covering the whole raster."""
        return Window(0, 0, self.info.width, self.info.height)

    def read_chip(self, window: Window | None = None) -> ImageChip:
        """Read one window (the whole raster by default) as an image chip.

        Only this window is read. Offsets and sizes are rounded to whole pixels;
        parts of the window outside the raster come back as invalid pixels
        (black, ``valid`` False), so fixed-size tiles may overhang the edges.
        The chip's transform is the window's own (its top-left pixel's corner).

        Raises:
            UnreadableImage: when the pixel data is truncated or corrupt.
            ImageTooLarge: for a window larger than the configured pixel cap.
        """
        info, plan = self.info, self.plan
        window = _whole(window or self.full_window)
        if window.width < 1 or window.height < 1:
            raise ValueError(f"window {window} is empty")
        if window.width * window.height > self._max_pixels:
            raise ImageTooLarge(
                f"A window of {window.width:,} x {window.height:,} pixels is larger than this "
                f"server's cap of {self._max_pixels / 1e6:,.0f} megapixels."
            )
        inner = _clip(window, info.width, info.height)
        shape = (window.height, window.width)
        if inner is None:
            data = {b: np.zeros(shape, dtype=self._ds.dtypes[b - 1]) for b in plan.used}
            valid = np.zeros(shape, dtype=bool)
            band_valid = {b: valid for b in plan.used}
        else:
            try:
                data, valid, band_valid = self._read(inner)
            except MemoryError as exc:
                raise ImageTooLarge(
                    f"The server ran out of memory reading {window.width:,} x "
                    f"{window.height:,} pixels of {info.name!r}. Send a smaller image or crop."
                ) from exc
            if inner != window:
                data, valid, band_valid = _pad(window, inner, data, valid, band_valid)
        if plan.palette:
            band = plan.rgb_bands[0]
            rgb = band_roles.apply_palette(self._ds, data[band], band)
        else:
            rgb = np.dstack([plan.stretch.to_uint8(b, data[b]) for b in plan.rgb_bands])
        rgb[~valid] = 0
        spectral = {}
        for role, band in plan.spectral_bands.items():
            plane = band_roles.physical(self._ds, band, data[band])
            plane[~band_valid[band]] = np.nan
            spectral[role] = plane
        return ImageChip(
            rgb=rgb,
            valid=valid,
            window=window,
            transform=info.transform @ Affine.translation(window.col_off, window.row_off),
            crs=info.crs,
            spectral=spectral,
            pixel_size_m=info.pixel_size_m,
        )

    def _read(
        self, window: Window, out_shape: tuple[int, int] | None = None, plan: ReadPlan | None = None
    ) -> tuple[dict[int, np.ndarray], np.ndarray, dict[int, np.ndarray]]:
        """Read the used bands in ``window`` (decimated to ``out_shape`` if given).

        Returns:
            ``(data, valid, band_valid)``: raw values per band, the pixel validity
            (see the module docstring), and per band that validity further
            restricted to the band's own nodata.
        """
        ds = self._ds
        plan = plan or self.plan
        used = plan.used
        kwargs: dict[str, object] = {"window": window}
        if out_shape is not None:
            kwargs.update(out_shape=(len(used), *out_shape), resampling=Resampling.nearest)
        with self._reading("pixels"), warnings.catch_warnings():
            # Nodata taking precedence over an alpha band is GDAL's rule, and ours.
            warnings.simplefilter("ignore", NodataShadowWarning)
            stack = ds.read(list(used), **kwargs)
            mask_kwargs = dict(kwargs)
            if out_shape is not None:
                mask_kwargs["out_shape"] = out_shape
            dataset_mask = (
                ds.read_masks(plan.dataset_mask_band, **mask_kwargs) > 0
                if plan.dataset_mask_band
                else None
            )
            nodata = {b: ds.read_masks(b, **mask_kwargs) > 0 for b in plan.nodata_bands}
        data = {band: stack[i] for i, band in enumerate(used)}
        valid = np.ones(stack.shape[1:], dtype=bool)
        if dataset_mask is not None:
            valid &= dataset_mask
        if nodata:
            valid &= np.logical_or.reduce(list(nodata.values()))
        for band in used:
            if data[band].dtype.kind == "f":
                valid &= np.isfinite(data[band])
        # A palette plan is never read before __init__ has its table (no stretch to measure).
        opaque = self._opaque if plan.palette else None
        if opaque is not None:
            index = data[plan.rgb_bands[0]]
            valid &= opaque[np.clip(index, 0, len(opaque) - 1).astype(np.intp)]
        band_valid = {b: valid & nodata[b] if b in nodata else valid for b in used}
        return data, valid, band_valid

    def _measure_stretch(self, plan: ReadPlan) -> Stretch:
        """The display stretch, from a decimated read of the whole raster's valid pixels."""
        ds = self._ds
        if plan.palette:
            return Stretch()
        display = list(dict.fromkeys(plan.rgb_bands))
        wide = [b for b in display if needs_stretch(ds.dtypes[b - 1])]
        bit_depths = {}
        for band in display:
            if band in wide:
                continue
            nbits = ds.tags(band, ns="IMAGE_STRUCTURE").get("NBITS", "8")
            if nbits.isdigit() and 1 <= int(nbits) < 8:
                bit_depths[band] = int(nbits)
        if not wide:
            return Stretch(bit_depths=bit_depths)
        data, _, band_valid = self._read(
            self.full_window, stats_shape(ds.height, ds.width), plan=plan
        )
        return measure_stretch(
            {b: data[b] for b in wide}, {b: band_valid[b] for b in wide}, bit_depths=bit_depths
        )

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RasterioError, CPLE_BaseError) as exc:
            raise UnreadableImage(
                f"The {what} of {self._name!r} cannot be read: the file is truncated or "
                f"corrupt ({self._gdal_said(exc)}). Re-export or re-download it."
            ) from exc

    def _gdal_said(self, exc: BaseException) -> str:
        """GDAL's most specific message in an exception chain, without server paths."""
        path = self.path
        if isinstance(path, str):  # a URL: its own spellings, never its credentials
            url = path.removeprefix(remote.VSICURL)
            paths = {path, url, remote.redact(url)}
            said = gdal_message(exc, paths=sorted(paths), name=self._name)
            return "GDAL said: " + remote.redact(said)
        paths = {str(path), str(path.absolute()), os.fspath(path.resolve()), path.name}
        return "GDAL said: " + gdal_message(exc, paths=sorted(paths), name=self._name)

    def close(self) -> None:
        """Close the underlying dataset."""
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers ------------------------------------------------------------------------


def _usable_transform(transform: Affine) -> bool:
    values = tuple(transform)[:6]
    return all(math.isfinite(v) for v in values) and transform.determinant != 0


def _whole(window: Window) -> Window:
    return Window(
        round(window.col_off), round(window.row_off), round(window.width), round(window.height)
    )


def _clip(window: Window, width: int, height: int) -> Window | None:
    col0, row0 = max(window.col_off, 0), max(window.row_off, 0)
    col1 = min(window.col_off + window.width, width)
    row1 = min(window.row_off + window.height, height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _pad(
    window: Window,
    inner: Window,
    data: dict[int, np.ndarray],
    valid: np.ndarray,
    band_valid: dict[int, np.ndarray],
) -> tuple[dict[int, np.ndarray], np.ndarray, dict[int, np.ndarray]]:
    """Place what was read of ``inner`` into arrays the shape of ``window``."""
    shape = (window.height, window.width)
    rows = slice(inner.row_off - window.row_off, inner.row_off - window.row_off + inner.height)
    cols = slice(inner.col_off - window.col_off, inner.col_off - window.col_off + inner.width)

    def place(plane: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, dtype=plane.dtype)
        out[rows, cols] = plane
        return out

    return (
        {b: place(p) for b, p in data.items()},
        place(valid),
        {b: place(p) for b, p in band_valid.items()},
    )


def _pixel_size_m(crs: CRS | None, transform: Affine, width: int, height: int) -> float | None:
    """Ground size of one pixel in metres (the square root of its area), or None.

    For a geographic CRS the pixel's angular size is converted at the raster's
    centre latitude on a sphere of the ellipsoid's mean radius.
    """
    if crs is None:
        return None
    area = abs(transform.determinant)
    axes = crs.axis_info
    factor = axes[0].unit_conversion_factor if axes else None
    if not factor:
        return None
    if crs.is_geographic:
        _, lat = transform @ (width / 2, height / 2)
        ellipsoid = crs.ellipsoid
        radius = (
            (2 * ellipsoid.semi_major_metre + ellipsoid.semi_minor_metre) / 3
            if ellipsoid
            else 6_371_008.8
        )
        metres_per_unit = factor * radius  # factor: radians per unit (degrees, grads)
        cos_lat = math.cos(min(abs(lat * factor), math.pi / 2))
        return math.sqrt(area * cos_lat) * metres_per_unit
    return math.sqrt(area) * factor
