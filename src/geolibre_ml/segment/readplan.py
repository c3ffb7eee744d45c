"""The read plan: how every window of one raster is read, decided once for the whole raster.

Band roles, the display stretch and the validity rules are properties of the whole
raster. They are measured once, when the raster is opened (the stretch from a bounded,
decimated sample of every valid pixel; see :mod:`.stretch`), and then every window is
read with the same plan, so tiles of one raster agree with each other. A plan is
plain data: it can be logged, hashed into a cache key, and handed ready-made to
another process, which then reads its window without measuring anything again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .stretch import Stretch


@dataclass(frozen=True)
class ReadPlan:
    """How to read any window of one raster.

    Attributes:
        rgb_bands: 1-based bands shown as red, green and blue.
        spectral_bands: 1-based band per spectral role (``"nir"``...).
        used: every band read, display bands first.
        palette: True when the display band is expanded through its colour table.
        dataset_mask_band: a band whose per-dataset mask (alpha, mask band, or
            NODATA_VALUES) applies to all bands, or None.
        nodata_bands: bands whose own nodata value marks invalid pixels.
        stretch: the display stretch of the whole raster.
    """

    rgb_bands: tuple[int, int, int]
    spectral_bands: dict[str, int] = field(default_factory=dict)
    used: tuple[int, ...] = ()
    palette: bool = False
    dataset_mask_band: int | None = None
    nodata_bands: tuple[int, ...] = ()
    stretch: Stretch = field(default_factory=Stretch)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        """A short stable digest of the plan, for cache keys."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
