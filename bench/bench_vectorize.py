"""Time and peak memory of the feature-building steps on a large label image.

A 4096 x 4096 label image with about 5,000 regions (a Voronoi tessellation with
some background) goes through the steps every run takes after the model answers:
size filters, polygonizing, properties with ground areas, and GeoJSON bytes.

Run: ``.venv/bin/python bench/bench_vectorize.py [size] [regions]``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import shapely
from pyproj import CRS
from rasterio.transform import from_origin
from scipy import ndimage

from geolibre_ml.segment.crs import ground_area_m2
from geolibre_ml.segment.features import FeatureSet
from geolibre_ml.segment.geojson import geojson_bytes
from geolibre_ml.segment.vectorize import filter_labels, polygonize


def voronoi_labels(size: int, regions: int, seed: int = 0) -> np.ndarray:
    """Labels 1..regions of a Voronoi tessellation; about a tenth of cells left empty."""
    rng = np.random.default_rng(seed)
    seeds = np.ones((size, size), dtype=bool)
    ys = rng.integers(0, size, regions)
    xs = rng.integers(0, size, regions)
    seeds[ys, xs] = False
    _, (iy, ix) = ndimage.distance_transform_edt(seeds, return_indices=True)
    ids = np.zeros((size, size), dtype=np.int32)
    ids[ys, xs] = np.arange(1, regions + 1, dtype=np.int32)
    labels = ids[iy, ix]
    empty = rng.random(regions + 1) < 0.1
    empty[0] = True
    labels[empty[labels]] = 0
    return labels


def cached_labels(size: int, regions: int) -> np.ndarray:
    """The test image, drawn once and kept in the temporary folder (drawing it
    takes more memory than the steps measured)."""
    path = Path(tempfile.gettempdir()) / f"geolibre-bench-voronoi-{size}-{regions}.npy"
    if not path.exists():
        np.save(path, voronoi_labels(size, regions))
    return np.load(path)


class PeakRss:
    """Samples the process's resident memory every few milliseconds."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak - self.base


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    regions = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    labels = cached_labels(size, regions)
    valid = np.ones(labels.shape, dtype=bool)
    valid[:, :16] = False  # a nodata strip
    transform = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    crs = CRS.from_epsg(32633)
    steps: dict[str, float] = {}
    rss = PeakRss()
    start = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        now = time.perf_counter()
        steps[name] = now - start
        start = now

    filtered, _counts = filter_labels(labels, valid=valid, min_size=10, max_size=0)
    lap("filter_labels")
    polygons = polygonize(filtered, transform=transform)
    lap("polygonize")
    areas = ground_area_m2(polygons.geometries, crs)
    lap("ground_area_m2")
    base = {"mode": "automatic", "model": "classic", "model_id": "default", "source": "x.tif"}
    props = [
        {"value": int(v), "score": 0.5, "area_m2": round(float(a), 3), **base}
        for v, a in zip(polygons.values, areas, strict=True)
    ]
    lap("properties")
    body = geojson_bytes(FeatureSet(polygons.geometries, props, crs))
    lap("geojson_bytes")
    peak = rss.stop()
    vertices = int(shapely.get_num_coordinates(polygons.geometries).sum())
    print(
        f"{size} x {size}, {len(polygons)} polygons, {vertices:,} vertices, "
        f"{len(body) / 1e6:.1f} MB of GeoJSON"
    )
    for name, seconds in steps.items():
        print(f"  {name:16s} {seconds:6.2f} s")
    print(f"  {'total':16s} {sum(steps.values()):6.2f} s")
    print(f"  peak memory above the loaded label image: {peak / 2**20:,.0f} MiB (resident)")


if __name__ == "__main__":
    main()
