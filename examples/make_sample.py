"""Write examples/sample.tif: a synthetic 4-band aerial image to try geolibre-ml on.

The image is made up, not a photograph: a 512 x 512 scene at 1 m per pixel,
like a summer aerial orthophoto with a near-infrared band (red, green, blue,
NIR; 8-bit, reflectance = value x 0.002), in UTM zone 32N. It holds a lake and
the river leaving it, forest with individual tree crowns, hedgerows and an
orchard, fields of wheat, maize, rapeseed, stubble and ploughed soil, a road
with a bridge, a farm track, a farmstead and a few houses.

It is built the way a real image forms: a land-cover map, a surface height model
(tree crowns, roofs), sunlight and cast shadows from that model, reflectance
spectra per material with natural texture, a little optical blur and sensor
noise. The random generator is seeded, so every run writes the same file (with
the same numpy and scipy versions).

Run from the repository root (``make sample`` does the same)::

    .venv/bin/python examples/make_sample.py [OUTPUT.tif]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from scipy import ndimage
from scipy.spatial import cKDTree

SIZE = 512  # pixels; 1 m each
CRS = "EPSG:32632"  # WGS 84 / UTM zone 32N
ORIGIN = (431_200.0, 5_362_800.0)  # west, north: farmland in south-west Germany
SEED = 20_240_917
SCALE = 0.002  # reflectance per digital number
SUN_AZIMUTH = 150.0  # degrees clockwise from north: late morning
SUN_ELEVATION = 52.0  # degrees

# Reflectance (0-1) of each material in red, green, blue, near-infrared.
SPECTRA: dict[str, tuple[float, float, float, float]] = {
    "deep_water": (0.018, 0.034, 0.033, 0.009),
    "shallow_water": (0.040, 0.060, 0.050, 0.022),
    "river": (0.036, 0.056, 0.048, 0.020),
    "reeds": (0.060, 0.088, 0.048, 0.270),
    "meadow": (0.058, 0.098, 0.048, 0.330),
    "dry_grass": (0.105, 0.120, 0.070, 0.290),
    "understory": (0.040, 0.066, 0.034, 0.230),
    "broadleaf": (0.042, 0.084, 0.038, 0.400),
    "conifer": (0.028, 0.056, 0.032, 0.260),
    "wheat": (0.200, 0.172, 0.100, 0.300),
    "maize": (0.045, 0.088, 0.040, 0.430),
    "rapeseed": (0.140, 0.160, 0.055, 0.370),
    "stubble": (0.215, 0.190, 0.140, 0.275),
    "soil": (0.125, 0.098, 0.072, 0.180),
    "asphalt": (0.086, 0.083, 0.078, 0.095),
    "verge": (0.110, 0.112, 0.090, 0.200),
    "gravel": (0.168, 0.156, 0.126, 0.205),
    "dirt": (0.140, 0.118, 0.090, 0.205),
    "paving": (0.160, 0.152, 0.132, 0.175),
    "red_roof": (0.190, 0.088, 0.066, 0.205),
    "grey_roof": (0.200, 0.203, 0.200, 0.225),
    "dark_roof": (0.080, 0.080, 0.088, 0.100),
}
NO_TREES = ("deep_water", "shallow_water", "river", "asphalt", "verge", "gravel", "dirt", "paving")
ROOFS = ("red_roof", "grey_roof", "dark_roof")


class Scene:
    """The image under construction: reflectance, surface heights, texture, land cover."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.y, self.x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
        self.names = list(SPECTRA)
        self.cover = np.zeros((SIZE, SIZE), dtype=np.int16)  # material index, last painted
        self.reflectance = np.zeros((SIZE, SIZE, 4))
        self.height = np.zeros((SIZE, SIZE))  # metres above ground
        self.tone = np.ones((SIZE, SIZE))  # brightness texture, multiplies reflectance
        self.crown = np.full((SIZE, SIZE), -1, dtype=np.int32)  # tree crown id, -1 none
        self.hedges = np.zeros((SIZE, SIZE), dtype=bool)  # field margins with hedgerows

    def spectrum(self, material: str) -> np.ndarray:
        return np.asarray(SPECTRA[material])

    def paint(self, where: np.ndarray, material: str) -> None:
        """Cover ``where`` (a mask, or weights 0-1 that blend) with ``material``."""
        if where.dtype == bool:
            self.reflectance[where] = self.spectrum(material)
            self.cover[where] = self.names.index(material)
            return
        weight = np.clip(where, 0.0, 1.0)[..., None]
        self.reflectance = self.reflectance * (1 - weight) + self.spectrum(material) * weight
        self.cover[where > 0.5] = self.names.index(material)

    def is_(self, *materials: str) -> np.ndarray:
        return np.isin(self.cover, [self.names.index(m) for m in materials])

    def noise(self, scale: float) -> np.ndarray:
        """Smooth random field with features of about ``scale`` pixels; mean 0, std 1."""
        cells = int(np.ceil(SIZE / scale)) + 4
        coarse = self.rng.standard_normal((cells, cells))
        field = ndimage.zoom(coarse, scale, order=3)[:SIZE, :SIZE]
        return (field - field.mean()) / field.std()


def polyline_distance(points: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre to a densely sampled polyline, in pixels."""
    distance, _ = cKDTree(points).query(np.column_stack([x.ravel(), y.ravel()]))
    return distance.reshape(x.shape)


def road_x(y: np.ndarray | float) -> np.ndarray:
    """The main road's centreline: x as a function of y."""
    return 318.0 + 22.0 * np.sin(np.asarray(y) / 95.0 + 0.6)


def river_line() -> np.ndarray:
    """The river's centreline, from the lake outlet to the eastern edge."""
    t = np.linspace(0.0, 1.0, 1400)
    x = 188.0 + t * 340.0
    y = 150.0 + t * 270.0 + 38.0 * np.sin(t * 9.0) + 12.0 * np.sin(t * 23.0 + 1.0)
    return np.column_stack([x, y])


def smoothstep(value: np.ndarray, low: float, high: float) -> np.ndarray:
    t = np.clip((value - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def build(scene: Scene) -> None:
    """Draw the landscape: land cover and texture, then heights of roofs and trees."""
    s, x, y = scene, scene.x, scene.y

    # Grassland everywhere to start with, drier on the knolls.
    s.paint(np.ones_like(x, dtype=bool), "meadow")
    s.paint(0.8 * smoothstep(s.noise(50) + 0.3 * s.noise(9), 0.7, 1.6), "dry_grass")
    s.tone *= 1 + 0.06 * s.noise(8) + 0.05 * s.noise(2.5)

    shore = np.hypot((x - 118) / 92, (y - 128) / 70) + 0.13 * s.noise(38)
    lake = shore < 1.0
    river_centre = river_line()
    river_distance = polyline_distance(river_centre, y, x)
    half_width = 5.0 + 1.5 * np.sin(x / 37.0)
    river = (river_distance < half_width) & ~lake
    road_distance = np.abs(x - road_x(y)) * np.cos(np.arctan(0.23))
    farm = (x > road_x(y) + 10) & (x < road_x(y) + 150) & (y > 30) & (y < 185)
    riparian = river_distance < half_width + 9

    _fields(s, lake, farm, riparian)
    forest = _forest(s, lake | riparian | (road_distance < 12) | farm, shore)

    # The lake darkens with depth; reeds along part of the south shore.
    s.paint(lake, "shallow_water")
    s.paint(np.where(lake, smoothstep(1.0 - shore, 0.03, 0.25), 0.0), "deep_water")
    reeds = (shore > 0.93) & (shore < 1.03) & (y > 128) & (s.noise(12) > -0.2)
    s.paint(reeds, "reeds")
    s.tone[reeds] *= 1 + 0.12 * s.noise(1.5)[reeds]
    s.paint(river, "river")
    water = lake | river
    s.tone[water] = 1 + 0.025 * s.noise(5)[water]

    # A farm track west from the road, then the road with verges and a bridge.
    track_offset = np.abs(y - (395 + 0.08 * (x - 300)))
    track = (track_offset < 2.0) & (x > 150) & (x < road_x(y))
    s.paint(track & ~river, "dirt")
    s.paint(np.where(track, 0.7 * (track_offset < 0.6), 0.0), "dry_grass")  # grass between ruts
    s.tone[track] *= 1 + 0.12 * s.noise(1.5)[track]
    s.paint(road_distance < 5.2, "verge")
    s.paint(road_distance < 3.6, "asphalt")
    on_road = road_distance < 5.2
    s.tone[on_road] = 1 + 0.04 * s.noise(1.5)[on_road]
    s.height[(road_distance < 5.2) & (river_distance < half_width + 4)] = 2.5  # the bridge

    _farmstead(s)
    _trees(s, forest, river_centre, half_width)


def _fields(s: Scene, lake: np.ndarray, farm: np.ndarray, riparian: np.ndarray) -> None:
    """Parcels of crops east of the road and in the south-west, with grass margins."""
    rng, x, y = s.rng, s.x, s.y
    angle = np.deg2rad(9.0)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    u_edges = np.cumsum(rng.uniform(70, 150, 12)) - 40
    col = np.searchsorted(u_edges, u)
    # Each strip of parcels is cut at its own places, as fields are.
    stagger = rng.uniform(0, 70, len(u_edges) + 1)[col]
    v_edges = np.cumsum(rng.uniform(60, 140, 12)) - 160
    row = np.searchsorted(v_edges, v - stagger)
    parcel = col * 100 + row
    east = x > road_x(y) + 14
    south_west = (y > 240) & (x < road_x(y) - 14) & (x > 145)
    fields = (east | south_west) & ~farm & ~riparian & ~lake
    u_near = np.minimum(
        np.abs(u - u_edges[np.clip(col, 0, len(u_edges) - 1)]),
        np.abs(u - u_edges[np.clip(col - 1, 0, len(u_edges) - 1)]),
    )
    v_shift = v - stagger
    v_near = np.minimum(
        np.abs(v_shift - v_edges[np.clip(row, 0, len(v_edges) - 1)]),
        np.abs(v_shift - v_edges[np.clip(row - 1, 0, len(v_edges) - 1)]),
    )
    margin = (u_near < 1.5) | (v_near < 1.5)
    crops = ["wheat", "maize", "rapeseed", "stubble", "soil", "wheat", "maize", "dry_grass"]
    within = s.noise(30)
    for pid in np.unique(parcel[fields]):
        inside = fields & (parcel == pid) & ~margin
        crop = crops[rng.integers(len(crops))]
        s.paint(inside, crop)
        along = (u if rng.random() < 0.5 else v)[inside]
        texture = 1 + 0.05 * within[inside] + 0.025 * s.noise(2)[inside]
        if crop == "soil":  # plough strips
            texture *= 1 + 0.09 * np.sin(2 * np.pi * along / 3.5)
        elif crop == "stubble":  # the swaths of a combine harvester
            texture *= 1 + 0.07 * np.sin(2 * np.pi * along / 6.0)
        elif crop == "wheat":  # tractor tramlines, 20 m apart
            texture *= 1 - 0.2 * (np.abs((along / 20.0) % 1.0 - 0.5) < 0.06)
        else:
            texture *= 1 + 0.06 * s.noise(3)[inside]
        s.tone[inside] *= texture
    # Hedgerows grow on a few of the margins.
    s.hedges = fields & margin & (np.abs(np.sin(parcel * 1.7)) > 0.6)


def _forest(s: Scene, excluded: np.ndarray, shore: np.ndarray) -> np.ndarray:
    """Where forest grows: north and west of the lake, a woodlot south-west, a copse east."""
    x, y = s.x, s.y
    bias = (
        1.7 * np.exp(-(((x - 60) / 130) ** 2 + ((y + 10) / 70) ** 2))
        + 1.6 * np.exp(-(((x - 80) / 80) ** 2 + ((y - 420) / 70) ** 2))
        + 1.0 * np.exp(-(((x - 470) / 40) ** 2 + ((y - 250) / 35) ** 2))
    )
    forest = (bias + 0.3 * s.noise(25) > 0.7) & ~excluded & (shore > 1.08)
    forest &= ~s.is_("wheat", "maize", "rapeseed", "stubble", "soil") | (bias > 0.9)
    s.paint(forest, "understory")
    return forest


def _farmstead(s: Scene) -> None:
    """A gravel yard with houses under gable roofs, a barn and a shed; one more house south."""
    x, y = s.x, s.y
    yard = (np.abs(x - road_x(y) - 45) < 31) & (np.abs(y - 106) < 46)
    s.paint(yard, "gravel")
    s.tone[yard] *= 1 + 0.07 * s.noise(3)[yard] + 0.04 * s.noise(1)[yard]
    # Three houses with paved drives further south, on the other side of the road.
    for cy in (445.0, 472.0, 499.0):
        drive = (x > road_x(y) - 24) & (x < road_x(y) - 5) & (np.abs(y - cy) < 2.2)
        s.paint(drive, "paving")
    buildings = [
        # x from the road, y, length, width, eave and ridge height, roof, turned 90 degrees
        (30, 76, 16, 10, 5.0, 8.5, "red_roof", False),
        (58, 80, 32, 17, 5.5, 9.5, "grey_roof", False),
        (31, 128, 13, 9, 4.5, 7.5, "red_roof", True),
        (62, 136, 12, 7, 3.0, 3.2, "dark_roof", True),
        (13, 248, 15, 11, 5.0, 8.5, "red_roof", False),
        (-33, 440, 12, 9, 4.5, 7.5, "red_roof", True),
        (-34, 468, 13, 10, 4.5, 8.0, "dark_roof", True),
        (-32, 497, 11, 9, 4.5, 7.0, "red_roof", True),
    ]
    for dx, cy, length, width, eave, ridge, roof, turned in buildings:
        cx = float(road_x(cy)) + dx
        theta = np.deg2rad(9.0 + (90 if turned else 0))
        along = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
        across = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
        footprint = (np.abs(along) < length / 2) & (np.abs(across) < width / 2)
        profile = eave + (ridge - eave) * (1 - np.abs(across) / (width / 2))
        s.height[footprint] = profile[footprint]
        s.paint(footprint, roof)
        s.tone[footprint] = 1 + 0.02 * s.noise(1.2)[footprint]


def _trees(s: Scene, forest: np.ndarray, river_centre: np.ndarray, half_width: np.ndarray) -> None:
    """Tree crowns as domes (broadleaf) and cones (conifer) in the height model."""
    rng = s.rng
    crowns: list[tuple[float, float, float, float, str]] = []  # x, y, radius, top, material

    def add(
        px: np.ndarray,
        py: np.ndarray,
        radius: tuple[float, float],
        kind: str,
        top: tuple[float, float] = (12.0, 17.0),
    ) -> None:
        for cx, cy in zip(px, py, strict=True):
            material = kind
            if kind == "mixed":
                material = "conifer" if rng.random() < 0.35 else "broadleaf"
            r = rng.uniform(*radius) * (0.8 if material == "conifer" else 1.0)
            crowns.append((cx, cy, r, rng.uniform(*top), material))

    # Forest: a jittered grid, a few gaps.
    gx, gy = np.mgrid[0:SIZE:4.4, 0:SIZE:4.4]
    gx = gx.ravel() + rng.uniform(-1.6, 1.6, gx.size)
    gy = gy.ravel() + rng.uniform(-1.6, 1.6, gy.size)
    ix, iy = np.clip(gx.astype(int), 0, SIZE - 1), np.clip(gy.astype(int), 0, SIZE - 1)
    keep = forest[iy, ix] & (rng.random(gx.size) > 0.06)
    add(gx[keep], gy[keep], (2.6, 4.2), "mixed", (17.0, 21.0))

    # An orchard east of the farmyard.
    ox, oy = np.mgrid[0:6, 0:5] * 8.0
    add(ox.ravel() + float(road_x(95.0)) + 92, oy.ravel() + 92, (1.8, 2.5), "broadleaf", (4, 6))

    # Trees along both banks of the river.
    step = river_centre[::14]
    tangent = np.gradient(step, axis=0)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    for side in (-1, 1):
        bank = step + side * normal * (half_width.mean() + 4.5)
        chosen = rng.random(len(bank)) < 0.55
        add(
            bank[chosen, 0] + rng.normal(0, 1.2, chosen.sum()),
            bank[chosen, 1] + rng.normal(0, 1.2, chosen.sum()),
            (2.5, 4.5),
            "broadleaf",
        )

    # Hedgerows: shrubs and small trees along some field margins.
    hy, hx = np.nonzero(s.hedges)
    pick = rng.random(hx.size) < 0.085
    add(hx[pick] + 0.5, hy[pick] + 0.5, (1.5, 2.6), "broadleaf", (4.0, 9.0))

    # An avenue along the road, trees around the lake and alone in the meadows.
    ay = np.arange(175.0, 360.0, 13.0)
    for side in (-1, 1):
        add(road_x(ay) + side * 9.0, ay, (2.6, 3.4), "broadleaf", (10.0, 14.0))
    angles = rng.uniform(0, 2 * np.pi, 40)
    add(118 + 97 * np.cos(angles), 128 + 75 * np.sin(angles), (2.2, 4.0), "mixed")
    lone = rng.uniform(0, SIZE, (80, 2))
    on_grass = s.is_("meadow", "dry_grass")[lone[:, 1].astype(int), lone[:, 0].astype(int)]
    lone = lone[on_grass][:16]
    add(lone[:, 0], lone[:, 1], (3.0, 5.0), "broadleaf")

    barred = s.is_(*NO_TREES, *ROOFS)
    for index, (cx, cy, r, top, material) in enumerate(crowns):
        if not (0 <= cx < SIZE and 0 <= cy < SIZE) or barred[int(cy), int(cx)]:
            continue
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, SIZE)
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, SIZE)
        d = np.hypot(s.x[y0:y1, x0:x1] - cx, s.y[y0:y1, x0:x1] - cy) / r
        if material == "conifer":
            z = top - 0.45 * top * d  # a cone
        else:
            z = top - r + r * np.sqrt(np.clip(1 - d**2, 0, 1))  # a dome
        patch = s.height[y0:y1, x0:x1]
        higher = (d < 1) & (z > patch) & ~barred[y0:y1, x0:x1]
        patch[higher] = z[higher]
        s.crown[y0:y1, x0:x1][higher] = index
        s.reflectance[y0:y1, x0:x1][higher] = s.spectrum(material)
        s.cover[y0:y1, x0:x1][higher] = s.names.index(material)


def render(scene: Scene) -> np.ndarray:
    """Reflectance to 8-bit bands (red, green, blue, NIR) under the sun, with shadows."""
    s, rng = scene, scene.rng
    tone = s.tone.copy()
    # Each tree crown a little different, its leaves speckled.
    crown_tone = 1 + 0.1 * rng.standard_normal(max(int(s.crown.max()) + 1, 1))
    in_crown = s.crown >= 0
    tone[in_crown] = crown_tone[s.crown[in_crown]] * (1 + 0.07 * s.noise(1.2)[in_crown])

    # Sunlight on the surface model: crowns lit on their sunny side, gable roofs in two tones.
    az, el = np.deg2rad(SUN_AZIMUTH), np.deg2rad(SUN_ELEVATION)
    sun = np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])  # E, N, up
    surface = ndimage.gaussian_filter(s.height, 0.6)
    dz_dy, dz_dx = np.gradient(surface)
    normal = np.stack([-dz_dx, dz_dy, np.ones_like(surface)])  # image y grows southwards
    normal /= np.linalg.norm(normal, axis=0)
    lit = np.clip(np.tensordot(sun, normal, axes=1), 0.0, None) / np.sin(el)
    lit = 0.3 + 0.7 * lit  # skylight reaches the sides turned away from the sun

    # Cast shadows: march towards the sun and see whether something stands in the way.
    shadow = np.zeros(surface.shape, dtype=bool)
    step_x, step_y = np.sin(az), -np.cos(az)  # one pixel towards the sun, in image axes
    rise = np.tan(el)
    pad = 40
    padded = np.pad(s.height, pad, mode="edge")
    for t in np.arange(1.0, 36.0, 0.7):
        ox, oy = round(pad + step_x * t), round(pad + step_y * t)
        ahead = padded[oy : oy + SIZE, ox : ox + SIZE]
        shadow |= ahead > s.height + t * rise + 0.3
    shade = np.where(shadow, 0.42, 1.0) * np.where(s.height > 0.5, lit, 1.0)
    shade = ndimage.gaussian_filter(shade, 0.5)

    light = 1 + 0.03 * s.noise(90)  # thin haze, uneven illumination
    bands = s.reflectance * (tone * shade * light)[..., None]
    bands[..., 3] *= np.where(shadow, 1.2, 1.0)  # leaves scatter NIR into the shade
    bands = ndimage.gaussian_filter(bands, sigma=(0.5, 0.5, 0))  # the lens
    digital = bands / SCALE + rng.normal(0, 0.7, bands.shape)  # sensor noise
    return np.clip(np.rint(digital), 1, 255).astype(np.uint8).transpose(2, 0, 1)


def write(path: Path, bands: np.ndarray) -> None:
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 4,
        "dtype": "uint8",
        "crs": CRS,
        "transform": from_origin(*ORIGIN, 1.0, 1.0),
        "photometric": "RGB",
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 9,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "pixel",
    }
    names = ("red", "green", "blue", "nir")
    wavelengths = ("0.650", "0.560", "0.480", "0.830")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.colorinterp = [
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
            ColorInterp.undefined,
        ]
        for band, (name, wavelength) in enumerate(zip(names, wavelengths, strict=True), start=1):
            dst.set_band_description(band, name)
            dst.update_tags(band, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=wavelength)
        dst.scales = (SCALE,) * 4
        dst.offsets = (0.0,) * 4
        dst.update_tags(
            TIFFTAG_IMAGEDESCRIPTION=(
                "Synthetic sample image (not a photograph) generated by "
                "examples/make_sample.py of geolibre-ml. Bands: red, green, blue, "
                f"near-infrared; reflectance = value x {SCALE}."
            ),
            TIFFTAG_SOFTWARE="geolibre-ml examples/make_sample.py",
        )


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("sample.tif")
    scene = Scene()
    build(scene)
    write(out, render(scene))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
