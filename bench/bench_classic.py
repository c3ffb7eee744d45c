"""Benchmark: the classic model over HTTP on a 4096 x 4096 RGB GeoTIFF.

For each run (classic automatic, classic text "water") a fresh
``python -m geolibre_ml model-server`` process is started, the image is POSTed to it
over loopback, and the benchmark records the request's wall time and the server's peak
resident memory (``VmHWM`` from ``/proc/<pid>/status``). The same segmentation is then
run in-process (``segment_raster`` and the GeoJSON rendering, in a fresh child
interpreter so its peak memory is its own) to show what HTTP costs on top.

The image is a procedural landscape (lakes, a river, fields, forest, roads, a
village), not noise, so that the algorithms see realistic structure.

Usage::

    python bench/bench_classic.py                       # print a markdown table
    python bench/bench_classic.py --out results.md      # also write it to a file
    python bench/bench_classic.py --size 2048 --repeat 3

Goals (docs/benchmarks.md): each run within 15 s on a 2-core machine, peak memory
under 1 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

GOAL_SECONDS = 15.0
GOAL_MIB = 1024.0

#: Name in the table: (endpoint, form fields, short name for --only).
RUNS: dict[str, tuple[str, dict[str, str], str]] = {
    "classic automatic": ("automatic", {"model_version": "classic"}, "automatic"),
    'classic text "water"': ("text", {"model_version": "classic", "prompt": "water"}, "water"),
}


# -- the test image ----------------------------------------------------------------------


def fractal_noise(
    size: int, rng: np.random.Generator, octaves: int = 6, base: int = 4
) -> np.ndarray:
    """Smooth multi-scale noise in [0, 1], ``(size, size)`` float32 (fBm of upsampled grids)."""
    out = np.zeros((size, size), dtype=np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base * 2**octave
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
    out /= total
    out -= out.min()
    out /= max(float(out.max()), 1e-6)
    return out


def landscape(size: int = 4096, seed: int = 42) -> np.ndarray:
    """A procedural aerial scene, ``(3, size, size)`` uint8 RGB at about 1 m per pixel.

    Agricultural parcels on a rotated grid (crops with row texture, bare soil), forest
    patches with crown texture, lakes in the low ground and a meandering river, paved
    roads, and a village of small buildings along one road.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    elevation = fractal_noise(size, rng, octaves=5, base=3)
    woods = fractal_noise(size, rng, octaves=5, base=6)
    grain = rng.normal(0, 1, (size, size)).astype(np.float32)

    # Fields: parcels of 120-300 m on a grid rotated by 14 degrees, one crop each.
    angle = np.deg2rad(14.0)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    col_edges = np.cumsum(rng.integers(120, 300, 64))
    row_edges = np.cumsum(rng.integers(120, 300, 64))
    offset = size
    parcel = np.searchsorted(col_edges, u + offset) * 64 + np.searchsorted(row_edges, v + offset)
    crops = np.array(
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
    crop = rng.integers(0, len(crops), 64 * 65)[parcel]
    rgb = crops[crop].copy()  # (size, size, 3)
    rows = 0.5 + 0.5 * np.sin(u * (2 * np.pi / 6.0))  # sowing rows every 6 m
    rgb *= (0.9 + 0.1 * rows)[..., None]
    # Field margins: 3 m of grass between parcels.
    du = np.minimum(
        np.abs(u + offset - col_edges[np.clip(np.searchsorted(col_edges, u + offset), 0, 63)]),
        np.abs(u + offset - col_edges[np.clip(np.searchsorted(col_edges, u + offset) - 1, 0, 63)]),
    )
    dv = np.minimum(
        np.abs(v + offset - row_edges[np.clip(np.searchsorted(row_edges, v + offset), 0, 63)]),
        np.abs(v + offset - row_edges[np.clip(np.searchsorted(row_edges, v + offset) - 1, 0, 63)]),
    )
    margin = (du < 3) | (dv < 3)
    rgb[margin] = (92, 120, 64)
    del u, v, du, dv, rows, parcel, crop

    # Forest: dark green with crown texture where the woods noise is high.
    forest = woods > 0.62
    crowns = cv2.GaussianBlur(grain, (0, 0), 2.0)
    crowns = (crowns - crowns.mean()) / crowns.std()
    shade = np.clip(1.0 + 0.18 * crowns, 0.6, 1.4)
    forest_rgb = np.stack([34 * shade, 64 * shade, 36 * shade], axis=-1)
    rgb[forest] = forest_rgb[forest]
    del forest_rgb, crowns, shade

    # Water: lakes in the low ground and a meandering river 20-30 m wide.
    lakes = elevation < 0.2
    centre = size * 0.55 + size * 0.08 * np.sin(xx[0] / size * 5.0) + 60 * np.sin(xx[0] / 97.0)
    width = 10 + 4 * np.sin(xx[0] / 311.0)
    river = np.abs(yy - centre[None, :]) < width[None, :]
    water = lakes | river
    depth = cv2.GaussianBlur(water.astype(np.float32), (0, 0), 6.0)
    water_rgb = np.stack(
        [28 + 20 * (1 - depth), 52 + 22 * (1 - depth), 62 + 10 * (1 - depth)], axis=-1
    )
    shore = water & (depth < 0.55)
    rgb[water] = water_rgb[water]
    rgb[shore] = rgb[shore] * 0.5 + np.array([150, 140, 110], dtype=np.float32) * 0.5
    del water_rgb, depth, yy, xx

    # Sensor noise and illumination variation, then roads and buildings drawn on top.
    light = 0.92 + 0.16 * fractal_noise(size, rng, octaves=3, base=2)
    rgb *= light[..., None]
    rgb += 3.0 * grain[..., None]
    image = np.clip(rgb, 0, 255).astype(np.uint8)
    del rgb, light, grain

    road = (118, 116, 112)
    cv2.line(image, (0, int(size * 0.2)), (size, int(size * 0.32)), road, 9, cv2.LINE_AA)
    cv2.line(image, (int(size * 0.7), 0), (int(size * 0.62), size), road, 9, cv2.LINE_AA)
    bend = np.array(
        [[int(size * t), int(size * (0.8 + 0.06 * np.sin(t * 9)))] for t in np.linspace(0, 1, 80)],
        dtype=np.int32,
    )
    cv2.polylines(image, [bend], False, (104, 100, 96), 6, cv2.LINE_AA)
    roofs = [(168, 76, 58), (140, 64, 52), (120, 120, 124), (180, 96, 70)]
    for _ in range(140):
        t = rng.uniform(0.45, 0.95)
        x = int(t * size)
        y = int(size * (0.2 + 0.12 * t)) + int(rng.choice([-1, 1]) * rng.uniform(14, 60))
        w, h = (int(v) for v in rng.integers(8, 22, 2))
        colour = roofs[int(rng.integers(0, len(roofs)))]
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def write_landscape(path: Path, size: int) -> Path:
    """Write the landscape as a tiled, deflate-compressed RGB GeoTIFF (UTM 33N, 1 m)."""
    data = landscape(size)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4100000.0, 1.0, 1.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return path


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Measure:
    seconds: float
    peak_mib: float
    detail: str


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def model_server(
    env: dict[str, str], log: Path | None = None
) -> Iterator[tuple[subprocess.Popen, str, float]]:
    """A fresh model server in its own process group, run with ``env``; yields
    ``(process, url, seconds from spawn to /health 200)`` and stops the whole group
    afterwards. Its output goes to ``log`` (None: discarded)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "geolibre_ml", "model-server", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"model server exited with {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.02)
            yield process, url, time.perf_counter() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def server_env(tmpdir: Path, source: Path | None = None) -> dict[str, str]:
    """The environment of a benchmarked model server: a private TMPDIR, and ``source``
    (a checkout's ``src`` folder, another commit measured in the same run) first on the
    path instead of the installed package."""
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def over_http(
    image: Path, mode: str, data: dict[str, str], tmpdir: Path, source: Path | None = None
) -> tuple[Measure, float]:
    """One POST to a fresh server: (wall time and server peak memory, startup seconds)."""
    with model_server(server_env(tmpdir, source)) as (process, url, startup):
        with image.open("rb") as handle:
            started = time.perf_counter()
            response = httpx.post(
                f"{url}/segment/{mode}",
                files={"file": (image.name, handle, "image/tiff")},
                data=data,
                timeout=600,
            )
            seconds = time.perf_counter() - started
        peak = peak_rss_mib(process.pid)
    if response.status_code == 200:
        detail = (
            f"{len(response.json()['features']):,} features, {len(response.content) / 1e6:.1f} MB"
        )
    else:
        detail = f"HTTP {response.status_code}: {response.text[:80]}"
    return Measure(seconds, peak, detail), startup


IN_PROCESS = r"""
import json, sys, time
from pathlib import Path
from geolibre_ml.segment import formats
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, TextPrompt

path, mode, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
models = ModelManager()
with models.lease("classic", "default") as backend:
    job = TextPrompt(prompt) if mode == "text" else AutomaticPrompt()
    started = time.perf_counter()
    result = segment_raster(path, job, backend)
    body = formats.render(result, "geojson")
    seconds = time.perf_counter() - started
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
print(json.dumps({"seconds": seconds, "peak": peak, "features": len(result.features)}))
"""


def in_process(image: Path, mode: str, data: dict[str, str]) -> Measure:
    """The same run through ``segment_raster`` in a fresh interpreter (model load excluded)."""
    out = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(image), mode, data.get("prompt", "")],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Measure(report["seconds"], report["peak"], f"{report['features']:,} features")


# -- reporting ---------------------------------------------------------------------------


def table(rows: list[tuple[str, Measure, Measure]], size: int, startup: list[float]) -> str:
    def ok(measure: Measure) -> str:
        fine = measure.seconds <= GOAL_SECONDS and measure.peak_mib <= GOAL_MIB
        return "yes" if fine else "**no**"

    lines = [
        f"Classic model, {size} x {size} RGB GeoTIFF ({size * size / 1e6:.1f} megapixels), "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}.",
        "",
        "| run | HTTP time (s) | HTTP peak RSS (MiB) | in-process time (s) | "
        "in-process peak RSS (MiB) | time ratio | memory ratio | within goals | answer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name, http, local in rows:
        lines.append(
            f"| {name} | {http.seconds:.2f} | {http.peak_mib:.0f} | {local.seconds:.2f} | "
            f"{local.peak_mib:.0f} | {http.seconds / local.seconds:.2f} | "
            f"{http.peak_mib / local.peak_mib:.2f} | {ok(http)} | {http.detail} |"
        )
    lines += [
        "",
        f"Goals: each run within {GOAL_SECONDS:.0f} s, peak memory under {GOAL_MIB:.0f} MiB. "
        "HTTP time is one POST (upload, segmentation, GeoJSON answer) to a fresh model "
        "server on loopback; its peak is the server process's VmHWM. In-process is "
        "`segment_raster` plus GeoJSON rendering in a fresh interpreter.",
        f"Model server start-up (process spawn to /health answering): "
        f"median {np.median(startup):.2f} s over {len(startup)} starts.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="image edge in pixels")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    parser.add_argument("--image", type=Path, help="use this GeoTIFF instead of generating one")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument(
        "--only", choices=[r[2] for r in RUNS.values()], action="append", help="run only these"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-classic-") as work:
        work_dir = Path(work)
        server_tmp = work_dir / "server-tmp"
        server_tmp.mkdir()
        image = args.image
        if image is None:
            started = time.perf_counter()
            image = write_landscape(work_dir / "landscape.tif", args.size)
            print(
                f"wrote {image.name} ({image.stat().st_size / 1e6:.1f} MB) in "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        with rasterio.open(image) as src:
            size = src.width
        rows = []
        startups: list[float] = []
        for name, (mode, data, short) in RUNS.items():
            if args.only and short not in args.only:
                continue
            http_runs, local_runs = [], []
            for _ in range(args.repeat):
                measure, startup = over_http(image, mode, data, server_tmp)
                http_runs.append(measure)
                startups.append(startup)
                local_runs.append(in_process(image, mode, data))
            http = min(http_runs, key=lambda m: m.seconds)
            local = min(local_runs, key=lambda m: m.seconds)
            print(f"{name}: HTTP {http.seconds:.2f} s, {http.peak_mib:.0f} MiB", file=sys.stderr)
            rows.append((name, http, local))
        leftovers = list(server_tmp.iterdir())
        if leftovers:
            print(f"warning: the server left {leftovers} in its TMPDIR", file=sys.stderr)
    text = table(rows, size, startups)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
