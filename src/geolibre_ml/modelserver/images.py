"""Images uploaded once and prompted many times (our addition; no HTTP here).

``POST /images`` keeps an upload (or remembers a ``source``) under an ``image_id``; every
``/segment/*`` and ``/jobs/segment/*`` call may then name the image instead of sending it,
so no pixels travel again and the image's prepared tiles (SAM 3: its encoded features)
are found in the model server's cache. An image is forgotten, with its file and its
cached state, on ``DELETE /images/{id}`` or after ``GEOLIBRE_ML_IMAGE_TTL_S`` seconds
without use.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Seconds an image is kept after its last use, unless ``GEOLIBRE_ML_IMAGE_TTL_S``.
DEFAULT_IMAGE_TTL_S = 3600.0


def image_ttl_from_env() -> float:
    """``GEOLIBRE_ML_IMAGE_TTL_S`` (seconds, more than 0), or the default."""
    try:
        value = float(os.environ.get("GEOLIBRE_ML_IMAGE_TTL_S", ""))
    except ValueError:
        return DEFAULT_IMAGE_TTL_S
    return value if value > 0 else DEFAULT_IMAGE_TTL_S


@dataclass
class StoredImage:
    """One image a client uploaded once (or named by ``source``).

    Attributes:
        image_id: its name in URLs and forms.
        path: the kept upload, or the source's resolved path or ``/vsicurl/`` URL.
        name: the name shown in messages and features' ``source``.
        content_key: the prepared-image cache key (None: not cached).
        description: what ``GET /images/{id}`` answers.
        folder: the folder holding the kept upload (None for a source).
        used: when it was last used (``time.monotonic``).
        plan: its read plan (:class:`~geolibre_ml.segment.readplan.ReadPlan`), measured
            once by the first map tile or preview and reused by the next.
    """

    image_id: str
    path: str | Path
    name: str
    content_key: str | None
    description: dict[str, Any]
    folder: Path | None = None
    used: float = field(default_factory=time.monotonic)
    plan: Any = None


class ImageStore:
    """The images of one server: kept, found, touched on use, forgotten when idle.

    Args:
        ttl_s: seconds an image is kept after its last use.
        forget: called with an image's ``content_key`` when it goes, to drop its
            cached prepared state.
        clock: ``time.monotonic`` (tests pass their own).
    """

    def __init__(
        self,
        ttl_s: float,
        forget: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._forget = forget
        self._clock = clock
        self._images: dict[str, StoredImage] = {}
        self._lock = threading.Lock()

    def add(
        self,
        path: str | Path,
        name: str,
        content_key: str | None,
        description: dict[str, Any],
        folder: Path | None = None,
    ) -> StoredImage:
        """Keep an image; its ``image_id`` is new and unguessable."""
        image = StoredImage(
            secrets.token_hex(12), path, name, content_key, description, folder, self._clock()
        )
        with self._lock:
            self._images[image.image_id] = image
        self.sweep()
        return image

    def get(self, image_id: str) -> StoredImage | None:
        """The image, touched (its idle time starts again), or None when unknown or expired."""
        self.sweep()
        with self._lock:
            image = self._images.get(image_id)
            if image is not None:
                image.used = self._clock()
            return image

    def remove(self, image_id: str) -> bool:
        """Forget an image, its file and its cached state; False when it was unknown."""
        with self._lock:
            image = self._images.pop(image_id, None)
        if image is None:
            return False
        self._drop(image)
        return True

    def sweep(self) -> None:
        """Forget the images idle for longer than the TTL."""
        now = self._clock()
        with self._lock:
            old = [i for i in self._images.values() if now - i.used > self.ttl_s]
            for image in old:
                del self._images[image.image_id]
        for image in old:
            self._drop(image)

    def close(self) -> None:
        """Forget every image (server shutdown)."""
        with self._lock:
            images, self._images = list(self._images.values()), {}
        for image in images:
            self._drop(image)

    def _drop(self, image: StoredImage) -> None:
        if image.folder is not None:
            shutil.rmtree(image.folder, ignore_errors=True)
        # A source named by another image too keeps its cached tiles.
        with self._lock:
            shared = any(i.content_key == image.content_key for i in self._images.values())
        if self._forget is not None and image.content_key is not None and not shared:
            self._forget(image.content_key)


def describe(path: str | Path, name: str) -> dict[str, Any]:
    """What ``GET /images/{id}`` says of a raster: size, bands, CRS and its bounds in
    EPSG:4326 (None without a CRS: pixel space). Blocking: run it in a worker thread.

    Raises:
        SegmentError: the raster cannot be read (the same messages as a run's).
    """
    import numpy as np
    import shapely
    from pyproj import CRS

    from geolibre_ml.segment.crs import exact_authority, reproject
    from geolibre_ml.segment.raster import RasterSource

    with RasterSource(path, name=name) as src:
        info = src.info
    crs, bounds = None, None
    if info.crs is not None:
        authority = exact_authority(info.crs)
        crs = ":".join(authority) if authority else info.crs.to_wkt()
        t = info.transform
        corners = [
            t * (0, 0),
            t * (info.width, 0),
            t * (info.width, info.height),
            t * (0, info.height),
        ]
        # Densified, so that a projection's curved edges are followed.
        outline = shapely.segmentize(shapely.Polygon(corners), max(abs(t.a), abs(t.e)) * 64)
        wgs84 = reproject(np.array([outline], dtype=object), info.crs, CRS.from_epsg(4326))[0]
        bounds = [round(v, 9) for v in shapely.bounds(wgs84).tolist()]
    return {
        "width": info.width,
        "height": info.height,
        "count": info.count,
        "crs": crs,
        "bounds_4326": bounds,
    }
