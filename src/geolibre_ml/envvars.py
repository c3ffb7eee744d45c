"""Sizes read from environment variables, one rule for all of them.

Standard library only, so that every part of the project (the sidecar included) can
use it.
"""

from __future__ import annotations

import math
import os

MIB = 1024 * 1024


def mib_from_env(name: str, *, allow_zero: bool = False) -> int | None:
    """The variable ``name`` read as a size in MiB, in bytes; None when it is unset or
    not a usable number (callers fall back to their default rather than dropping a limit).

    Args:
        name: the variable, e.g. ``GEOLIBRE_ML_CACHE_MB``.
        allow_zero: accept 0 (a feature turned off); otherwise only positive numbers.
    """
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        return None
    return int(value * MIB)
