"""``unique=false`` on /segment/automatic: samgeo's binary answer, for every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import AutomaticPrompt, OutputOptions
from support.rasters import scene, write_raster


def raster(tmp_path: Path) -> Path:
    planes = scene(120, 160, seed=5)
    rgb = np.stack([planes[b] for b in ("red", "green", "blue")])
    data = np.clip(rgb / 0.45 * 255, 1, 255).astype("uint8")
    data[:, :, :20] = 0  # a nodata strip
    return write_raster(tmp_path / "scene.tif", data, nodata=0)


def union(result) -> shapely.Geometry:
    return shapely.union_all(result.features.geometries)


def test_unique_false_answers_one_binary_object_and_foreground_false_the_rest(
    tmp_path: Path,
) -> None:
    path, model = raster(tmp_path), ClassicBackend("default")
    output = OutputOptions(min_size=3000)  # classic tiles the image: leave a region out
    every = segment_raster(path, AutomaticPrompt(), model, output=output)
    assert len(every.features.geometries) > 1
    joined = segment_raster(path, AutomaticPrompt(unique=False), model, output=output)
    assert [p["value"] for p in joined.features.properties] == [1]
    assert "score" not in joined.features.properties[0]
    # The objects the size filter kept, joined: the filter ran before the join.
    assert union(joined).symmetric_difference(union(every)).area < 1e-6
    rest = segment_raster(
        path, AutomaticPrompt(unique=False, foreground=False), model, output=output
    )
    assert len(rest.features.geometries) == 1
    assert union(rest).intersection(union(every)).area < 1e-6
    # Together they cover the data pixels, and not the nodata strip.
    t = every.info.transform
    both = union(rest).union(union(joined))
    assert both.bounds[0] >= t.c + 20 * t.a - 1e-6
    assert abs(both.area - 140 * 120 * abs(t.a * t.e)) < 1e-6 * both.area
