"""Form parameters of the ``/segment/*`` endpoints, as small dependency classes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import File, Form, UploadFile

from geolibre_ml.segment.errors import InvalidRequest
from geolibre_ml.segment.prompts import OutputOptions, ReadOptions


def _optional(value: str | None) -> str | None:
    # Swagger UI and some form builders send empty strings for unset fields.
    return value.strip() if value and value.strip() else None


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Parse ``bands``: 1-based band numbers, ``"4,3,2"`` or ``"[4, 3, 2]"``."""
    text = _optional(text)
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.strip("[]").replace(" ", "").split(",") if v)
    except ValueError:
        raise InvalidRequest(
            f"bands {text!r} must be comma-separated band numbers, e.g. 4,3,2."
        ) from None
    if len(values) not in (1, 3):
        raise InvalidRequest(
            f"bands lists {len(values)} band(s); give 3 (shown as red, green, blue) or 1."
        )
    return values


@dataclass
class CommonParams:
    """Fields every ``/segment/*`` endpoint takes."""

    file: UploadFile = File(..., description="GeoTIFF (any bands and type), PNG or JPEG.")
    model_version: str | None = Form(None, description="sam3 or classic; default: the server's.")
    model_id: str | None = Form(None, description="Model id within the version.")
    output_format: str = Form("geojson", description="geojson, geotiff, png, json or detections.")
    min_size: int = Form(0, description="Smallest object kept, in pixels.")
    max_size: int | None = Form(None, description="Largest object kept, in pixels (0: no limit).")
    output_crs: str | None = Form(None, description="Reproject vector output, e.g. EPSG:4326.")
    bands: str | None = Form(None, description="1-based bands shown as RGB, e.g. 4,3,2.")
    tile_size: int | None = Form(None, description="Tile edge in pixels for large rasters.")
    tile_overlap: int | None = Form(None, description="Tile overlap in pixels.")
    simplify_tolerance: float | None = Form(
        None, description="Simplify polygons by this distance, in output CRS units."
    )

    def read_options(self) -> ReadOptions:
        """How to read the raster."""
        return ReadOptions(
            bands=parse_bands(self.bands), tile_size=self.tile_size, tile_overlap=self.tile_overlap
        )

    def output_options(self) -> OutputOptions:
        """How to shape the answer."""
        if self.min_size < 0:
            raise InvalidRequest("min_size must be 0 or more pixels.")
        if self.simplify_tolerance is not None and self.simplify_tolerance < 0:
            raise InvalidRequest("simplify_tolerance must be 0 or more.")
        max_size = self.max_size if self.max_size and self.max_size > 0 else None
        return OutputOptions(
            min_size=self.min_size,
            max_size=max_size,
            output_crs=_optional(self.output_crs),
            simplify_tolerance=self.simplify_tolerance or None,
        )


@dataclass
class TextParams:
    """Fields of ``/segment/text``."""

    prompt: str = Form(..., description="What to find, e.g. water or trees.")
    confidence_threshold: float = Form(0.5, description="Keep objects scoring at least this (0-1).")
    backend: str | None = Form(None, description="Accepted for samgeo-api compatibility.")


@dataclass
class AutomaticParams:
    """Fields of ``/segment/automatic`` (SAM knobs accepted for compatibility)."""

    foreground: bool = Form(True)
    unique: bool = Form(True)
    points_per_side: int = Form(32)
    pred_iou_thresh: float = Form(0.8)
    stability_score_thresh: float = Form(0.95)


@dataclass
class PredictParams:
    """Fields of ``/segment/predict``."""

    point_coords: str | None = Form(None, description="JSON [[x, y], ...].")
    point_labels: str | None = Form(
        None, description="JSON [1, 0, ...]: 1 foreground, 0 background."
    )
    boxes: str | None = Form(None, description="JSON [[xmin, ymin, xmax, ymax], ...].")
    point_crs: str | None = Form(None, description="CRS of points and boxes; absent: pixels.")
    multimask_output: bool = Form(False)
