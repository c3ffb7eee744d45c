"""Benchmark: classic automatic on a very large RGB GeoTIFF (issue 9: tiling, bounded memory).

One run segments a synthetic 8192 x 8192 (``--size 20000``: 20,000 x 20,000) landscape
with the classic model in automatic mode and measures:

- **over HTTP** (the default): a fresh ``python -m geolibre_ml model-server`` (this
  tree's ``src`` first on ``PYTHONPATH``), ``GEOLIBRE_ML_DATA_ROOTS`` set to the raster's
  folder, one ``POST /segment/automatic`` with ``source=<path>`` (so no 1.2 GB upload is
  timed; ``--upload`` sends it as ``file`` instead), the GeoJSON answer streamed to a file;
- **through the CLI** (``--cli``): ``python -m geolibre_ml segment IMAGE -o OUT.geojson
  --mode automatic --model classic``, the previous baseline (19.9 s, 2.08 GiB for 8192).

For each: wall time (request sent to the last byte of the answer; CLI spawn to exit),
the feature count, the answer's size, and the **peak memory of the whole process tree**:
the resident memory (RSS) of the process and all its children, summed, sampled every
``--sample-ms`` (50) ms with psutil, and each live process's ``VmHWM`` read from
``/proc/PID/status`` just before the server is stopped (the CLI's own at exit is not
readable, so the sampled figure is the one to compare).

Guards, so a run that today cannot fit is recorded instead of taking the machine down:
``--timeout-s`` (300) kills the run past that wall time and ``--kill-above-mib`` (10240)
kills it when the tree's RSS passes that; the JSON then says which happened and when.
Pixel, upload and memory caps of the server are raised so that a large raster is not
refused before it is tried (``GEOLIBRE_ML_MAX_PIXELS`` at least the raster's pixel count;
``GEOLIBRE_ML_MAX_UPLOAD_MB`` above its file size).

The landscape (fields with crop rows on a rotated grid, field margins, forest with crown
texture, lakes in the low ground and a river crossing the raster, highways and a winding
road crossing the whole raster, villages of house blocks along streets, illumination and
sensor noise) is a pure function of global pixel coordinates: it is generated and written
window by window (tiled 512 x 512, deflate; never the whole raster in memory) and is the
same whatever the window. It is cached as ``--data-dir``/landscape-SIZE-v1.tif
(``/work/bench-data`` by default, outside the repository).

Usage::

    python bench/bench_tiling.py                      # 8192, over HTTP, JSON on stdout
    python bench/bench_tiling.py --cli                # 8192, through the CLI
    python bench/bench_tiling.py --size 20000 --timeout-s 300
    python bench/bench_tiling.py --upload             # send the raster as a multipart file

Goals (issue 9): 8192 no slower than 19.9 s with the model server's peak under 1 GiB;
20,000 under 2 minutes with the same 1 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).parent))

from bench_classic import model_server

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path("/work/bench-data")
#: Bump when the landscape changes, so a cached raster of the old one is not reused.
LANDSCAPE_VERSION = 1
MIB = 1 << 20

#: The issue's goals: (seconds, MiB of the whole model server's peak) per raster edge.
GOALS = {8192: (19.9, 1024.0), 20000: (120.0, 1024.0)}
#: Measured before issue 9, one piece, through the CLI (the issue's figures).
PREVIOUS_BASELINE = {"size": 8192, "seconds": 19.9, "peak_gib": 2.08, "via": "cli"}

#: Edge of the windows the landscape is generated and written in (a multiple of 512).
GEN_WINDOW = 2048
#: Extra pixels generated around each window so blurs and anti-aliasing see their
#: neighbours: the written pixels do not depend on where windows start.
GEN_PAD = 32


# -- the landscape, as a function of global pixel coordinates --------------------------------


def hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A float32 in [0, 1) for each integer lattice point ``(ix, iy)`` (broadcast),
    the same wherever it is asked for: the basis of every texture, so windows agree."""
    h = (ix.astype(np.uint32) * np.uint32(0x27D4EB2D)) ^ (
        iy.astype(np.uint32) * np.uint32(0x165667B1)
    )
    h ^= np.uint32((seed * 0x9E3779B1) & 0xFFFFFFFF)
    # A murmur-style finaliser: neighbouring lattice points get unrelated values.
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)


def value_noise(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth noise in about [0, 1] with features of ``scale`` pixels, on the pixel grid
    ``ys`` x ``xs`` (1-D global coordinates), ``(len(ys), len(xs))`` float32.

    Random values on a lattice every ``scale`` pixels, interpolated bicubically
    (``cv2.remap``): only the lattice around the window is hashed.
    """
    gx, gy = xs / scale, ys / scale
    x0, y0 = int(np.floor(gx[0])) - 2, int(np.floor(gy[0])) - 2
    nx, ny = int(np.ceil(gx[-1])) - x0 + 3, int(np.ceil(gy[-1])) - y0 + 3
    lattice = hash01(
        np.arange(x0, x0 + nx)[None, :] & 0xFFFFFF, np.arange(y0, y0 + ny)[:, None] & 0xFFFFFF, seed
    )
    map_x = np.ascontiguousarray(
        np.broadcast_to((gx - x0).astype(np.float32)[None, :], (len(ys), len(xs)))
    )
    map_y = np.ascontiguousarray(
        np.broadcast_to((gy - y0).astype(np.float32)[:, None], (len(ys), len(xs)))
    )
    return cv2.remap(lattice, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def fbm(xs: np.ndarray, ys: np.ndarray, scale: float, octaves: int, seed: int) -> np.ndarray:
    """Fractal (multi-octave) noise normalised to about [0, 1]: the largest features
    ``scale`` pixels, each octave half the size and half the weight."""
    out = np.zeros((len(ys), len(xs)), np.float32)
    total = 0.0
    for octave in range(octaves):
        weight = 0.5**octave
        out += weight * value_noise(xs, ys, scale / 2**octave, seed * 31 + octave)
        total += weight
    out /= total
    # Sums of uniform octaves crowd around 0.5: stretch so thresholds cut real areas.
    return np.clip((out - 0.5) * 2.2 + 0.5, 0.0, 1.0)


CROPS = np.array(
    [
        [96, 128, 58],  # young cereal
        [150, 160, 80],  # ripening cereal
        [196, 176, 110],  # stubble
        [120, 92, 66],  # ploughed soil
        [84, 116, 60],  # maize
        [170, 150, 120],  # bare dry soil
        [110, 140, 70],  # grassland
    ],
    dtype=np.float32,
)
ROOFS = np.array([(168, 76, 58), (140, 64, 52), (120, 120, 124), (180, 96, 70), (96, 96, 104)])


@dataclass
class Layout:
    """The raster-wide features of a landscape of ``size`` pixels (1 m each), in global
    pixel coordinates (x right, y down), drawn by :func:`render_window` in any window.

    Attributes:
        col_edges, row_edges: field parcel edges along the two axes of the parcel grid
            (rotated by ``angle`` radians), offset by ``size``.
        roads: ``(points (n, 2) int32, width px, RGB)`` polylines; the highways cross
            the whole raster.
        rects: ``(n, 7)`` int32 filled rectangles ``x0, y0, x1, y1, r, g, b`` drawn in
            order: village grounds, streets, then houses.
    """

    size: int
    seed: int
    angle: float
    col_edges: np.ndarray
    row_edges: np.ndarray
    roads: list[tuple[np.ndarray, int, tuple[int, int, int]]] = field(default_factory=list)
    rects: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.int32))


def make_layout(size: int, seed: int = 42) -> Layout:
    """Parcels, roads and villages for a ``size`` x ``size`` landscape (deterministic)."""
    rng = np.random.default_rng(seed)
    reach = 3 * size  # parcel axes run over [-size, 2 size] after the rotation
    col_edges = np.cumsum(rng.integers(120, 300, reach // 120 + 2))
    row_edges = np.cumsum(rng.integers(120, 300, reach // 120 + 2))
    layout = Layout(size, seed, np.deg2rad(14.0), col_edges, row_edges)

    # Highways: straight, 9 px, each from one edge of the raster to the opposite one.
    for i in range(max(2, size // 4000)):
        a, b = rng.uniform(0.05, 0.95, 2) * size
        ends = [(0, a), (size, b)] if i % 2 == 0 else [(a, 0), (b, size)]
        layout.roads.append((np.array(ends, np.int32), 9, (118, 116, 112)))
    # Winding roads, 6 px, across the raster from left to right.
    for _ in range(max(1, size // 6000)):
        base, amp, freq = rng.uniform(0.1, 0.9) * size, rng.uniform(0.02, 0.06), rng.uniform(5, 12)
        t = np.linspace(0, 1, max(80, size // 50))
        points = np.stack([t * size, base + amp * size * np.sin(t * freq)], axis=1)
        layout.roads.append((points.astype(np.int32), 6, (104, 100, 96)))

    # Villages: blocks of houses in a street grid, about one per 3 km x 3 km.
    rects: list[tuple[int, ...]] = []
    for _ in range(max(2, round(size * size / 9e6))):
        cx, cy = rng.uniform(0.05, 0.9, 2) * size
        n_cols, n_rows = (int(v) for v in rng.integers(3, 7, 2))
        block_w, block_h, street = 64, 44, 8
        x0, y0 = int(cx), int(cy)
        x1 = x0 + n_cols * (block_w + street) + street
        y1 = y0 + n_rows * (block_h + street) + street
        rects.append((x0, y0, x1, y1, 112, 124, 92))  # gardens
        for c in range(n_cols + 1):
            sx = x0 + c * (block_w + street)
            rects.append((sx, y0, sx + street, y1, 126, 124, 120))
        for r in range(n_rows + 1):
            sy = y0 + r * (block_h + street)
            rects.append((x0, sy, x1, sy + street, 126, 124, 120))
        houses = []
        for c in range(n_cols):
            for r in range(n_rows):
                bx, by = x0 + street + c * (block_w + street), y0 + street + r * (block_h + street)
                # Two rows of houses per block, each house on its own plot.
                for hy in (by + 3, by + block_h // 2 + 2):
                    for hx in range(bx + 3, bx + block_w - 14, 16):
                        w, h = (int(v) for v in rng.integers(9, 14, 2))
                        roof = ROOFS[int(rng.integers(0, len(ROOFS)))]
                        houses.append((hx, hy, hx + w, min(hy + h, by + block_h - 2), *roof))
        rects.extend(houses)
    layout.rects = np.array(rects, np.int32)
    return layout


def river_centre(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The river's centre line ``y(x)`` and half-width (pixels) at global columns ``x``."""
    centre = size * 0.55 + size * 0.08 * np.sin(x / size * 5.0) + 60 * np.sin(x / 97.0)
    half_width = 10 + 4 * np.sin(x / 311.0)
    return centre.astype(np.float32), half_width.astype(np.float32)


def render_window(layout: Layout, col: int, row: int, width: int, height: int) -> np.ndarray:
    """The landscape's pixels in the window at ``(col, row)``, ``(height, width, 3)`` uint8 RGB.

    Everything is computed from global coordinates on the window plus :data:`GEN_PAD`
    pixels each side (cut off at the end), so windows meet without seams.
    """
    size, seed, pad = layout.size, layout.seed, GEN_PAD
    xs = np.arange(col - pad, col + width + pad, dtype=np.float32)
    ys = np.arange(row - pad, row + height + pad, dtype=np.float32)
    xx, yy = xs[None, :], ys[:, None]

    # Fields: parcels on a rotated grid, one crop each, sowing rows every 6 m, 3 m margins.
    u = xx * np.cos(layout.angle) + yy * np.sin(layout.angle) + size
    v = -xx * np.sin(layout.angle) + yy * np.cos(layout.angle) + size
    ci = np.searchsorted(layout.col_edges, u)
    ri = np.searchsorted(layout.row_edges, v)
    crop = (hash01(ci, ri, seed) * len(CROPS)).astype(np.int64)
    rgb = CROPS[crop]
    rows = 0.5 + 0.5 * np.sin(u * (2 * np.pi / 6.0))
    rgb *= (0.9 + 0.1 * rows)[..., None]
    edges_c, edges_r = layout.col_edges, layout.row_edges
    du = np.minimum(
        np.abs(u - edges_c[np.clip(ci, 0, len(edges_c) - 1)]),
        np.abs(u - edges_c[np.clip(ci - 1, 0, len(edges_c) - 1)]),
    )
    dv = np.minimum(
        np.abs(v - edges_r[np.clip(ri, 0, len(edges_r) - 1)]),
        np.abs(v - edges_r[np.clip(ri - 1, 0, len(edges_r) - 1)]),
    )
    rgb[(du < 3) | (dv < 3)] = (92, 120, 64)
    del u, v, ci, ri, crop, rows, du, dv

    # Per-pixel grain (sensor noise, crown texture): white noise of the global pixel.
    grain = hash01(xs.astype(np.int64)[None, :], ys.astype(np.int64)[:, None], seed + 7) - 0.5
    grain *= 3.46  # unit variance

    # Forest patches: dark green, crowns about 4 m across.
    woods = fbm(xs, ys, 900.0, 6, seed + 1)
    forest = woods > 0.7
    crowns = cv2.GaussianBlur(grain, (0, 0), 2.0) * 4.0
    shade = np.clip(1.0 + 0.18 * crowns, 0.6, 1.4)
    rgb[forest] = np.stack([34 * shade, 64 * shade, 36 * shade], axis=-1)[forest]
    del woods, crowns, shade, forest

    # Water: lakes in the low ground, a river 20-30 m wide crossing the whole raster.
    elevation = fbm(xs, ys, 1400.0, 5, seed + 2)
    centre, half_width = river_centre(xs, size)
    water = (elevation < 0.12) | (np.abs(yy - centre[None, :]) < half_width[None, :])
    depth = cv2.GaussianBlur(water.astype(np.float32), (0, 0), 6.0)
    water_rgb = np.stack(
        [28 + 20 * (1 - depth), 52 + 22 * (1 - depth), 62 + 10 * (1 - depth)], axis=-1
    )
    shore = water & (depth < 0.55)
    rgb[water] = water_rgb[water]
    rgb[shore] = rgb[shore] * 0.5 + np.array([150, 140, 110], np.float32) * 0.5
    del elevation, water, depth, water_rgb, shore

    # Illumination (haze, relief) and sensor noise.
    light = 0.92 + 0.16 * fbm(xs, ys, 4000.0, 3, seed + 3)
    rgb *= light[..., None]
    rgb += 3.0 * grain[..., None]
    image = np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8))
    del rgb, light, grain

    # Roads and villages on top, in window coordinates (OpenCV clips what lies outside).
    origin = np.array([col - pad, row - pad], np.int32)
    for points, line_width, colour in layout.roads:
        cv2.polylines(image, [points - origin], False, colour, line_width, cv2.LINE_AA)
    r = layout.rects
    x_end, y_end = col + width + pad, row + height + pad
    inside = (r[:, 2] >= col - pad) & (r[:, 0] < x_end) & (r[:, 3] >= row - pad) & (r[:, 1] < y_end)
    for x0, y0, x1, y1, red, green, blue in r[inside]:
        cv2.rectangle(
            image,
            (int(x0 - origin[0]), int(y0 - origin[1])),
            (int(x1 - origin[0]) - 1, int(y1 - origin[1]) - 1),
            (int(red), int(green), int(blue)),
            -1,
        )
    return image[pad : pad + height, pad : pad + width]


def landscape_path(data_dir: Path, size: int) -> Path:
    """Where the cached landscape of ``size`` pixels lives."""
    return data_dir / f"landscape-{size}-v{LANDSCAPE_VERSION}.tif"


def write_landscape(path: Path, size: int, seed: int = 42) -> float:
    """Write the ``size`` x ``size`` landscape to ``path`` window by window (UTM 33N,
    1 m pixels, tiled 512 x 512, deflate); return the seconds it took.

    Written to a temporary name and renamed at the end, so an interrupted run leaves
    no half-written raster to be mistaken for a cached one.
    """
    started = time.perf_counter()
    layout = make_layout(size, seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4100000.0 + size, 1.0, 1.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "photometric": "RGB",
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.tif")
    with rasterio.open(partial, "w", **profile) as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        for row in range(0, size, GEN_WINDOW):
            for col in range(0, size, GEN_WINDOW):
                w, h = min(GEN_WINDOW, size - col), min(GEN_WINDOW, size - row)
                pixels = render_window(layout, col, row, w, h)
                dst.write(np.moveaxis(pixels, -1, 0), window=Window(col, row, w, h))
            print(f"[bench_tiling] generated rows 0-{row + h} of {size}", file=sys.stderr)
    partial.replace(path)
    return time.perf_counter() - started


def cached_landscape(data_dir: Path, size: int) -> tuple[Path, float | None]:
    """The landscape raster of ``size`` pixels, generated if not cached yet:
    ``(path, seconds it took to generate, or None when it was cached)``."""
    path = landscape_path(data_dir, size)
    if path.is_file():
        return path, None
    return path, write_landscape(path, size)


# -- measuring a process tree ------------------------------------------------------------------


def vm_hwm_mib(pid: int) -> float | None:
    """``VmHWM`` (peak RSS) of a live process in MiB, or None once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class TreeMonitor:
    """Samples the summed RSS of a process and all its descendants every ``interval_s``,
    in a thread, and kills the tree (its process group) when it passes ``kill_above_mib``
    or when ``deadline`` (``time.perf_counter()``) passes; ``killed`` says why."""

    def __init__(self, pid: int, interval_s: float, kill_above_mib: float, deadline: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.kill_above_mib = kill_above_mib
        self.deadline = deadline
        self.peak_mib = 0.0
        self.peak_processes = 0
        self.samples = 0
        self.killed: str | None = None
        self.killed_at_s: float | None = None
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def tree_rss_mib(self) -> tuple[float, int]:
        """Summed RSS (MiB) and number of live processes in the tree, now."""
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0, 0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total / MIB, len(processes)

    def hwm_per_process(self) -> dict[str, float]:
        """``VmHWM`` (MiB) of each live process in the tree, by ``pid:name``."""
        out = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.pid)
            for process in [root, *root.children(recursive=True)]:
                hwm = vm_hwm_mib(process.pid)
                if hwm is not None:
                    with contextlib.suppress(psutil.Error):
                        out[f"{process.pid}:{process.name()}"] = hwm
        return out

    def _kill(self, why: str) -> None:
        self.killed = why
        self.killed_at_s = time.perf_counter() - self._started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss, count = self.tree_rss_mib()
            self.samples += 1
            if rss > self.peak_mib:
                self.peak_mib, self.peak_processes = rss, count
            if self.killed is None and rss > self.kill_above_mib:
                self._kill(f"memory guard: tree RSS {rss:.0f} MiB > {self.kill_above_mib:.0f}")
            elif self.killed is None and time.perf_counter() > self.deadline:
                self._kill("timeout")
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_env(image: Path, tmpdir: Path, src: Path) -> dict[str, str]:
    """The environment of the server or CLI: this tree's code, the raster's folder as a
    data root, caps raised so the raster is tried rather than refused, a private TMPDIR."""
    with rasterio.open(image) as ds:
        pixels = ds.width * ds.height
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "TMPDIR": str(tmpdir),
        "GEOLIBRE_ML_DATA_ROOTS": str(image.parent.resolve()),
        "GEOLIBRE_ML_MAX_PIXELS": str(max(pixels + 1, 100_000_000)),
        "GEOLIBRE_ML_MAX_UPLOAD_MB": str(max(8192, 2 * image.stat().st_size // MIB)),
    }
    return env


@dataclass
class Outcome:
    """One measured run (seconds, MiB); ``outcome`` is ``ok``, ``http NNN``, ``exit N``,
    ``timeout`` or ``memory guard`` (with ``detail``)."""

    via: str
    outcome: str
    detail: str = ""
    wall_s: float | None = None
    features: int | None = None
    answer_mb: float | None = None
    peak_tree_rss_mib: float = 0.0
    peak_tree_processes: int = 0
    vm_hwm_mib: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    startup_s: float | None = None
    killed_at_s: float | None = None
    tmpdir_leftovers: list[str] = field(default_factory=list)


def leftover_files(folder: Path) -> list[str]:
    """Files (not empty folders) left under ``folder``, relative to it: a run should
    leave none in its TMPDIR."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def count_features(path: Path) -> int | None:
    """Features in a GeoJSON file, or None when it is not a FeatureCollection."""
    with contextlib.suppress(ValueError, OSError), path.open("rb") as handle:
        return len(json.load(handle)["features"])
    return None


def run_http(args: argparse.Namespace, image: Path, work: Path) -> Outcome:
    """``POST /segment/automatic`` (classic, GeoJSON) to a fresh model server, with the
    raster as ``source`` (or uploaded as ``file`` with ``--upload``); the answer is
    streamed to a file. The clock runs from sending the request to its last byte."""
    tmpdir = work / "server-tmp"
    tmpdir.mkdir()
    env = child_env(image, tmpdir, args.src)
    answer = work / "answer.geojson"
    data = {"model_version": "classic", "output_format": "geojson"}
    status, detail, wall = None, "", None
    with model_server(env, work / "server.log") as (process, url, startup):
        deadline = time.perf_counter() + args.timeout_s
        monitor = TreeMonitor(process.pid, args.sample_ms / 1000, args.kill_above_mib, deadline)
        timeout = httpx.Timeout(args.timeout_s + 30, connect=10)
        with monitor, contextlib.ExitStack() as stack:
            if args.upload:
                handle = stack.enter_context(image.open("rb"))
                request = {"files": {"file": (image.name, handle, "image/tiff")}, "data": data}
            else:
                request = {"data": {**data, "source": str(image.resolve())}}
            started = time.perf_counter()
            try:
                with httpx.stream(
                    "POST", f"{url}/segment/automatic", timeout=timeout, **request
                ) as response:
                    status = response.status_code
                    with answer.open("wb") as out:
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                wall = time.perf_counter() - started
            except httpx.HTTPError as error:
                detail = f"{type(error).__name__}: {error}"
            hwm = monitor.hwm_per_process()
        log_tail = (work / "server.log").read_text(errors="replace")[-600:]
    result = Outcome(
        via="http-upload" if args.upload else "http-source",
        outcome="ok",
        wall_s=wall,
        peak_tree_rss_mib=monitor.peak_mib,
        peak_tree_processes=monitor.peak_processes,
        vm_hwm_mib=hwm,
        samples=monitor.samples,
        startup_s=startup,
        killed_at_s=monitor.killed_at_s,
        tmpdir_leftovers=leftover_files(tmpdir),
    )
    if monitor.killed:
        result.outcome, result.detail = monitor.killed.split(":")[0], monitor.killed
        result.detail += f"; server log: {log_tail}"
    elif status != 200:
        result.outcome = f"http {status}" if status else "error"
        body = answer.read_text(errors="replace")[:600] if answer.exists() else ""
        result.detail = detail or body
    else:
        result.features = count_features(answer)
        result.answer_mb = answer.stat().st_size / 1e6
    return result


def run_cli(args: argparse.Namespace, image: Path, work: Path) -> Outcome:
    """``python -m geolibre_ml segment IMAGE -o OUT.geojson --mode automatic --model
    classic -q``; the clock runs from spawn to exit (interpreter start-up included, as
    in the issue's baseline)."""
    tmpdir = work / "cli-tmp"
    tmpdir.mkdir()
    env = child_env(image, tmpdir, args.src)
    answer = work / "answer.geojson"
    command = [
        sys.executable, "-m", "geolibre_ml", "segment", str(image), "-o", str(answer),
        "--mode", "automatic", "--model", "classic", "-q",
    ]  # fmt: skip
    started = time.perf_counter()
    with (work / "cli.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = started + args.timeout_s
        with TreeMonitor(
            process.pid, args.sample_ms / 1000, args.kill_above_mib, deadline
        ) as monitor:
            code = process.wait()
    wall = time.perf_counter() - started
    result = Outcome(
        via="cli",
        outcome="ok",
        wall_s=wall,
        peak_tree_rss_mib=monitor.peak_mib,
        peak_tree_processes=monitor.peak_processes,
        samples=monitor.samples,
        killed_at_s=monitor.killed_at_s,
        tmpdir_leftovers=leftover_files(tmpdir),
    )
    log_tail = (work / "cli.log").read_text(errors="replace")[-600:]
    if monitor.killed:
        result.outcome, result.detail = monitor.killed.split(":")[0], monitor.killed
    elif code != 0:
        result.outcome, result.detail = f"exit {code}", log_tail
    else:
        result.features = count_features(answer)
        result.answer_mb = answer.stat().st_size / 1e6
    return result


# -- the report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def goals(size: int, result: Outcome) -> dict[str, Any]:
    """The issue's goals for this size against the run (None where there is no goal)."""
    if size not in GOALS:
        return {}
    seconds, mib = GOALS[size]
    ok = result.outcome == "ok"
    return {
        "goal_s": seconds,
        "goal_peak_mib": mib,
        "time_met": ok and result.wall_s is not None and result.wall_s <= seconds,
        "memory_met": ok and result.peak_tree_rss_mib < mib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="raster edge in pixels (8192)")
    parser.add_argument("--cli", action="store_true", help="time the CLI instead of HTTP")
    parser.add_argument("--upload", action="store_true", help="send the raster as 'file'")
    parser.add_argument("--image", type=Path, help="use this GeoTIFF instead of the landscape")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="cache of generated rasters"
    )
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the code to measure")
    parser.add_argument("--timeout-s", type=float, default=300, help="kill the run after this")
    parser.add_argument(
        "--kill-above-mib", type=float, default=10240, help="kill the run above this tree RSS"
    )
    parser.add_argument("--sample-ms", type=float, default=50, help="RSS sampling interval")
    parser.add_argument("--generate-only", action="store_true", help="write the raster, stop")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.cli and args.upload:
        parser.error("--upload is for HTTP runs, not --cli")

    generated_s = None
    if args.image is not None:
        image = args.image.resolve()
    else:
        image, generated_s = cached_landscape(args.data_dir, args.size)
    with rasterio.open(image) as ds:
        width, height = ds.width, ds.height
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "image": {
            "path": str(image),
            "width": width,
            "height": height,
            "file_mb": round(image.stat().st_size / 1e6, 1),
            "generated_s": generated_s,
        },
        "previous_baseline": PREVIOUS_BASELINE,
    }
    if args.generate_only:
        print(json.dumps(report, indent=2))
        return 0
    report["load_average_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-tiling-") as folder:
        work = Path(folder)
        result = run_cli(args, image, work) if args.cli else run_http(args, image, work)
    report["load_average_after"] = os.getloadavg()
    report["result"] = asdict(result)
    report["goals"] = goals(max(width, height), result)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if result.outcome == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
