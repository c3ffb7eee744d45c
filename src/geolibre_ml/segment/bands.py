"""Which band is which: red, green, blue, near- and short-wave infrared.

Roles come from what the file says about itself, never from a guess that could
be wrong: GDAL colour interpretation, band descriptions (Landsat and Sentinel-2
band names, STAC common names), and central wavelengths in the IMAGERY metadata
domain. ``bands`` given by the user always wins for the display RGB.
"""

from __future__ import annotations

import re

import numpy as np
from rasterio.io import DatasetReader

from .errors import InvalidRequest

# Common names (STAC eo:common_name and everyday spellings) to roles.
_COMMON_NAMES: dict[str, str] = {
    "blue": "blue",
    "green": "green",
    "red": "red",
    "nir": "nir",
    "nir08": "nir",
    "near infrared": "nir",
    "near-infrared": "nir",
    "nearinfrared": "nir",
    "swir16": "swir1",
    "swir1": "swir1",
    "swir 1": "swir1",
    "swir22": "swir2",
    "swir2": "swir2",
    "swir 2": "swir2",
}

# Sentinel-2 band names (B02, B2, B8A...) to roles.
_SENTINEL2: dict[str, str] = {
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B8": "nir",
    "B8A": "nir",
    "B11": "swir1",
    "B12": "swir2",
}
# Landsat 8/9 OLI and Landsat 4-7 TM/ETM+ band names to roles.
_LANDSAT_OLI: dict[str, str] = {
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "nir",
    "B6": "swir1",
    "B7": "swir2",
}
_LANDSAT_TM: dict[str, str] = {
    "B1": "blue",
    "B2": "green",
    "B3": "red",
    "B4": "nir",
    "B5": "swir1",
    "B7": "swir2",
}

# Central wavelength ranges in micrometres.
_WAVELENGTHS: tuple[tuple[str, float, float], ...] = (
    ("blue", 0.43, 0.52),
    ("green", 0.52, 0.60),
    ("red", 0.62, 0.70),
    ("nir", 0.76, 0.90),
    ("swir1", 1.55, 1.75),
    ("swir2", 2.05, 2.40),
)

_BAND_NAME = re.compile(r"^(?:SR_|TOA_)?B0*(\d+A?)$", re.IGNORECASE)


def _normalise(text: str | None) -> str:
    return (text or "").strip().lower().replace("_", " ")


def _band_code(text: str | None) -> str | None:
    match = _BAND_NAME.match((text or "").strip())
    return f"B{match.group(1).upper()}" if match else None


def _sensor_table(ds: DatasetReader) -> dict[str, str] | None:
    codes = {_band_code(d) for d in ds.descriptions} - {None}
    if not codes:
        return None
    tags = " ".join(str(v) for v in ds.tags().values()).upper()
    if codes & {"B8A", "B11", "B12"} and "LANDSAT" not in tags:
        return _SENTINEL2
    if any(re.match(r"^B0\d$", (d or "").strip(), re.IGNORECASE) for d in ds.descriptions):
        return _SENTINEL2
    if "SENTINEL" in tags:
        return _SENTINEL2
    if any(key in tags for key in ("LANDSAT_8", "LANDSAT_9", "LC08", "LC09", "OLI")):
        return _LANDSAT_OLI
    if any(key in tags for key in ("LANDSAT_4", "LANDSAT_5", "LANDSAT_7", "LT0", "LE07")):
        return _LANDSAT_TM
    # Landsat Collection 2 surface reflectance: OLI has SR_B6, TM/ETM+ skips it.
    descriptions = {(d or "").strip().upper() for d in ds.descriptions}
    if "SR_B6" in descriptions:
        return _LANDSAT_OLI
    if "SR_B7" in descriptions and "SR_B5" in descriptions:
        return _LANDSAT_TM
    return None


def _role_from_wavelength(ds: DatasetReader, band: int) -> str | None:
    tags = ds.tags(band, ns="IMAGERY")
    try:
        micrometres = float(tags.get("CENTRAL_WAVELENGTH_UM", "nan"))
    except ValueError:
        return None
    for role, low, high in _WAVELENGTHS:
        if low <= micrometres <= high:
            return role
    return None


def spectral_bands(ds: DatasetReader) -> dict[str, int]:
    """Map spectral roles to 1-based band numbers, for the roles the metadata identifies.

    A role found twice (e.g. Sentinel-2 B8 and B8A both near-infrared) keeps the
    first band.
    """
    roles: dict[str, int] = {}
    table = _sensor_table(ds)
    for band in range(1, ds.count + 1):
        interp = ds.colorinterp[band - 1].name
        description = ds.descriptions[band - 1]
        role = (
            _COMMON_NAMES.get(_normalise(description))
            or (table.get(_band_code(description) or "") if table else None)
            or _role_from_wavelength(ds, band)
            or (interp if interp in ("red", "green", "blue") else None)
        )
        if role and role not in roles:
            roles[role] = band
    # NAIP and other 4-band aerial products: R, G, B tagged as such plus one
    # undefined band, which by that convention is near-infrared.
    if (
        "nir" not in roles
        and ds.count == 4
        and [c.name for c in ds.colorinterp[:3]] == ["red", "green", "blue"]
        and ds.colorinterp[3].name in ("undefined", "gray")
        and not ds.descriptions[3]
    ):
        roles["nir"] = 4
    return roles


def rgb_bands(ds: DatasetReader, bands: tuple[int, ...] | None) -> tuple[int, int, int]:
    """The three 1-based bands shown to the model as red, green and blue.

    Args:
        ds: the open dataset.
        bands: the user's choice (1 or 3 bands), or None to use the metadata.

    Raises:
        InvalidRequest: when ``bands`` names bands the raster does not have.
    """
    if bands is not None:
        if len(bands) not in (1, 3):
            raise InvalidRequest(
                f"bands must list 1 or 3 band numbers, shown as red, green and blue "
                f"(got {len(bands)})."
            )
        bad = [b for b in bands if b < 1 or b > ds.count]
        if bad:
            raise InvalidRequest(
                f"bands {bad} do not exist: this raster has {ds.count} band(s), "
                f"numbered 1 to {ds.count}."
            )
        return (bands[0], bands[0], bands[0]) if len(bands) == 1 else (bands[0], bands[1], bands[2])
    roles = spectral_bands(ds)
    if all(r in roles for r in ("red", "green", "blue")):
        return roles["red"], roles["green"], roles["blue"]
    if ds.count >= 3 and ds.colorinterp[1].name != "alpha":
        return 1, 2, 3
    return 1, 1, 1


def is_palette(ds: DatasetReader, rgb: tuple[int, int, int]) -> bool:
    """True when the display bands are one palette (colour-mapped) band."""
    return rgb[0] == rgb[1] == rgb[2] and ds.colorinterp[rgb[0] - 1].name == "palette"


def apply_palette(ds: DatasetReader, plane: np.ndarray) -> np.ndarray:
    """Expand a palette band's indexes to ``(H, W, 3)`` uint8 RGB through its colour map."""
    colormap = ds.colormap(1)
    lut = np.zeros((max(256, max(colormap) + 1), 3), dtype=np.uint8)
    for index, colour in colormap.items():
        lut[index] = colour[:3]
    return lut[np.clip(plane.astype(np.int64), 0, len(lut) - 1)]


def physical(ds: DatasetReader, band: int, plane: np.ndarray) -> np.ndarray:
    """A band's values as float32 with its GDAL scale and offset applied."""
    scale = ds.scales[band - 1] if ds.scales else 1.0
    offset = ds.offsets[band - 1] if ds.offsets else 0.0
    out = plane.astype(np.float32)
    if scale not in (None, 1.0) or offset not in (None, 0.0):
        out = out * np.float32(scale or 1.0) + np.float32(offset or 0.0)
    return out
