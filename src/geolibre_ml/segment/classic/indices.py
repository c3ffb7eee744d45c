"""Per-pixel class membership in [0, 1], from spectral indices or, for RGB, colour and texture.

A membership of 0.5 means "exactly at the class's decision threshold"; values move
towards 1 (or 0) as the evidence gets stronger, along a logistic curve whose width
says how fast. Each class has rules for two situations:

Spectral (the raster's metadata identified near- or short-wave infrared bands, see
:mod:`geolibre_ml.segment.bands`):

- water: MNDWI = (green - SWIR1) / (green + SWIR1) (Xu 2006) and NDWI = (green - NIR) /
  (green + NIR) (McFeeters 1996), each thresholded at 0 as their authors propose;
  with both bands the pixel must pass both (their fuzzy AND, the minimum), which
  rejects the cloud shadows and flooded vegetation that MNDWI alone lets in.
- vegetation: NDVI = (NIR - red) / (NIR + red) (Rouse et al. 1974; Tucker 1979),
  thresholded at 0.25 (green vegetation; bare soil, rock, water, snow and clouds
  mostly lie below 0.2).

The sign of a normalised difference does not change if both bands carry the same
additive offset, so the water thresholds (at 0) hold for digital numbers, top-of-
atmosphere and surface reflectance alike; NDVI's 0.25 assumes values proportional to
reflectance (see docs/classic.md about products that store reflectance with an offset).

Colour (plain RGB, or bands whose roles are unknown): the displayed colours are used,
as a person would read them.

- vegetation: excess green minus excess red, ExGR = ExG - ExR = 3g - 2.4r - b on
  chromatic coordinates (r = R / (R + G + B), ...) (Woebbecke et al. 1995; Meyer and
  Neto 2008), thresholded at 0, and green above blue (ExGR alone also accepts cyan,
  the colour of shallow water).
- water: blue or cyan (blue above red, not below green) and smooth (low local
  variation of lightness). Water that is green (algae), brown (silt), black or bright
  (sun glint) is missed, and smooth blue-grey surfaces (shadows, some roofs) can be
  taken for water: colour alone cannot do better, which is why rasters with a
  near-infrared band are always read spectrally.

Colour rules read a lightly blurred image and also ask for a minimum absolute colour
difference (two grey levels of 8 bits): the chromaticity of near-black pixels is noise.

All arrays are ``(H, W)`` float32; work is done in strips of rows to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..checkpoints import checkpoint
from ..chip import ImageChip
from .vocabulary import LandCover

#: Rows processed at once (memory: a few float32 planes of this many rows).
STRIP_ROWS = 512

# Thresholds (centres of the logistic) and widths, in index units.
WATER_INDEX_THRESHOLD = 0.0
WATER_INDEX_WIDTH = 0.05
NDVI_THRESHOLD = 0.25
NDVI_WIDTH = 0.05
EXGR_THRESHOLD = 0.0
EXGR_WIDTH = 0.05

# Colour rules for water, on display values scaled to [0, 1] and L* in [0, 100].
WATER_BLUE_MIN = 0.08  # (B - R) / (B + R) above this is "bluer than red"
WATER_GREEN_TOLERANCE = 0.05  # (B - G) / (B + G) may be this far below 0 (cyan water)
WATER_SMOOTH_MAX_STD = 5.0  # local standard deviation of L* (0-100) for "smooth"
WATER_SMOOTH_WINDOW = 5  # pixels: diameter of the disk the deviation is taken over

#: Colour differences smaller than this (on 0-1, about 2 grey levels of 8 bits) are
#: noise: near-black pixels have wild chromaticities.
COLOUR_MIN_DIFFERENCE = 2 / 255
#: Gaussian blur (pixels) of display colours before colour rules; rows of context.
COLOUR_BLUR_SIGMA = 1.0
COLOUR_HALO = 8


@dataclass(frozen=True)
class Membership:
    """A class membership map and how it was computed.

    Attributes:
        values: ``(H, W)`` float32 in [0, 1]; 0 on pixels that are not valid.
        method: the rule used, in words (e.g. ``"MNDWI and NDWI (green, SWIR1, NIR)"``).
    """

    values: np.ndarray
    method: str


def logistic(x: np.ndarray, threshold: float, width: float) -> np.ndarray:
    """``1 / (1 + exp(-(x - threshold) / width))`` as float32: 0.5 at the threshold."""
    # In place on one float32 buffer: this runs on every pixel of every class.
    z = np.subtract(x, np.float32(threshold), dtype=np.float32)
    z *= np.float32(-1.0 / width)
    np.clip(z, -30, 30, out=z)
    np.exp(z, out=z)
    z += np.float32(1.0)
    return np.reciprocal(z, out=z)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` in [-1, 1], float32; 0 where ``a + b`` is not positive or NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    total = a + b
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.float32)
    np.divide(a - b, total, out=out, where=np.isfinite(total) & (total > 0))
    return np.clip(out, -1.0, 1.0, out=out)


def membership(chip: ImageChip, cls: LandCover) -> Membership:
    """Per-pixel membership of ``cls`` on ``chip`` (0 on invalid pixels).

    Raises:
        ValueError: for a class without rules (a programming error: the vocabulary
            and this module list the same classes).
    """
    rules = _RULES.get(cls.name)
    if rules is None:
        raise ValueError(f"no membership rule for class {cls.name!r}")
    return rules(chip)


# -- water ------------------------------------------------------------------------------


def water(chip: ImageChip) -> Membership:
    """Water membership: MNDWI and/or NDWI when SWIR1/NIR are known, else colour."""
    s = chip.spectral
    if "green" in s and ("swir1" in s or "nir" in s):
        used = [k for k in ("swir1", "nir") if k in s]

        def rule(rows: slice) -> np.ndarray:
            green = s["green"][rows]
            out = _defined(green, *(s[key][rows] for key in used))
            for key in used:
                m = logistic(
                    normalized_difference(green, s[key][rows]),
                    WATER_INDEX_THRESHOLD,
                    WATER_INDEX_WIDTH,
                )
                np.minimum(out, m, out=out)
            return out

        names = {"swir1": "MNDWI", "nir": "NDWI"}
        method = " and ".join(names[k] for k in used) + f" (green, {', '.join(used)})"
        return Membership(_spectral_strips(chip, rule), method)
    method = "colour (blue or cyan, smooth)"
    return Membership(_colour_strips(chip, _water_colour, halo=COLOUR_HALO), method)


def _water_colour(rgb: np.ndarray) -> np.ndarray:
    f = _display_colour(rgb)
    red, green, blue = f[..., 0], f[..., 1], f[..., 2]
    bluish = logistic(normalized_difference(blue, red), WATER_BLUE_MIN, 0.03)
    bluish *= logistic(blue - red, COLOUR_MIN_DIFFERENCE, COLOUR_MIN_DIFFERENCE / 4)
    bluish *= logistic(normalized_difference(blue, green), -WATER_GREEN_TOLERANCE, 0.02)
    return bluish * _smooth(rgb)


def _smooth(rgb: np.ndarray) -> np.ndarray:
    """Smoothness membership: low local standard deviation of lightness (L*, 0-100).

    Water is smooth at every resolution, vegetation and built-up land are not. Three
    things keep a speck from cutting a hole in water:

    - a 3 x 3 median first removes isolated bright or dark pixels (glint, a boat);
    - the standard deviation is taken over a disk, not a box, so what remains rough
      around a small cloud is round, not the square footprint of a box filter;
    - the smoothness is then dilated by the same disk: a pixel is rough only if
      every window it falls in is, so the rim that the window adds around a cloud
      (all pixels within its radius) shrinks back to the cloud's own edge, while a
      textured surface, rough everywhere, stays rough.
    """
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0]
    lightness = cv2.medianBlur(np.ascontiguousarray(lightness), 3).astype(np.float32)
    lightness *= np.float32(100 / 255)
    disk = _disk(WATER_SMOOTH_WINDOW)
    window = disk.astype(np.float32) / np.float32(disk.sum())
    mean = cv2.filter2D(lightness, -1, window, borderType=cv2.BORDER_REFLECT)
    square = cv2.filter2D(lightness * lightness, -1, window, borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(square - mean * mean, 0))
    smooth = logistic(-std, -WATER_SMOOTH_MAX_STD, 1.0)
    return cv2.dilate(smooth, disk, borderType=cv2.BORDER_REFLECT)


def _disk(diameter: int) -> np.ndarray:
    """A round structuring element (uint8) of ``diameter`` pixels (odd)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


# -- vegetation -------------------------------------------------------------------------


def vegetation(chip: ImageChip) -> Membership:
    """Vegetation membership: NDVI when NIR and red are known, else excess green."""
    s = chip.spectral
    if "nir" in s and "red" in s:

        def rule(rows: slice) -> np.ndarray:
            nir, red = s["nir"][rows], s["red"][rows]
            ndvi = normalized_difference(nir, red)
            return logistic(ndvi, NDVI_THRESHOLD, NDVI_WIDTH) * _defined(nir, red)

        return Membership(_spectral_strips(chip, rule), "NDVI (NIR, red)")

    def colour(rgb: np.ndarray) -> np.ndarray:
        return _green_colour(_display_colour(rgb))

    return Membership(_colour_strips(chip, colour, halo=COLOUR_HALO), "colour (ExG - ExR)")


def _green_colour(f: np.ndarray) -> np.ndarray:
    """Green-vegetation membership from display colours scaled to [0, 1]."""
    red, green, blue = f[..., 0], f[..., 1], f[..., 2]
    excess = 3.0 * green - 2.4 * red - blue
    exgr = excess / np.maximum(red + green + blue, 1e-6)
    m = logistic(exgr, EXGR_THRESHOLD, EXGR_WIDTH)
    # ExGR also rises for cyan (green and blue both high: shallow water); leaves
    # reflect more green than blue.
    m *= logistic(normalized_difference(green, blue), 0.0, 0.02)
    return m * logistic(excess, COLOUR_MIN_DIFFERENCE, COLOUR_MIN_DIFFERENCE / 4)


def _display_colour(rgb: np.ndarray) -> np.ndarray:
    # Chromaticity of single 8-bit pixels is noisy in dark areas; a light blur
    # averages the noise out before colours are compared.
    f = rgb.astype(np.float32) * np.float32(1 / 255)
    return cv2.GaussianBlur(f, (0, 0), COLOUR_BLUR_SIGMA)


# -- helpers ----------------------------------------------------------------------------


def _spectral_strips(chip: ImageChip, rule: Callable[[slice], np.ndarray]) -> np.ndarray:
    """Run a per-pixel spectral ``rule(rows)`` strip by strip (it reads ``chip.spectral``)."""
    height, width = chip.shape
    out = np.zeros((height, width), dtype=np.float32)
    for top in range(0, height, STRIP_ROWS):
        checkpoint()
        rows = slice(top, min(top + STRIP_ROWS, height))
        out[rows] = rule(rows)
    return _finish(out, chip.valid)


def _colour_strips(
    chip: ImageChip, rule: Callable[[np.ndarray], np.ndarray], *, halo: int
) -> np.ndarray:
    """Run a colour ``rule(rgb)`` strip by strip, with ``halo`` rows of context each side."""
    height, width = chip.shape
    out = np.zeros((height, width), dtype=np.float32)
    for top in range(0, height, STRIP_ROWS):
        checkpoint()
        bottom = min(top + STRIP_ROWS, height)
        lo, hi = max(top - halo, 0), min(bottom + halo, height)
        out[top:bottom] = rule(chip.rgb[lo:hi])[top - lo : bottom - lo]
    return _finish(out, chip.valid)


def _defined(*planes: np.ndarray) -> np.ndarray:
    """1.0 where every plane holds a finite value, 0.0 elsewhere (a band's own nodata).

    An index of a pixel where one band is missing says nothing: its membership is 0,
    not the 0.5 of an index of 0.
    """
    out = np.ones(planes[0].shape, dtype=np.float32)
    for plane in planes:
        out[~np.isfinite(plane)] = 0
    return out


def _finish(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    np.nan_to_num(values, copy=False, nan=0.0)
    values[~valid] = 0
    return values


_RULES: dict[str, Callable[[ImageChip], Membership]] = {
    "water": water,
    "vegetation": vegetation,
}
