"""Which band is which: red, green, blue, near- and short-wave infrared.

Roles come from what the file says about itself, never from a guess that could
be wrong. The evidence, strongest first:

1. band descriptions that name a role: STAC ``eo:common_name`` values (``red``,
   ``nir08``, ``swir16``...) and everyday spellings (``Near Infrared``);
2. central wavelengths: the ``IMAGERY`` metadata domain's
   ``CENTRAL_WAVELENGTH_UM``, ``WAVELENGTH`` band tags (GDAL's Sentinel-2 and
   ENVI drivers) or a wavelength written in the description (``665 nm``);
3. sensor band names (``B04``, ``B8A``, ``SR_B5``...) read with the band table
   of the one sensor they can belong to. Sentinel-2, Landsat 8/9 OLI and Landsat
   4-7 TM/ETM+ reuse the same names for different bands (``B5`` is red edge,
   near-infrared or short-wave infrared), so a name only counts when the names
   present and the dataset's metadata leave one sensor, or when every sensor
   still possible gives that name the same role;
4. GDAL colour interpretation (``red``, ``green``, ``blue``, ``nir``).

A 4-band raster tagged red, green, blue plus one unlabelled band is read as
NAIP-style red, green, blue, near-infrared. The bands shown to the model as RGB
are the user's ``bands`` when given, otherwise the red, green and blue bands when
all three are known (so a false-colour composite is shown in true colour), and
otherwise the first three bands (or the first band as grey).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
from rasterio.io import DatasetReader

from .errors import InvalidRequest

#: The roles this module can identify (the spectral roles of :mod:`.chip`).
ROLES: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")

# A band known to be something else (coastal, red edge, thermal, panchromatic...):
# it takes no role, and weaker evidence may not give it one.
_OTHER = "other"

# Descriptions naming a role: STAC eo:common_name values and everyday spellings,
# compared after lower-casing and collapsing spaces, dashes and underscores.
_NAMES: dict[str, str] = {
    "blue": "blue",
    "green": "green",
    "red": "red",
    "nir": "nir",
    "nir08": "nir",
    "near infrared": "nir",
    "nearinfrared": "nir",
    "near ir": "nir",
    "swir16": "swir1",
    "swir1": "swir1",
    "swir 1": "swir1",
    "swir22": "swir2",
    "swir2": "swir2",
    "swir 2": "swir2",
    # Known bands that are none of the roles above.
    "coastal": _OTHER,
    "coastal aerosol": _OTHER,
    "yellow": _OTHER,
    "pan": _OTHER,
    "panchromatic": _OTHER,
    "rededge": _OTHER,
    "red edge": _OTHER,
    "nir09": _OTHER,
    "water vapour": _OTHER,
    "water vapor": _OTHER,
    "cirrus": _OTHER,
    "swir": _OTHER,  # which of the two short-wave bands is not said
    "lwir": _OTHER,
    "lwir11": _OTHER,
    "lwir12": _OTHER,
    "thermal": _OTHER,
    "alpha": _OTHER,
}

# Central wavelengths in micrometres: (role, lowest, highest, reference). Bands
# in no interval (coastal 0.44, red edge 0.70-0.78, water vapour 0.94...) are
# "other". Several bands in one interval: the one nearest the reference wins.
_WAVELENGTHS: tuple[tuple[str, float, float, float], ...] = (
    ("blue", 0.45, 0.52, 0.49),
    ("green", 0.52, 0.60, 0.56),
    ("red", 0.62, 0.69, 0.665),
    ("nir", 0.80, 0.90, 0.85),
    ("swir1", 1.55, 1.75, 1.61),
    ("swir2", 2.05, 2.40, 2.20),
)

# Band names per sensor ("other": a real band of that sensor with no role here).
_SENSORS: dict[str, dict[str, str]] = {
    "Sentinel-2 MSI": {
        "B1": _OTHER,
        "B2": "blue",
        "B3": "green",
        "B4": "red",
        "B5": _OTHER,
        "B6": _OTHER,
        "B7": _OTHER,
        "B8": "nir",
        "B8A": "nir",
        "B9": _OTHER,
        "B10": _OTHER,
        "B11": "swir1",
        "B12": "swir2",
    },
    "Landsat 8/9 OLI": {
        "B1": _OTHER,
        "B2": "blue",
        "B3": "green",
        "B4": "red",
        "B5": "nir",
        "B6": "swir1",
        "B7": "swir2",
        "B8": _OTHER,
        "B9": _OTHER,
        "B10": _OTHER,
        "B11": _OTHER,
    },
    "Landsat 4-7 TM/ETM+": {
        "B1": "blue",
        "B2": "green",
        "B3": "red",
        "B4": "nir",
        "B5": "swir1",
        "B6": _OTHER,
        "B7": "swir2",
        "B8": _OTHER,
    },
}
_S2, _OLI, _TM = _SENSORS.values()

# Sensor names in dataset metadata (tag keys and values), e.g. SPACECRAFT_NAME=
# Sentinel-2A, SPACECRAFT_ID=LANDSAT_8, LANDSAT_PRODUCT_ID=LC08_L2SP_..., and
# scene ids (LC80440342016...), matched as whole words. A mention of a sensor without a table here
# (Landsat MSS) makes every band name unusable.
_EDGE_L, _EDGE_R = r"(?<![A-Z0-9])", r"(?![A-Z0-9])"
_SENSOR_MENTIONS: tuple[tuple[str | None, re.Pattern[str]], ...] = (
    (_S2, re.compile(rf"SENTINEL[-_ ]?2|{_EDGE_L}S2[ABCD](?:_MSI|{_EDGE_R})")),
    (
        _OLI,
        re.compile(
            rf"LANDSAT[-_ ]?0?[89]{_EDGE_R}|{_EDGE_L}L[CO]0?[89](?=_|\d{{6}})"
            rf"|{_EDGE_L}OLI(?:_TIRS)?{_EDGE_R}"
        ),
    ),
    (
        _TM,
        re.compile(
            rf"LANDSAT[-_ ]?0?[4-7]{_EDGE_R}|{_EDGE_L}L[TE]0?[4-7](?=_|\d{{6}})"
            rf"|{_EDGE_L}ETM\+?{_EDGE_R}"  # not a bare "TM": transverse Mercator
        ),
    ),
    (None, re.compile(rf"{_EDGE_L}MSS{_EDGE_R}|{_EDGE_L}LM0?[1-5](?=_|\d{{6}})")),
)

# "B4", "B04", "B8A", "SR_B5", "ST_B10", "B6_VCID_1", "B4, central wavelength 665 nm".
# Not "Band 4": that is how many programs number bands of any image.
_BAND_CODE = re.compile(
    r"^(?:(?P<prefix>SR|ST|TOA)_)?B(?P<zero>0?)(?P<number>\d{1,2})(?P<a>A?)"
    r"(?P<vcid>_VCID_\d)?(?=$|[\s,;:(\-])",
    re.IGNORECASE,
)

_WAVELENGTH_TEXT = re.compile(
    r"(?P<value>\d+(?:\.\d+)?)\s*(?:(?:-|–|to)\s*(?P<upper>\d+(?:\.\d+)?)\s*)?"
    r"(?P<unit>nm|nanomet(?:er|re)s?|um|µm|μm|microns?|micromet(?:er|re)s?)(?![a-z])",
    re.IGNORECASE,
)


def _normalise(text: str | None) -> str:
    return re.sub(r"[\s_\-]+", " ", (text or "").strip().lower())


def _role_from_name(description: str | None) -> str | None:
    """A role from a description that names one, whole or before a separator."""
    text = _normalise(description)
    if not text:
        return None
    if text in _NAMES:
        return _NAMES[text]
    head = re.split(r"\s*[(,;:]\s*|\s+-\s+", text, maxsplit=1)[0]
    if head in _NAMES:
        return _NAMES[head]
    # "Red Edge 1", "Coastal aerosol (B1)": a known other band, never "red".
    if any(text.startswith(f"{name} ") for name, role in _NAMES.items() if role == _OTHER):
        return _OTHER
    return None


def _micrometres(value: float, unit: str | None) -> float | None:
    if not math.isfinite(value) or value <= 0:
        return None
    unit = (unit or "").strip().lower()
    if unit.startswith("n"):
        return value / 1000.0
    if unit.startswith(("u", "µ", "μ", "micro")):
        return value
    # No unit: visible to short-wave infrared lies between 0.3 and 3 micrometres,
    # i.e. 300 and 3000 nanometres, so the magnitude says which.
    return value / 1000.0 if value > 100 else value


def band_wavelength_um(ds: DatasetReader, band: int) -> float | None:
    """Central wavelength of a 1-based band in micrometres, when the file states it."""
    imagery = ds.tags(band, ns="IMAGERY")
    if "CENTRAL_WAVELENGTH_UM" in imagery:
        return _parse_float(imagery["CENTRAL_WAVELENGTH_UM"], "um")
    tags = {key.lower(): value for key, value in ds.tags(band).items()}
    if "wavelength" in tags:
        unit = tags.get("wavelength_unit") or tags.get("wavelength_units")
        if unit is None:
            dataset = {key.lower(): value for key, value in ds.tags().items()}
            unit = dataset.get("wavelength_units") or dataset.get("wavelength_unit")
        return _parse_float(tags["wavelength"], unit)
    match = _WAVELENGTH_TEXT.search(ds.descriptions[band - 1] or "")
    if match:
        value = float(match.group("value"))
        if match.group("upper"):
            value = (value + float(match.group("upper"))) / 2
        return _micrometres(value, match.group("unit"))
    return None


def _parse_float(text: str, unit: str | None) -> float | None:
    try:
        return _micrometres(float(text), unit)
    except (TypeError, ValueError):
        return None


def _role_from_wavelength(micrometres: float | None) -> tuple[str, float] | None:
    """The role of a central wavelength and its distance to the role's reference."""
    if micrometres is None:
        return None
    for role, low, high, reference in _WAVELENGTHS:
        if low <= micrometres < high:
            return role, abs(micrometres - reference)
    return _OTHER, 0.0


def _band_code(description: str | None) -> tuple[str, str, bool] | None:
    """``(code, prefix, zero_padded)`` of a sensor band name, e.g. ``("B5", "SR", False)``."""
    match = _BAND_CODE.match((description or "").strip())
    if not match:
        return None
    number = int(match.group("number"))
    if number == 0:
        return None
    code = f"B{number}{match.group('a').upper()}"
    if match.group("vcid"):
        code += "_VCID"
    return code, (match.group("prefix") or "").upper(), bool(match.group("zero"))


def _metadata_sensors(ds: DatasetReader) -> list[dict[str, str] | None]:
    """Sensors named in the dataset's metadata (None: a sensor with no table here)."""
    texts: list[str] = []
    for ns in (None, "IMAGERY"):
        tags = ds.tags(ns=ns) if ns else ds.tags()
        texts += [f"{key}={str(value)[:4096]}" for key, value in tags.items()]
    text = "\n".join(texts).upper()
    return [table for table, pattern in _SENSOR_MENTIONS if pattern.search(text)]


def _possible_sensors(
    ds: DatasetReader, codes: Sequence[tuple[str, str, bool] | None]
) -> list[dict[str, str]]:
    """The sensors the band names and the dataset's metadata leave possible."""
    present = [c for c in codes if c is not None]
    names = {code for code, _, _ in present}
    prefixes = {prefix for _, prefix, _ in present}
    candidates = [_S2, _OLI, _TM]
    # Every name must exist on the sensor (B8A and B12 only on Sentinel-2, B9 to
    # B11 not on TM/ETM+); the ETM+ "B6_VCID" thermal pair only on Landsat 7.
    candidates = [t for t in candidates if all(n in t or n == "B6_VCID" for n in names)]
    if "B6_VCID" in names:
        candidates = [t for t in candidates if t is _TM]
    # Zero padding (B02, B8A) is Sentinel-2's spelling; SR_/ST_ prefixes are
    # Landsat Collection 2's.
    if any(zero for _, _, zero in present):
        candidates = [t for t in candidates if t is _S2]
    if prefixes & {"SR", "ST", "TOA"}:
        candidates = [t for t in candidates if t is not _S2]
        # Collection 2 thermal: ST_B10 on OLI/TIRS, ST_B6 on TM/ETM+; SR_B6 is
        # OLI's first short-wave infrared band.
        thermal = {code for code, prefix, _ in present if prefix == "ST"}
        if "B10" in thermal or ("B6" in names and "B6" not in thermal):
            candidates = [t for t in candidates if t is _OLI]
        elif "B6" in thermal:
            candidates = [t for t in candidates if t is _TM]
    mentioned = _metadata_sensors(ds)
    if mentioned:
        if None in mentioned:
            return []
        candidates = [t for t in candidates if t in mentioned]
    return candidates


def _role_from_code(
    code: tuple[str, str, bool] | None, sensors: Iterable[dict[str, str]]
) -> str | None:
    if code is None:
        return None
    name, prefix, _ = code
    if prefix == "ST":
        return _OTHER  # Landsat Collection 2 surface temperature
    roles = {table.get(name) for table in sensors}
    if len(roles) != 1:
        return None  # no sensor left, or sensors that disagree
    return roles.pop()


def spectral_bands(ds: DatasetReader) -> dict[str, int]:
    """Map spectral roles to 1-based band numbers, for the roles the metadata identifies.

    Roles are decided by the strongest evidence first (names, then wavelengths,
    then sensor band names, then colour interpretation; see the module
    docstring). Within one kind of evidence the first band claiming a role keeps
    it, except for wavelengths, where the band nearest the role's reference
    wavelength does (hyperspectral cubes).
    """
    count = ds.count
    descriptions = list(ds.descriptions)
    colorinterp = [c.name for c in ds.colorinterp]
    known: dict[int, str] = {}  # band -> role or _OTHER
    roles: dict[str, int] = {}

    def claim(band: int, role: str | None) -> None:
        if role is None or band in known:
            return
        known[band] = role
        if role != _OTHER and role not in roles:
            roles[role] = band

    for band in range(1, count + 1):
        claim(band, _role_from_name(descriptions[band - 1]))

    by_wavelength: dict[str, tuple[float, int]] = {}
    for band in range(1, count + 1):
        if band in known:
            continue
        found = _role_from_wavelength(band_wavelength_um(ds, band))
        if found is None:
            continue
        role, distance = found
        known[band] = role
        if role != _OTHER and role not in roles:
            best = by_wavelength.get(role)
            if best is None or distance < best[0]:
                by_wavelength[role] = (distance, band)
    for role, (_, band) in by_wavelength.items():
        roles.setdefault(role, band)

    codes = [_band_code(d) for d in descriptions]
    if any(codes):
        sensors = _possible_sensors(ds, codes)
        for band in range(1, count + 1):
            claim(band, _role_from_code(codes[band - 1], sensors))

    for band in range(1, count + 1):
        interp = colorinterp[band - 1]
        if interp in ("red", "green", "blue", "nir"):
            claim(band, interp)
        elif interp not in ("undefined", "gray", "grey"):
            claim(band, _OTHER)

    # NAIP and other 4-band aerial products: red, green and blue tagged as such
    # and a fourth band with no label at all, which by that convention is NIR.
    if (
        "nir" not in roles
        and count == 4
        and [roles.get("red"), roles.get("green"), roles.get("blue")] == [1, 2, 3]
        and colorinterp[:3] == ["red", "green", "blue"]
        and colorinterp[3] in ("undefined", "gray")
        and 4 not in known
        and not descriptions[3]
    ):
        roles["nir"] = 4
    return {role: roles[role] for role in ROLES if role in roles}


def alpha_bands(ds: DatasetReader) -> set[int]:
    """1-based bands that are transparency, never image data.

    These are the bands GDAL reads as alpha, except one whose description or
    wavelength names a spectral role: rasterio tags the fourth band of any 4-band
    8-bit GeoTIFF as alpha unless told otherwise, so an R, G, B, NIR stack
    described as such is taken at its word.
    """
    tagged = {i for i, c in enumerate(ds.colorinterp, start=1) if c.name == "alpha"}
    if not tagged:
        return tagged
    return {band for band in tagged if _declared_role(ds, band) in (None, _OTHER)}


def _declared_role(ds: DatasetReader, band: int) -> str | None:
    """The role a band's description or wavelength states, if any."""
    role = _role_from_name(ds.descriptions[band - 1])
    if role is None:
        found = _role_from_wavelength(band_wavelength_um(ds, band))
        role = found[0] if found else None
    return role


def check_bands(bands: Sequence[int], count: int) -> tuple[int, int, int]:
    """Validate the user's ``bands`` (1 or 3 band numbers) and return them as an RGB triple.

    Raises:
        InvalidRequest: for a wrong number of bands or bands the raster lacks.
    """
    if len(bands) not in (1, 3):
        raise InvalidRequest(
            f"bands must list 1 band (shown as grey) or 3 bands (shown as red, green and "
            f"blue), e.g. 4,3,2; got {len(bands)}: {list(bands)}."
        )
    bad = [b for b in bands if isinstance(b, bool) or not isinstance(b, int | np.integer)]
    if bad:
        raise InvalidRequest(f"bands must be whole band numbers, e.g. 4,3,2; got {list(bands)}.")
    missing = [int(b) for b in bands if b < 1 or b > count]
    if missing:
        raise InvalidRequest(
            f"bands {missing} do not exist: this raster has {count} band(s), numbered 1 to "
            f"{count}. Leave bands empty to use the bands the file identifies as red, green "
            "and blue."
        )
    first = int(bands[0])
    if len(bands) == 1:
        return first, first, first
    return first, int(bands[1]), int(bands[2])


def rgb_bands(ds: DatasetReader, bands: Sequence[int] | None) -> tuple[int, int, int]:
    """The three 1-based bands shown to the model as red, green and blue.

    Args:
        ds: the open dataset.
        bands: the user's choice (1 or 3 bands), or None to use the metadata.

    Raises:
        InvalidRequest: when ``bands`` is malformed or names bands the raster lacks.
    """
    if bands is not None:
        return check_bands(bands, ds.count)
    roles = spectral_bands(ds)
    if all(r in roles for r in ("red", "green", "blue")):
        return roles["red"], roles["green"], roles["blue"]
    alpha = alpha_bands(ds)
    image = [b for b in range(1, ds.count + 1) if b not in alpha] or [1]
    if ds.colorinterp[image[0] - 1].name == "palette" or len(image) < 3:
        return image[0], image[0], image[0]
    return image[0], image[1], image[2]


def is_palette(ds: DatasetReader, rgb: tuple[int, int, int]) -> bool:
    """True when the display bands are one palette (colour-mapped) band."""
    return rgb[0] == rgb[1] == rgb[2] and ds.colorinterp[rgb[0] - 1].name == "palette"


def palette_tables(ds: DatasetReader, band: int) -> tuple[np.ndarray, np.ndarray]:
    """A palette band's colour map as lookup tables.

    Returns:
        ``(rgb, opaque)``: ``(N, 3)`` uint8 colours and ``(N,)`` bool, False for
        entries with zero alpha (transparent: no data). Indexes missing from the
        colour map are black and opaque.
    """
    colormap = ds.colormap(band)
    size = max(256, max(colormap, default=0) + 1)
    rgb = np.zeros((size, 3), dtype=np.uint8)
    opaque = np.ones(size, dtype=bool)
    for index, colour in colormap.items():
        rgb[index] = colour[:3]
        opaque[index] = len(colour) < 4 or colour[3] > 0
    return rgb, opaque


def apply_palette(ds: DatasetReader, plane: np.ndarray, band: int = 1) -> np.ndarray:
    """Expand a palette band's indexes to ``(H, W, 3)`` uint8 RGB through its colour map."""
    rgb, _ = palette_tables(ds, band)
    return rgb[np.clip(plane, 0, len(rgb) - 1).astype(np.intp, copy=False)]


def physical(ds: DatasetReader, band: int, plane: np.ndarray) -> np.ndarray:
    """A band's values as float32 with its GDAL scale and offset applied.

    ``physical = raw * scale + offset``, the convention of GDAL and of Landsat and
    Sentinel-2 reflectance products stored as integers.
    """
    scale = ds.scales[band - 1] if ds.scales else 1.0
    offset = ds.offsets[band - 1] if ds.offsets else 0.0
    scale = 1.0 if scale is None or not math.isfinite(scale) else scale
    offset = 0.0 if offset is None or not math.isfinite(offset) else offset
    out = plane.astype(np.float32)
    if scale != 1.0 or offset != 0.0:
        out *= np.float32(scale)
        out += np.float32(offset)
    return out
