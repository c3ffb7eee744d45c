"""The segmentation library: rasters in, GIS-ready polygons out. No HTTP here.

Typical use::

    from geolibre_ml.segment import ModelManager, TextPrompt, segment_raster

    models = ModelManager()
    with models.lease("classic", "default") as backend:
        result = segment_raster("scene.tif", TextPrompt("water"), backend)
    print(len(result.features), result.output_crs)
"""

from .errors import (
    Cancelled,
    ImageTooLarge,
    InvalidRequest,
    ModelUnavailable,
    NoObjectsFound,
    SegmentError,
    UnreadableImage,
    UnsupportedPrompt,
)
from .features import FeatureSet
from .models import ModelManager
from .pipeline import segment_raster
from .prompts import (
    AutomaticPrompt,
    OutputOptions,
    PointBoxPrompt,
    ReadOptions,
    TextPrompt,
)
from .results import SegmentResult

__all__ = [
    "AutomaticPrompt",
    "Cancelled",
    "FeatureSet",
    "ImageTooLarge",
    "InvalidRequest",
    "ModelManager",
    "ModelUnavailable",
    "NoObjectsFound",
    "OutputOptions",
    "PointBoxPrompt",
    "ReadOptions",
    "SegmentError",
    "SegmentResult",
    "TextPrompt",
    "UnreadableImage",
    "UnsupportedPrompt",
    "segment_raster",
]
