"""segment-geospatial's real ``samgeo.api`` app, served with a stand-in for its models.

    python samgeo_harness.py --samgeo-dir DIR [--host H] [--port P]

``DIR`` holds segment-geospatial 1.4.2 installed without its dependencies (``pip install
--no-deps --target DIR``). SAM weights and torch are not available here, so two things are
replaced, and only these two:

- ``samgeo/__init__.py`` (it imports the torch-based model modules) is not run: a bare
  ``samgeo`` package pointing at the installed folder stands in for it, so that the real
  ``samgeo/api.py`` and ``samgeo/model_registry.py`` are what gets imported;
- ``samgeo.api.get_model`` returns :class:`StandInModel`, which answers the calls the API
  makes on a SAM 3 model with masks drawn from the image; and ``samgeo.common`` (torch and
  geopandas) is replaced by a ``raster_to_geojson`` built on rasterio.

Everything else (routes, form fields, validation, temporary files, output formats, error
answers) is segment-geospatial's own code.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import types
from email.parser import Parser
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import uvicorn
from rasterio.transform import rowcol


class StandInModel:
    """Stands in for ``SamGeo3``: bright pixels, boxes or points become masks."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.masks: list | None = None
        self.mask_scores: dict | None = None
        self.boxes: list | None = None
        self.scores: list | None = None
        self.image_width = self.image_height = 0
        self._image: np.ndarray | None = None
        self._profile: dict = {}

    def set_image(self, path: str) -> None:
        with rasterio.open(path) as src:
            self._image = src.read(1).astype("float64")
            self._profile = {"crs": src.crs, "transform": src.transform}
        self.source = path
        self.image_height, self.image_width = self._image.shape

    def _set(self, mask: np.ndarray) -> None:
        self.masks = [mask] if mask.any() else []
        rows, cols = np.nonzero(mask)
        self.boxes = [[cols.min(), rows.min(), cols.max(), rows.max()]] if mask.any() else []
        self.scores = [0.9] * len(self.masks)
        self.mask_scores = {1: 0.9} if mask.any() else None

    def generate_masks(self, prompt: str, min_size: int = 0, max_size=None, **_: object) -> None:
        assert self._image is not None
        self._set(self._image > self._image.mean())

    def generate_masks_by_boxes(self, boxes, box_crs=None, min_size=0, max_size=None) -> None:
        assert self._image is not None
        mask = np.zeros(self._image.shape, bool)
        for xmin, ymin, xmax, ymax in boxes:
            if box_crs:
                (r0, r1), (c0, c1) = rowcol(self._profile["transform"], [xmin, xmax], [ymax, ymin])
            else:
                r0, r1, c0, c1 = int(ymin), int(ymax), int(xmin), int(xmax)
            mask[max(r0, 0) : r1 + 1, max(c0, 0) : c1 + 1] = True
        self._set(mask)

    def predict_inst(self, point_coords=None, point_labels=None, **_: object) -> None:
        assert self._image is not None
        mask = np.zeros(self._image.shape, bool)
        for x, y in np.asarray(point_coords).reshape(-1, 2):
            mask[max(int(y) - 3, 0) : int(y) + 4, max(int(x) - 3, 0) : int(x) + 4] = True
        self._set(mask)

    def save_masks(self, output: str, unique: bool = True, **_: object) -> None:
        assert self.masks
        data = self.masks[0].astype("uint8")
        with rasterio.open(
            output,
            "w",
            driver="GTiff",
            width=data.shape[1],
            height=data.shape[0],
            count=1,
            dtype="uint8",
            **self._profile,
        ) as dst:
            dst.write(data, 1)


def raster_to_geojson(tiff_path: str, output: str, simplify_tolerance=None, **_: object) -> None:
    """Stands in for ``samgeo.common.raster_to_geojson``: one polygon per mask region."""
    if not output.endswith(".geojson"):
        output += ".geojson"
    with rasterio.open(tiff_path) as src:
        data = src.read(1)
        shapes = rasterio.features.shapes(data, mask=data > 0, transform=src.transform)
        features = [
            {"type": "Feature", "properties": {"value": int(v)}, "geometry": g} for g, v in shapes
        ]
        collection = {"type": "FeatureCollection", "features": features}
        if src.crs is not None and src.crs.to_epsg():
            name = f"urn:ogc:def:crs:EPSG::{src.crs.to_epsg()}"
            collection["crs"] = {"type": "name", "properties": {"name": name}}
    Path(output).write_text(json.dumps(collection))


def load_samgeo_api(samgeo_dir: Path) -> types.ModuleType:
    """Import the installed ``samgeo.api`` without running ``samgeo/__init__.py``."""
    package_dir = samgeo_dir / "samgeo"
    dist_info = next(samgeo_dir.glob("segment_geospatial-*.dist-info"))
    metadata = Parser().parsestr((dist_info / "METADATA").read_text())
    package = types.ModuleType("samgeo")
    package.__path__ = [str(package_dir)]
    package.__file__ = str(package_dir / "__init__.py")
    package.__version__ = metadata["Version"]
    sys.modules["samgeo"] = package
    common = types.ModuleType("samgeo.common")
    common.raster_to_geojson = raster_to_geojson
    sys.modules["samgeo.common"] = common

    import samgeo.api as api

    def get_model(model_version: str, model_id: str | None = None, **kwargs: object):
        if model_version not in api.DEFAULT_MODEL_IDS:
            raise api.HTTPException(400, f"Invalid model_version '{model_version}'.")
        model_id = model_id or api.DEFAULT_MODEL_IDS[model_version]
        if model_id not in api.AVAILABLE_MODELS[model_version]:
            raise api.HTTPException(400, f"Invalid model_id '{model_id}' for {model_version}.")
        key = (model_version, model_id, api._freeze_kwargs(kwargs))
        return StandInModel(), threading.Lock(), key

    api.get_model = get_model
    return api


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samgeo-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    api = load_samgeo_api(args.samgeo_dir)
    assert Path(api.__file__).resolve().is_relative_to(args.samgeo_dir.resolve())
    uvicorn.run(api.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
