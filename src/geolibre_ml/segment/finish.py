"""The last stage of a run: merged objects in raster pixels to features.

Size filters, polygons put on the raster's grid, properties and ground areas, then
reprojection and simplification (:func:`finish_features`). Everything here is per
object except two steps that look at the whole answer: the binary answer of
``unique=false`` (``combine``) and the simplification of label layers as one coverage.
:class:`Finishing` holds the settings as plain data, so the per-object part can also
run where the objects are (a cluster's workers, :mod:`.blocks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

from .crs import ground_area_m2, reproject
from .features import FeatureSet
from .outlines import OutlineSet
from .prompts import OutputOptions
from .seams import node_seams
from .vectorize import simplify

__all__ = ["Finishing", "finish_features", "simplify_coverage"]


@dataclass(frozen=True)
class Finishing:
    """How a run's objects become its features (the arguments of :func:`finish_features`
    that every part of one run shares): plain data, pickled to a cluster's workers.

    Attributes:
        transform: the raster's transform (pixel corners to ``crs``).
        crs: the raster's CRS, or None.
        georeferenced: True when ``transform`` is a real geotransform.
        output: size filters and simplification.
        target_crs: CRS to reproject to, or None to stay in ``crs``.
        base: properties every feature shares.
    """

    transform: Affine
    crs: CRS | None
    georeferenced: bool
    output: OutputOptions
    target_crs: CRS | None = None
    base: dict[str, Any] | None = None

    def apply(
        self,
        objects: OutlineSet,
        *,
        advance: Callable[[], None] | None = None,
        combine: Callable[[OutlineSet], OutlineSet] | None = None,
        coverage: bool = True,
    ) -> tuple[FeatureSet, OutlineSet]:
        """:func:`finish_features` of ``objects`` with these settings."""
        return finish_features(
            objects,
            transform=self.transform,
            crs=self.crs,
            georeferenced=self.georeferenced,
            output=self.output,
            target_crs=self.target_crs,
            base=self.base,
            advance=advance,
            combine=combine,
            coverage=coverage,
        )


def finish_features(
    objects: OutlineSet,
    *,
    transform: Affine,
    crs: CRS | None,
    georeferenced: bool,
    output: OutputOptions,
    target_crs: CRS | None = None,
    base: dict[str, Any] | None = None,
    advance: Callable[[], None] | None = None,
    combine: Callable[[OutlineSet], OutlineSet] | None = None,
    coverage: bool = True,
) -> tuple[FeatureSet, OutlineSet]:
    """Turn a run's merged objects into features: size filters, polygons, properties.

    Objects outside ``output.min_size``/``output.max_size`` pixels are dropped, the
    rest put on the raster's grid (``transform``); each feature gets ``value``,
    ``score`` (when finite), ``area_m2`` (ground area of its pixels, when ``crs`` is
    known) and the ``base`` properties, its ``prompt`` replaced by the concept that
    found the object (:attr:`~.masks.Origin.prompt`) when it has one. Then polygons
    are reprojected to ``target_crs`` and simplified by ``output.simplify_tolerance``
    (units of the output CRS): objects that tile an area (label layers) as one
    coverage, so neighbours stay adjacent; overlapping objects each on its own.

    Args:
        objects: the run's objects, outlines in raster pixels, nodata removed.
        transform: the raster's transform (pixel corners to ``crs`` coordinates;
            identity: pixel space).
        crs: the raster's CRS, or None.
        georeferenced: True when ``transform`` is a real geotransform (with or
            without a CRS); False marks pixel coordinates.
        output: size filters and simplification (``output_crs`` is given parsed,
            as ``target_crs``).
        target_crs: CRS to reproject to, or None to stay in ``crs``.
        base: properties every feature shares (``mode``, ``model``...).
        advance: called after each step (progress, and the chance to cancel).
        combine: applied to the objects kept by the size filters, before polygons
            are placed (e.g. :func:`.pipeline.binary_objects`).
        coverage: False leaves the label layers' objects unsimplified, for the
            caller to simplify them as one coverage with the rest of the answer
            (:func:`simplify_coverage`): a part of an answer is not the whole coverage.

    ``objects`` is consumed: filtered and moved onto the grid in place, it becomes the
    returned kept objects, whose outlines the features share.

    Returns:
        The features (in ``target_crs`` or ``crs``, by value) and the kept objects.

    Raises:
        InvalidRequest: when ``target_crs`` cannot represent the raster's area.
    """
    step = advance or (lambda: None)
    counts = objects.pixels
    keep = counts >= max(output.min_size, 1)
    if output.max_size is not None and output.max_size > 0:
        keep &= counts <= output.max_size
    objects.keep_only(keep)
    if combine is not None:
        objects = combine(objects)
    step()

    tolerance = output.simplify_tolerance or 0.0
    reprojecting = target_crs is not None and crs is not None
    if reprojecting or tolerance > 0:
        # Neighbours must share every vertex of their common edges for both
        # reprojection (else a shared edge bends on one side only, opening slivers)
        # and coverage simplification; seams between tiles get theirs here.
        objects.geometries = node_seams(objects.geometries, objects.seamed)
    # From here on the objects' outlines are the features' polygons (one copy of the
    # answer, not two), until reprojection or simplification makes others.
    objects.move_to_grid(transform)
    geometries = objects.geometries
    step()

    areas = ground_area_m2(geometries, crs) if len(geometries) else None
    if reprojecting:
        geometries = reproject(geometries, crs, target_crs)
        crs = target_crs
    if tolerance > 0 and len(geometries):
        geometries = _simplify_groups(geometries, objects.layered, tolerance, coverage=coverage)

    properties = []
    for i, value in enumerate(objects.values.tolist()):
        props: dict[str, Any] = {"value": value}
        score = objects.scores[i]
        if np.isfinite(score):
            props["score"] = round(float(score), 4)
        if areas is not None and np.isfinite(areas[i]):
            # Nine significant digits: the precision of the computation, and tidy
            # whether objects are tenths of a square metre (drone imagery) or lakes.
            props["area_m2"] = float(f"{areas[i]:.9g}")
        if base:
            props.update(base)
        # The concept that found the object, not the request's first one (several
        # concepts in one text request): the per-object origin wins over the base.
        concept = objects.origins[i].prompt
        if concept is not None:
            props["prompt"] = concept
        properties.append(props)
    step()
    features = FeatureSet(
        geometries=geometries,
        properties=properties,
        crs=crs,
        transform_only=crs is None and georeferenced,
    )
    return features, objects


def _simplify_groups(
    geometries: np.ndarray, layered: np.ndarray, tolerance: float, *, coverage: bool = True
) -> np.ndarray:
    """Simplify the objects of label layers as one coverage (unless not ``coverage``),
    the others each alone (they may overlap, which a coverage cannot)."""
    out = np.array(geometries, dtype=object)
    if coverage:
        out = simplify_coverage(out, layered, tolerance)
    alone = ~layered
    if alone.any():
        out[alone] = shapely.simplify(out[alone], tolerance, preserve_topology=True)
    return out


def simplify_coverage(geometries: np.ndarray, layered: np.ndarray, tolerance: float) -> np.ndarray:
    """``geometries`` with those of label layers (``layered``) simplified together by
    ``tolerance`` (units of their CRS), as one coverage, so neighbours stay adjacent;
    a new array where any is, else ``geometries`` itself."""
    if tolerance <= 0 or not layered.any():
        return geometries
    out = np.array(geometries, dtype=object)
    out[layered] = simplify(out[layered], tolerance)
    return out
